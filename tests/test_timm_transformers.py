"""timm's ConvNeXts and ViTs load into ours exactly (issue 36), offline, from timm's own twins.

As tests/test_timm_weights.py: each twin is timm's model with random weights
(LayerScale and norms included, so no block is an identity), saved by timm
into a temporary Hugging Face cache and loaded with `weights="timm:..."`.
ViT twins are made at 64 pixels (`img_size=64`, a 4x4 grid of patches).
"""

import keras
import numpy as np
import pytest
from timm_twins import (
    check_parity,
    random_images,
    random_twin,
    relative_difference,
    save_to_hub_cache,
)

import kerasrecipes as kr
from kerasrecipes.models.convnext import convnext
from kerasrecipes.timm.vit import resample_position_embedding

pytest.importorskip("timm")

VIT_TWIN = {"img_size": 64}
slow = pytest.mark.slow

# (timm architecture, our model, input size, twin arguments): one per family by default.
PARITY = [
    ("convnext_tiny", "convnext_tiny", 64, {}),
    ("vit_tiny_patch16_224", "vit_tiny16", 64, VIT_TWIN),
    pytest.param("convnext_small", "convnext_small", 64, {}, marks=slow),
    pytest.param("convnext_base", "convnext_base", 64, {}, marks=slow),
    pytest.param("convnext_large", "convnext_large", 64, {}, marks=slow),
    pytest.param("convnext_xlarge", "convnext_xlarge", 64, {}, marks=slow),
    pytest.param("vit_small_patch16_224", "vit_small16", 64, VIT_TWIN, marks=slow),
    pytest.param("vit_base_patch16_224", "vit_base16", 64, VIT_TWIN, marks=slow),
    pytest.param("vit_tiny_patch16_384", "vit_tiny16", 64, VIT_TWIN, marks=slow),
    pytest.param("deit_tiny_patch16_224", "vit_tiny16", 64, VIT_TWIN, marks=slow),
    pytest.param("deit_small_patch16_224", "vit_small16", 64, VIT_TWIN, marks=slow),
    pytest.param("deit_base_patch16_224", "vit_base16", 64, VIT_TWIN, marks=slow),
    # ImageNet-21k heads: the classes come from the checkpoint's config.
    pytest.param("convnext_tiny", "convnext_tiny", 32, {"num_classes": 21841}, marks=slow),
    pytest.param(
        "vit_tiny_patch16_224", "vit_tiny16", 64, {**VIT_TWIN, "num_classes": 21843}, marks=slow
    ),
]


@pytest.mark.parametrize("architecture, model_name, size, twin_kwargs", PARITY)
def test_timm_checkpoint_gives_timms_logits(hub_cache, architecture, model_name, size, twin_kwargs):
    check_parity(hub_cache, architecture, model_name, size, **twin_kwargs)


# timm's `resample_abs_pos_embed` computes in float32: its rounding, a few 1e-7 of the
# largest entry (measured at most 1e-6), is the whole difference from ours (float64).
RESAMPLING_TOLERANCE = 1e-5


@pytest.mark.parametrize(
    "source, target",
    [((14, 14), (24, 24)), ((14, 14), (10, 10)), ((4, 4), (7, 5)), ((24, 24), (14, 14))],
)
def test_position_embedding_is_resampled_as_timm_does(source, target):
    import torch
    from timm.layers import resample_abs_pos_embed

    embedding = np.random.default_rng(0).normal(size=(1, 1 + source[0] * source[1], 8))
    embedding = embedding.astype("float32")
    theirs = resample_abs_pos_embed(
        torch.from_numpy(embedding), new_size=list(target), old_size=list(source)
    ).numpy()
    ours = resample_position_embedding(embedding, target, source)
    assert ours.shape == theirs.shape == (1, 1 + target[0] * target[1], 8)
    np.testing.assert_array_equal(ours[:, 0], embedding[:, 0])  # the class token is kept
    assert relative_difference(ours, theirs) <= RESAMPLING_TOLERANCE


@pytest.mark.parametrize("size", [96, pytest.param(32, marks=slow)])
def test_vit_loaded_at_another_size_matches_timm_at_that_size(hub_cache, size):
    # timm's twin made for 64 pixels resamples its position embedding to the input's grid on
    # each call (dynamic_img_size), with `resample_abs_pos_embed`; ours, built at `size`, gets
    # it resampled once by the converter.
    model, _ = check_parity(
        hub_cache, "vit_tiny_patch16_224", "vit_tiny16", size, dynamic_img_size=True, **VIT_TWIN
    )
    assert model.get_layer("stem_embed").position_grid == (size // 16, size // 16)


def test_unsupported_and_other_family_checkpoints_are_refused_clearly(hub_cache):
    distilled = save_to_hub_cache(
        random_twin("deit_tiny_distilled_patch16_224", **VIT_TWIN),
        hub_cache,
        "deit_tiny_distilled_patch16_224",
    )
    with pytest.raises(ValueError, match="cannot be loaded: a distillation token"):
        kr.create_model("vit_tiny16", weights=distilled)
    vit = save_to_hub_cache(
        random_twin("vit_tiny_patch16_224", **VIT_TWIN), hub_cache, "vit_tiny_patch16_224"
    )
    with pytest.raises(ValueError, match="which is our 'vit_tiny16', not 'convnext_tiny'"):
        kr.create_model("convnext_tiny", weights=vit)


def small_convnext(**kwargs):
    return convnext((1, 1, 1, 1), (8, 16, 32, 64), input_shape=(32, 32, 3), num_classes=3, **kwargs)


def test_convnext_preprocessing_replaces_the_keras_normalization(tmp_path):
    default = small_convnext()
    torch_mode = small_convnext(preprocessing="torch")
    assert "stem_normalize" in [layer.name for layer in default.layers]
    assert torch_mode.layers[1].name == "stem_preprocess"
    torch_mode.set_weights(default.get_weights())
    images = random_images(32)
    np.testing.assert_allclose(torch_mode(images), default(images), rtol=1e-4, atol=1e-4)

    custom = small_convnext(preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    path = str(tmp_path / "convnext.keras")
    custom.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("stem_preprocess").std == [0.25, 0.25, 0.25]
    np.testing.assert_allclose(restored(images), custom(images), rtol=1e-5, atol=1e-5)
