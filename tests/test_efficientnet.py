"""EfficientNet: compound scaling, the paper's figures, and the keras.applications port."""

import math

import keras
import numpy as np
import pytest
from conftest import tiny_model
from porting import fake_imagenet_files, max_relative_difference

import kerasrecipes as kr
from kerasrecipes.layers import MBConv
from kerasrecipes.models.efficientnet import B0_STAGES, VARIANTS

# Tan & Le 2019, Table 2: parameters (millions) and multiply-adds (billions).
PAPER = {
    "efficientnet_b0": (5.3, 0.39),
    "efficientnet_b1": (7.8, 0.70),
    "efficientnet_b2": (9.2, 1.0),
    "efficientnet_b3": (12, 1.8),
    "efficientnet_b4": (19, 4.2),
    "efficientnet_b5": (30, 9.9),
    "efficientnet_b6": (43, 19),
    "efficientnet_b7": (66, 37),
}


def blocks(model):
    return [layer for layer in model.layers if isinstance(layer, MBConv)]


def test_b0_matches_the_paper_and_keras():
    info = kr.model_info(kr.create_model("efficientnet_b0"))
    assert info.params == 5_330_571  # keras.applications.EfficientNetB0's count_params
    assert round(info.params / 1e6, 1) == 5.3
    assert info.input_shape == (224, 224, 3)
    assert abs(info.flops / 0.39e9 - 1) < 0.05


@pytest.mark.parametrize("name", list(PAPER))
def test_parameters_match_the_paper(name):
    # The paper counts learned parameters; within 2% of its rounded figure.
    params, _ = PAPER[name]
    assert abs(kr.model_info(tiny_model(name)).trainable_params / (params * 1e6) - 1) < 0.02


# B0's FLOPs are held by test_b0_matches_the_paper_and_keras; B1-B7 build at 240-600 px (-m slow).
@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in PAPER if name != "efficientnet_b0"])
def test_flops_at_the_default_resolution_match_the_paper(name):
    _, flops = PAPER[name]
    info = kr.model_info(kr.create_model(name))
    assert info.input_shape[0] == VARIANTS[name][2]
    assert abs(info.flops / (flops * 1e9) - 1) < 0.05


def test_compound_scaling_rule():
    scaling = kr.efficientnet_scaling(phi=2)
    assert scaling.depth == pytest.approx(1.2**2)
    assert scaling.width == pytest.approx(1.1**2)
    assert scaling.resolution == pytest.approx(1.15**2)
    # alpha * beta^2 * gamma^2 ~ 2: each step of phi about doubles the FLOPs.
    one = kr.efficientnet_scaling(phi=1)
    assert one.depth * one.width**2 * one.resolution**2 == pytest.approx(1.92, abs=0.01)
    assert kr.efficientnet_scaling(phi=0) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="phi must be >= 0"):
        kr.efficientnet_scaling(phi=-1)


@pytest.mark.parametrize(
    "name",
    ["efficientnet_b0", "efficientnet_b3", pytest.param("efficientnet_b7", marks=pytest.mark.slow)],
)
def test_depth_and_width_come_from_the_b0_table(name):
    width, depth, _, _ = VARIANTS[name]
    model = tiny_model(name)
    expected_blocks = sum(math.ceil(depth * row[0]) for row in B0_STAGES)
    assert len(blocks(model)) == expected_blocks
    stage_widths = sorted({block.filters for block in blocks(model)})
    assert all(w % 8 == 0 for w in stage_widths)
    assert model.get_layer("post_conv").filters == kr.layers.make_divisible(1280 * width)
    assert blocks(model)[-1].name == f"stage7_block{math.ceil(depth)}"


def test_b0_has_sixteen_blocks_and_squeeze_excite_everywhere():
    model = tiny_model("efficientnet_b0")
    assert len(blocks(model)) == 16
    assert all(block.se is not None for block in blocks(model))
    first = blocks(model)[0]
    assert first.expand_conv is None and first.se.squeeze_filters == 8  # 32 * 0.25


def test_stochastic_depth_is_exposed_and_rises_linearly():
    default = kr.create_model("efficientnet_b0", input_shape=(32, 32, 3))
    rates = [block.drop_path_rate for block in blocks(default)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)  # keras.applications' 0.2
    assert np.all(np.diff(rates) > 0)
    off = kr.create_model("efficientnet_b0", input_shape=(32, 32, 3), drop_path_rate=0.0)
    assert all(block.drop_path_rate == 0.0 for block in blocks(off))


def test_dropout_per_variant_and_overridable():
    assert tiny_model("efficientnet_b7").get_layer("head_dropout").rate == 0.5
    model = kr.create_model("efficientnet_b0", input_shape=(32, 32, 3), dropout=0.0)
    assert "head_dropout" not in [layer.name for layer in model.layers]


# -m slow: test_cards.py loads B0's ImageNet file the same way and compares the logits.
@pytest.mark.slow
def test_imagenet_weights_go_through_keras_applications(monkeypatch, tmp_path, rng):
    fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.EfficientNetB0)
    x = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    theirs = keras.applications.EfficientNetB0(weights="imagenet", classifier_activation=None)
    ours = kr.create_model("efficientnet_b0", weights="imagenet", classifier_activation=None)
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4

    # Without the top, at another size: the same features as keras.applications'.
    x = x[:, :96, :96]
    theirs = keras.applications.EfficientNetB0(
        weights="imagenet", include_top=False, pooling="avg", input_shape=(96, 96, 3)
    )
    ours = kr.create_model(
        "efficientnet_b0",
        weights="imagenet",
        include_top=False,
        pooling="avg",
        input_shape=(96, 96, 3),
    )
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4


def test_a_fresh_model_normalizes_with_the_imagenet_statistics():
    normalize = tiny_model("efficientnet_b0").get_layer("stem_normalize")
    np.testing.assert_allclose(normalize.adapt_mean.numpy(), [0.485, 0.456, 0.406])
    np.testing.assert_allclose(normalize.adapt_variance.numpy(), np.square([0.229, 0.224, 0.225]))


def test_bad_coefficients_raise():
    with pytest.raises(ValueError, match="width_coefficient and depth_coefficient must be > 0"):
        kr.models.efficientnet.efficientnet(width_coefficient=0)
