import functools
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kerasrecipes as kr  # noqa: E402


def tiny_input_shape(name):
    """The smallest square input a registered model accepts, at least 16 pixels."""
    size = max(16, kr.get_model_entry(name).min_input_size)
    return (size, size, 3)


@functools.lru_cache(maxsize=None)
def tiny_model(name):
    """One shared instance per model at its tiny input (building ResNet-1202 takes ~25 s)."""
    keras.utils.set_random_seed(0)
    return kr.create_model(name, input_shape=tiny_input_shape(name))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
