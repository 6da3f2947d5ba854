"""The registry-driven suite: every registered model gets these tests by being registered."""

import re

import keras
import numpy as np
import pytest
from conftest import (
    marked_slow_but_one_per_family,
    marked_slow_if_heavy,
    tiny_input_shape,
    tiny_model,
)

import kerasrecipes as kr

ALL_MODELS = kr.list_models()
LAYER_NAME = re.compile(
    r"^(input|stem_[a-z_]+\d*|stage\d+_(block\d+(_[a-z]+)?|pool|downsample_[a-z]+)"
    r"|post_[a-z]+|head_[a-z]+\d*)$"
)


# Every test here is parametrized with scope="module", so pytest runs all tests
# of one model before the next model's: a heavy model is built once, not once
# per test (the heavy cache holds one model).


def models_with_heavy_marked_slow():
    return marked_slow_if_heavy(ALL_MODELS)


def tiny_batch(name, batch_size=2):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (batch_size,) + tiny_input_shape(name)).astype("float32")


def test_registry_is_populated():
    assert len(ALL_MODELS) >= 33
    expected = {"resnet20", "resnet1202", "resnet50", "baseline_cnn", "mobilenet_v2"}
    expected |= {f"efficientnet_b{i}" for i in range(8)}
    expected |= {f"convnext_{size}" for size in ("tiny", "small", "base", "large", "xlarge")}
    expected |= {"alexnet", "vgg16", "vgg19", "inception_v3"}
    expected |= {"vit_tiny16", "vit_small16", "vit_base16"}
    assert expected <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS, scope="module")
def test_forward(name):
    model = tiny_model(name)
    outputs = keras.ops.convert_to_numpy(model(tiny_batch(name), training=False))
    assert outputs.shape == (2, model.output_shape[-1])
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS, scope="module")
def test_layer_names_follow_the_scheme(name):
    model = tiny_model(name)
    names = [layer.name for layer in model.layers]
    bad = [n for n in names if not LAYER_NAME.match(n)]
    assert not bad, f"{name}: layer names outside the scheme: {bad}"
    assert any(n.startswith("stage1_block1") for n in names)
    assert names[-1] == "head_dense"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", models_with_heavy_marked_slow(), scope="module")
def test_one_training_step_with_fit(name):
    # A copy: at tiny inputs the last stages are 1x1 maps whose BatchNorm sees
    # two values per channel, so one SGD step can blow some weights up, which
    # the other tests sharing the instance should not inherit.
    model = keras.models.clone_model(tiny_model(name))
    x = tiny_batch(name)
    y = np.array([0, 1])
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = {
        w.path for w in model.trainable_weights if not np.array_equal(before[w.path], w.numpy())
    }
    # Zero-initialized residual BatchNorms block the gradient into the branch
    # convolutions on the very first step, so not every variable moves yet.
    assert any(path.startswith("head_dense") for path in changed)
    assert any(path.startswith("stage") for path in changed)


@pytest.mark.parametrize("name", models_with_heavy_marked_slow(), scope="module")
def test_keras_file_round_trip(name, tmp_path):
    model = tiny_model(name)
    x = tiny_batch(name)
    # Move every variable off its initialization (zero-initialized residual
    # BatchNorms would otherwise make whole blocks invisible in the outputs).
    rng = np.random.default_rng(1)
    initial = [weight.numpy() for weight in model.weights]
    try:
        for weight, value in zip(model.weights, initial):
            weight.assign(value + rng.normal(0, 0.01, value.shape).astype("float32"))
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        actual = keras.ops.convert_to_numpy(loaded(x, training=False))
    finally:  # the model is shared (`tiny_model`): other tests read its initial weights
        for weight, value in zip(model.weights, initial):
            weight.assign(value)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


# One model per family by default: include_top and pooling are the family's code, the same in
# each variant; test_cards.py builds every model's headless feature maps.
@pytest.mark.parametrize("name", marked_slow_but_one_per_family(ALL_MODELS), scope="module")
def test_without_top(name):
    shape = tiny_input_shape(name)
    x = tiny_batch(name)
    features = kr.create_model(name, input_shape=shape, include_top=False)
    assert not any(layer.name.startswith("head_") for layer in features.layers)
    feature_map = keras.ops.convert_to_numpy(features(x))
    assert feature_map.ndim == 4 and feature_map.shape[0] == 2
    channels = feature_map.shape[-1]
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = kr.create_model(name, input_shape=shape, include_top=False, pooling=pooling)
        pooled.set_weights(features.get_weights())
        names = [layer.name for layer in pooled.layers]
        assert names[-1] == "head_pool" or names[-2:] == ["head_pool", "post_norm"]
        # Reduce the map that enters the pooling, then apply what follows it
        # (ConvNeXt's LayerNorm comes after the pooling, as in the paper).
        pool_index = names.index("head_pool")
        before_pool = keras.Model(pooled.input, pooled.layers[pool_index - 1].output)
        map_before_pool = keras.ops.convert_to_numpy(before_pool(x))
        if names[-1] == "head_pool":
            np.testing.assert_allclose(map_before_pool, feature_map, atol=1e-6)
        expected = reduce(map_before_pool, axis=(1, 2))
        for layer in pooled.layers[pool_index + 1 :]:
            expected = keras.ops.convert_to_numpy(layer(expected))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(pooled(x)), expected, atol=1e-5)
        assert pooled.output_shape == (None, channels)
