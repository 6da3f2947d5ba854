import functools
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# triton (PyTorch's, which timm's twins in tests/timm_twins.py load) crashes the process when
# TensorFlow is imported before it; `kerasrecipes._startup` loads it first, as the package does.
from kerasrecipes._startup import load_triton_before_tensorflow

load_triton_before_tensorflow()

import keras
import tensorflow as tf

# `make test` runs test_backends.py on JAX and on PyTorch, after the main run; on TensorFlow the
# other files test the same models and tools in more depth (test_models.py, test_finetune.py).
collect_ignore = ["test_backends.py"] if keras.backend.backend() == "tensorflow" else []

from single_trace import build_before_every_fit

build_before_every_fit()  # one trace of each train step, not two (see single_trace.py)

# Two logical CPU devices, so MirroredStrategy can run with two replicas on this machine. This
# must happen before TensorFlow initializes its devices, i.e. before any test runs an op.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
import numpy as np
import pytest

import kerasrecipes as kr


def tiny_input_shape(name):
    """The smallest square input a registered model accepts, at least 16 pixels."""
    size = max(16, kr.model_card(name).min_input_size)
    return (size, size, 3)


# The largest and deepest models, as their model cards say (`heavy=True`): built and
# run forward in the default run; their train step, .keras round trip and headless
# builds run with -m slow (ResNet-1202's train step alone takes over two minutes to
# trace on 2 cores; the others hold 30M to 350M parameters or 100+ layers, and their
# train steps took 15-30 s each, which the budget of the default run cannot hold).
HEAVY_MODELS = {name for name in kr.list_models() if kr.model_card(name).heavy}


def marked_slow_if_heavy(names):
    """pytest params for `names`, the heavy ones marked slow."""
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in HEAVY_MODELS else name
        for name in names
    ]


def one_per_family(names):
    """The first non-heavy model of each family among `names`; the CIFAR ResNets (their own
    stem and stages, maps at strides 1-4) count as a family apart from the ImageNet ones."""
    chosen = {}
    for name in names:
        card = kr.model_card(name)
        if not card.heavy:
            strides = tuple(tap.reduction for tap in card.feature_taps)
            chosen.setdefault((card.family, strides), name)
    return sorted(chosen.values())


def marked_slow_but_one_per_family(names):
    """pytest params for `names`, all but `one_per_family(names)` marked slow: for tests of
    what a family's code does the same way in each variant (the full set runs with -m slow)."""
    kept = set(one_per_family(names))
    return [name if name in kept else pytest.param(name, marks=pytest.mark.slow) for name in names]


def _build_tiny(name):
    keras.utils.set_random_seed(0)
    return kr.create_model(name, input_shape=tiny_input_shape(name))


_cached_tiny = functools.lru_cache(maxsize=None)(_build_tiny)
# One heavy model at a time, so the suite's memory stays within a few GB.
_cached_heavy = functools.lru_cache(maxsize=1)(_build_tiny)


def tiny_model(name):
    """One shared instance per model at its tiny input (building ResNet-1202 takes ~25 s)."""
    return _cached_heavy(name) if name in HEAVY_MODELS else _cached_tiny(name)


def classifier_on_keras_mobilenet_v2():
    """A two-class head on keras.applications' MobileNetV2 (alpha 0.35, 32x32) nested inside.

    Returns `(model, backbone)`.
    """
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head_dense")(x))
    return model, backbone


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def two_device_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test that needs one.

    Each MirroredStrategy numbers its collective ops from the same start, and a second
    strategy in the same process can then meet the first one's all-reduce of another shape
    ("Shape mismatch in the collective instance").
    """
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "the two logical CPUs were not created"
    return tf.distribute.MirroredStrategy(devices)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline, for this test and the processes it starts (the
    timm checkpoint tests: tests/timm_twins.py saves timm's twins into it)."""
    import huggingface_hub.constants

    cache = str(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
