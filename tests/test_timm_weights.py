"""timm checkpoints load into our models exactly (issue 36), offline, from timm's own twins.

Each twin is timm's model with random weights and statistics, saved by timm
into a temporary Hugging Face cache; we load it with `weights="timm:..."`
under the Hub's offline mode and compare logits on the same images.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import kerasrecipes as kr
from timm_twins import (
    TAG,
    random_images,
    random_twin,
    relative_difference,
    save_to_folder,
    save_to_hub_cache,
    timm_logits,
)

pytest.importorskip("timm")

# Parity asked by the issue: max |ours - timm| / max |timm| over the logits.
TOLERANCE = 1e-4


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline, for this test and the processes it starts."""
    import huggingface_hub.constants

    cache = str(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


# (timm architecture, our model, input size): one per family by default, the heavy ones slow.
PARITY = [
    ("resnet18", "resnet18", 64),
    ("resnet50", "resnet50", 64),
    pytest.param("resnet26", "resnet26", 64, marks=pytest.mark.slow),
    pytest.param("resnet34", "resnet34", 64, marks=pytest.mark.slow),
    pytest.param("resnet101", "resnet101", 64, marks=pytest.mark.slow),
    pytest.param("resnet152", "resnet152", 64, marks=pytest.mark.slow),
]


def check_parity(hub_cache, architecture, model_name, size, **twin_kwargs):
    twin = random_twin(architecture, **twin_kwargs)
    weights = save_to_hub_cache(twin, hub_cache, architecture)
    model = kr.create_model(
        model_name, weights=weights, input_shape=(size, size, 3), classifier_activation=None
    )
    images = random_images(size)
    theirs = timm_logits(twin, images)
    ours = np.asarray(model(images, training=False))
    # The twin's output depends on its input: two images give clearly different logits.
    assert relative_difference(theirs[0], theirs[1]) > 0.05
    difference = relative_difference(ours, theirs)
    assert difference <= TOLERANCE, f"{architecture}: relative difference {difference:.2e}"
    return model, twin


@pytest.mark.parametrize("architecture, model_name, size", PARITY)
def test_timm_checkpoint_gives_timms_logits(hub_cache, architecture, model_name, size):
    check_parity(hub_cache, architecture, model_name, size)
