"""Shared blocks of the efficient families: inverted residual, MBConv, SE, ConvNeXt, LayerScale."""

import keras
import numpy as np
import pytest
from test_layers import round_trip, to_numpy

import kerasrecipes as kr
from kerasrecipes.layers import (
    ConvNeXtBlock,
    InvertedResidual,
    LayerScale,
    MBConv,
    SqueezeExcite,
    make_divisible,
)


@pytest.mark.parametrize(
    "layer, input_shape, output_shape",
    [
        (InvertedResidual(8, expand_ratio=1), (8, 8, 8), (8, 8, 8)),
        (InvertedResidual(16, strides=2, drop_path_rate=0.1), (9, 9, 8), (5, 5, 16)),
        (MBConv(8, kernel_size=5, drop_path_rate=0.2, seed=1), (8, 8, 8), (8, 8, 8)),
        (SqueezeExcite(2, activation="swish"), (4, 4, 8), (4, 4, 8)),
        (ConvNeXtBlock(layer_scale_init=0.1, drop_path_rate=0.1), (8, 8, 16), (8, 8, 16)),
        (ConvNeXtBlock(layer_scale_init=None, kernel_size=3, mlp_ratio=2), (5, 5, 8), (5, 5, 8)),
        (LayerScale(1e-6), (4, 4, 8), (4, 4, 8)),
    ],
)
def test_layers_shapes_and_keras_round_trip(layer, input_shape, output_shape, tmp_path, rng):
    expected, actual, loaded = round_trip(layer, input_shape, tmp_path, rng)
    assert expected.shape == (2,) + output_shape
    assert tuple(layer.compute_output_shape((None,) + input_shape)) == (None,) + output_shape
    np.testing.assert_array_equal(actual, expected)
    assert loaded.layers[-1].get_config() == layer.get_config()


def test_inverted_residual_adds_the_input_only_when_the_shape_is_kept(rng):
    x = rng.uniform(-1, 1, (2, 8, 8, 8)).astype("float32")
    same = InvertedResidual(8)
    same.build(x.shape)
    assert same.has_residual
    # The projection's BatchNorm at beta = gamma = 0 zeroes the branch: the identity is left.
    same.project_bn.gamma.assign(np.zeros(8, "float32"))
    np.testing.assert_allclose(to_numpy(same(x)), x, atol=1e-6)
    for changed in (InvertedResidual(16), InvertedResidual(8, strides=2)):
        changed.build(x.shape)
        assert not changed.has_residual


def test_inverted_residual_variables_follow_keras_applications_order():
    block = MBConv(16, name="b")
    block.build((None, 8, 8, 8))
    order = [w.path.split("/", 1)[1].rsplit("/", 1)[0] for w in block.weights]
    deduplicated = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert deduplicated == [
        "expand_conv",
        "expand_bn",
        "depthwise_conv",
        "depthwise_bn",
        "se/reduce_conv",
        "se/expand_conv",
        "project_conv",
        "project_bn",
    ]
    assert block.expand_conv.filters == 48 and block.se.squeeze_filters == 2  # 6 x 8, 8 / 4


def test_squeeze_excite_gates_each_channel_by_its_pooled_value(rng):
    x = rng.uniform(0, 1, (2, 4, 4, 6)).astype("float32")
    se = SqueezeExcite(3)
    se.build(x.shape)
    kernel_1, bias_1 = (w.numpy() for w in se.reduce_conv.weights)
    kernel_2, bias_2 = (w.numpy() for w in se.expand_conv.weights)
    pooled = x.mean(axis=(1, 2))
    hidden = np.maximum(pooled @ kernel_1[0, 0] + bias_1, 0)
    gate = 1 / (1 + np.exp(-(hidden @ kernel_2[0, 0] + bias_2)))
    np.testing.assert_allclose(to_numpy(se(x)), x * gate[:, None, None, :], rtol=1e-5)
    with pytest.raises(ValueError, match="squeeze_filters must be >= 1"):
        SqueezeExcite(0)


def test_convnext_block_starts_near_the_identity_and_scales_its_branch(rng):
    x = rng.uniform(-1, 1, (2, 8, 8, 16)).astype("float32")
    block = ConvNeXtBlock()
    np.testing.assert_allclose(to_numpy(block(x)), x, atol=1e-4)  # LayerScale 1e-6
    assert block.layer_scale.gamma.shape == (16,)
    assert block.pointwise_expand.units == 64 and block.depthwise_conv.kernel_size == (7, 7)
    with pytest.raises(ValueError, match="kernel_size and mlp_ratio must be >= 1"):
        ConvNeXtBlock(mlp_ratio=0)


def test_drop_path_in_blocks_drops_whole_branches_in_training_only(rng):
    x = rng.uniform(-1, 1, (64, 4, 4, 8)).astype("float32")
    block = ConvNeXtBlock(layer_scale_init=1.0, drop_path_rate=0.5, seed=0)
    inference = to_numpy(block(x, training=False))
    training = to_numpy(block(x, training=True))
    kept_identity = np.all(np.isclose(training, x, atol=1e-6), axis=(1, 2, 3))
    assert 10 < kept_identity.sum() < 54  # about half the samples lose their branch
    assert not np.allclose(inference, x)


def test_make_divisible_rounds_to_multiples_never_down_by_more_than_ten_percent():
    assert make_divisible(32 * 0.35) == 16  # floor at the divisor
    assert make_divisible(1280 * 1.4) == 1792
    assert make_divisible(20) == 24  # 16 would lose 20%
    assert all(make_divisible(v) >= 0.9 * v for v in range(1, 2000))


def test_port_moves_axes_of_size_one_and_rejects_real_mismatches(rng):
    grouped_in = keras.Input((8, 8, 4))
    grouped = keras.Model(
        grouped_in, keras.layers.Conv2D(4, 3, padding="same", groups=4)(grouped_in)
    )
    depthwise_in = keras.Input((8, 8, 4))
    depthwise = keras.Model(
        depthwise_in, keras.layers.DepthwiseConv2D(3, padding="same")(depthwise_in)
    )
    for weight in grouped.weights:
        weight.assign(rng.normal(0, 1, weight.shape).astype("float32"))
    assert kr.port_weights(grouped, depthwise) == 2
    x = rng.normal(0, 1, (2, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(depthwise(x)), to_numpy(grouped(x)), atol=1e-5)

    other_in = keras.Input((8, 8, 4))
    other = keras.Model(other_in, keras.layers.Conv2D(4, 3, padding="same")(other_in))
    with pytest.raises(ValueError, match=r"variable 0 has shape \(3, 3, 1, 4\)"):
        kr.port_weights(grouped, other)
