"""Shared blocks: residual blocks, zero-pad shortcut, DropPath and its schedule, the norms, GELU."""

import keras
import numpy as np
import pytest

from kerasrecipes.layers import (
    BasicBlock,
    BatchNormalization,
    BottleneckBlock,
    DropPath,
    LayerNormalization,
    ZeroPadShortcut,
    drop_path_schedule,
)
from kerasrecipes.layers.activations import gelu


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def round_trip(layer, input_shape, tmp_path, rng):
    """Wraps `layer` in a model, saves it to .keras, loads it; returns both outputs."""
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    for weight in model.weights:  # move off the initialization so loading is visible
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    path = tmp_path / "block.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.uniform(0, 1, (2,) + input_shape).astype("float32")
    return to_numpy(model(x)), to_numpy(loaded(x)), loaded


@pytest.mark.parametrize(
    "block, input_shape, output_shape",
    [
        (BasicBlock(8), (8, 8, 8), (8, 8, 8)),
        (BasicBlock(16, strides=2, shortcut="A"), (8, 8, 8), (4, 4, 16)),
        (BasicBlock(16, strides=2, shortcut="projection", preact=True), (8, 8, 8), (4, 4, 16)),
        (BottleneckBlock(4, shortcut="projection"), (8, 8, 8), (8, 8, 16)),
        (BottleneckBlock(4, strides=2, shortcut="zero_pad", preact=True), (7, 7, 8), (4, 4, 16)),
        (
            BasicBlock(8, kernel_initializer=keras.initializers.HeUniform(seed=1)),
            (4, 4, 8),
            (4, 4, 8),
        ),
    ],
)
def test_blocks_shapes_and_keras_round_trip(block, input_shape, output_shape, tmp_path, rng):
    expected, actual, loaded = round_trip(block, input_shape, tmp_path, rng)
    assert expected.shape == (2,) + output_shape
    assert tuple(block.compute_output_shape((None,) + input_shape)) == (None,) + output_shape
    np.testing.assert_array_equal(actual, expected)
    assert loaded.layers[-1].get_config() == block.get_config()


def test_block_variables_follow_keras_applications_order():
    block = BottleneckBlock(4, shortcut="projection", use_bias=True, name="b")
    block.build((None, 8, 8, 8))
    order = [w.path.split("/")[1] for w in block.weights]
    deduplicated = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert deduplicated == [
        "conv1",
        "bn1",
        "conv2",
        "bn2",
        "shortcut_conv",
        "conv3",
        "shortcut_bn",
        "bn3",
    ]


def test_identity_block_starts_as_the_identity(rng):
    x = rng.uniform(-1, 1, (2, 6, 6, 8)).astype("float32")
    for block in (BasicBlock(8), BottleneckBlock(2)):
        np.testing.assert_allclose(to_numpy(block(x)), np.maximum(x, 0), atol=1e-6)
    unzeroed = BasicBlock(8, zero_init_residual=False)
    assert not np.allclose(to_numpy(unzeroed(x)), np.maximum(x, 0))


@pytest.mark.parametrize("functional", [False, True])
def test_identity_shortcut_that_changes_shape_is_an_error(functional):
    inputs = keras.Input((8, 8, 8)) if functional else keras.ops.ones((1, 8, 8, 8))
    with pytest.raises(ValueError, match="'stage2_block1' has an identity shortcut but changes"):
        BasicBlock(16, strides=2, name="stage2_block1")(inputs)
    with pytest.raises(ValueError, match="'b' has an identity shortcut"):
        BottleneckBlock(8, name="b")(inputs)  # 8 channels in, 32 out
    with pytest.raises(ValueError, match="filters must be >= 1"):
        BasicBlock(0)


def test_zero_pad_shortcut_subsamples_and_pads(rng):
    x = rng.uniform(0, 1, (2, 5, 5, 3)).astype("float32")
    y = to_numpy(ZeroPadShortcut(8, strides=2)(x))
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()
    for inputs in (x, keras.Input((5, 5, 3))):
        with pytest.raises(ValueError, match="can only add channels: input has 3, filters=2"):
            ZeroPadShortcut(2)(inputs)


def test_drop_path_is_identity_at_inference(rng):
    x = rng.uniform(0, 1, (4, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(to_numpy(DropPath(0.5)(x, training=False)), x)
    np.testing.assert_array_equal(to_numpy(DropPath(0.0)(x, training=True)), x)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    x = np.ones((4000, 2, 2, 3), "float32")
    y = to_numpy(DropPath(0.25, seed=1)(x, training=True))
    per_sample = y.reshape(len(y), -1)
    # each sample is either all zero or all scaled by 1 / (1 - rate)
    assert set(np.unique(per_sample)) <= {0.0, np.float32(1 / 0.75)}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    assert abs(y.mean() - 1.0) < 0.05


def test_drop_path_masks_change_between_steps_and_repeat_under_a_seed():
    x = np.ones((64, 1, 1, 1), "float32")
    layer = DropPath(0.5, seed=3)
    first, second = to_numpy(layer(x, training=True)), to_numpy(layer(x, training=True))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(to_numpy(DropPath(0.5, seed=3)(x, training=True)), first)


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
def test_drop_path_masks_change_between_compiled_train_steps():
    inputs = keras.Input((1,))
    model = keras.Model(inputs, DropPath(0.5, seed=0)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((256, 1), "float32")
    # Two evaluations of the loss in training mode: the same mask would give equal losses.
    losses = [float(model.train_on_batch(x, np.zeros((256, 1), "float32"))) for _ in range(3)]
    assert len(set(losses)) > 1


def test_drop_path_config_and_errors():
    layer = DropPath(0.3, seed=7, name="dp")
    assert DropPath.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="rate must be in"):
        DropPath(1.0)


def test_drop_path_schedule_first_and_last_values():
    rates = drop_path_schedule(0.2, 5)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert drop_path_schedule(0.1, 1) == [0.1]
    assert drop_path_schedule(0.0, 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="drop_path_rate must be in"):
        drop_path_schedule(1.2, 3)


# -- BatchNormalization, fused on TensorFlow ------------------------------------------------------


def twin_norms(ours_class, keras_class, policy, rng, **kwargs):
    """Ours and Keras' normalization layer on 6 channels, with the same random gamma and beta."""
    layers = [ours_class(dtype=policy, **kwargs), keras_class(dtype=policy, **kwargs)]
    gamma, beta = rng.uniform(0.5, 2, 6), rng.uniform(-1, 1, 6)
    for layer in layers:
        layer.build((None, 5, 5, 6))
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return layers


def assert_close_to_keras(ours, keras_values, tolerance):
    """Our values each within `tolerance` of Keras', times Keras' largest magnitude (at least 1)."""
    for mine, keras_value in zip(ours, keras_values):
        mine, keras_value = np.float32(to_numpy(mine)), np.float32(to_numpy(keras_value))
        scale = max(1.0, np.abs(keras_value).max())
        np.testing.assert_allclose(mine, keras_value, atol=tolerance * scale)


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_batch_norm_runs_fused_and_matches_keras_in_training_and_inference(policy, tolerance, rng):
    import tensorflow as tf

    ours, theirs = twin_norms(
        BatchNormalization, keras.layers.BatchNormalization, policy, rng, momentum=0.9
    )
    x = tf.constant(rng.normal(2, 3, (4, 5, 5, 6)).astype("float32"))
    weights = tf.constant(rng.normal(size=(4, 5, 5, 6)).astype("float32"))
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
            loss = tf.reduce_sum(weights * tf.cast(outputs, "float32"))
        gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([outputs, layer.moving_mean, layer.moving_variance, *gradients])
        results[-1].append(layer(x, training=False))
    assert results[0][0].dtype == results[1][0].dtype
    assert_close_to_keras(*results, tolerance)
    # The fused kernel ran: its graph holds one FusedBatchNormV3 and none of Keras' moments.
    graph = tf.function(lambda x: ours(x, training=True)).get_concrete_function(x).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in kinds and "SquaredDifference" not in kinds


def test_batch_norm_falls_back_to_keras_off_the_fused_cases(rng):
    ours = BatchNormalization(momentum=0.9)
    theirs = keras.layers.BatchNormalization(momentum=0.9)
    x = rng.normal(size=(4, 6)).astype("float32")  # 2-D: Keras' own call
    np.testing.assert_allclose(to_numpy(ours(x, training=True)), to_numpy(theirs(x, training=True)))
    assert not ours._runs_fused(keras.ops.convert_to_tensor(x), None)


def test_batch_norm_round_trips_with_identical_outputs(tmp_path, rng):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn")
    ours, loaded_outputs, loaded = round_trip(layer, (4, 4, 6), tmp_path, rng)
    np.testing.assert_array_equal(ours, loaded_outputs)
    assert type(loaded.get_layer("bn")) is BatchNormalization
    assert loaded.get_layer("bn").get_config() == layer.get_config()


def _outputs_and_gradients(layer, x, weights):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x)
        loss = tf.reduce_sum(weights * tf.cast(outputs, "float32"))
    variables = [v.value for v in getattr(layer, "trainable_weights", [])]
    return [outputs, *tape.gradient(loss, [x, *variables])]


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_layer_norm_matches_keras_forward_and_backward_with_fewer_kernels(policy, tolerance, rng):
    import tensorflow as tf

    layers = twin_norms(
        LayerNormalization, keras.layers.LayerNormalization, policy, rng, epsilon=1e-6
    )
    x = tf.constant(rng.normal(2, 3, (4, 5, 5, 6)).astype("float32"))
    weights = tf.constant(rng.normal(size=(4, 5, 5, 6)).astype("float32"))
    ours, theirs = (_outputs_and_gradients(layer, x, weights) for layer in layers)
    assert ours[0].dtype == theirs[0].dtype
    assert_close_to_keras(ours, theirs, tolerance)

    def backward_kernels(layer):
        step = tf.function(lambda x: _outputs_and_gradients(layer, x, weights))
        return len(step.get_concrete_function(x).graph.get_operations())

    assert backward_kernels(layers[0]) < backward_kernels(layers[1])


def test_layer_norm_falls_back_to_keras_off_the_last_axis_and_round_trips(tmp_path, rng):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    ours = LayerNormalization(axis=1)
    np.testing.assert_allclose(
        to_numpy(ours(x)), to_numpy(keras.layers.LayerNormalization(axis=1)(x)), atol=1e-6
    )
    assert not ours._normalizes_last_axis_on_tensorflow(keras.ops.convert_to_tensor(x))
    layer = LayerNormalization(epsilon=1e-6, name="norm")
    expected, actual, loaded = round_trip(layer, (4, 4, 6), tmp_path, rng)
    np.testing.assert_array_equal(expected, actual)
    assert type(loaded.get_layer("norm")) is LayerNormalization


def test_gelu_is_the_exact_gelu_and_its_gradient(rng):
    import tensorflow as tf

    x = tf.constant(rng.normal(0, 3, (3, 50)).astype("float32"))
    weights = tf.constant(rng.normal(size=(3, 50)).astype("float32"))
    ours = _outputs_and_gradients(gelu, x, weights)
    theirs = _outputs_and_gradients(lambda t: keras.ops.gelu(t, approximate=False), x, weights)
    for mine, keras_value in zip(ours, theirs):
        np.testing.assert_allclose(to_numpy(mine), to_numpy(keras_value), atol=1e-6)
