"""Helpers the weight-port tests of every family share."""

import h5py
import keras
import numpy as np

import kerasrecipes as kr
from kerasrecipes import _compat
from kerasrecipes.weights import port_weights


def randomize_statistics(model, rng):
    """Makes every normalization layer non-trivial, so a mis-ported statistic shows."""
    for weight in model.weights:
        path = weight.path
        if "moving_variance" in path or path.endswith("/variance"):
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif "moving_mean" in path or path.endswith("/mean") or "beta" in path:
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
        elif "gamma" in path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    for layer in _compat.sublayers(model, recursive=True):
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # it caches tensors made from its variables


def max_relative_difference(expected, actual):
    """max |actual - expected|, relative to the output scale max |expected|."""
    scale = np.abs(expected).max()
    assert scale > 0.1, "the comparison would be between near-zero outputs"
    return np.abs(actual - expected).max() / scale


def check_port(keras_fn, name, size, rng, **kwargs):
    """Ports a keras.applications model with random statistics into ours; returns the difference.

    Asserts the same parameter count and variable shapes up to axes of size 1,
    then compares the logits of both on the same 0-255 input. The source's
    initialization is seeded from `rng`, so the comparison is repeatable.
    """
    keras.utils.set_random_seed(int(rng.integers(2**31)))
    source = keras_fn(
        weights=None, input_shape=(size, size, 3), classifier_activation=None, **kwargs
    )
    randomize_statistics(source, rng)
    ours = kr.create_model(name, input_shape=(size, size, 3), classifier_activation=None, **kwargs)
    assert ours.count_params() == source.count_params()
    assert port_weights(source, ours) == len(source.weights)
    x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    # Ours takes 0-255 images and preprocesses them itself; the twin takes its preprocess_input's.
    twin_inputs = kr.model_card(name).pretrained["imagenet"].twin_preprocess_input(x.copy())
    expected = keras.ops.convert_to_numpy(source(twin_inputs))
    actual = keras.ops.convert_to_numpy(ours(x))
    return max_relative_difference(expected, actual)


def fake_imagenet_files(monkeypatch, tmp_path, rng, keras_fn, **kwargs):
    """Makes keras.applications' ImageNet download return weights the test made.

    The stand-in for `get_file` builds `keras_fn(weights=None, **kwargs)` with or
    without its top (as the requested file name says), randomizes it, and writes
    its weights in the legacy .h5 format the real files use; a second request
    for the same file gets the same file, as from a download cache. Returns
    the dict {include_top: source model} of what it made.
    """
    made = {}

    def fake_get_file(fname, origin=None, **unused):
        include_top = not any(tag in fname for tag in ("notop", "no_top"))
        path = tmp_path / f"top{include_top}_{fname}"
        if path.exists():
            return str(path)
        source = keras_fn(weights=None, include_top=include_top, **kwargs)
        randomize_statistics(source, rng)
        with h5py.File(path, "w") as file:
            _compat.save_weights_to_legacy_h5(file, source)
        made[include_top] = source
        return str(path)

    monkeypatch.setattr(_compat.keras_file_utils(), "get_file", fake_get_file)
    return made
