"""MobileNetV2: the stage table, width multipliers, figures, and the keras.applications port."""

import keras
import numpy as np
import pytest
from porting import check_port, fake_imagenet_files, max_relative_difference

import kerasrecipes as kr
from kerasrecipes.layers import InvertedResidual
from kerasrecipes.models.mobilenet_v2 import KERAS_ALPHAS, STAGES

# Multiply-adds at 224 of the reference release (the MobileNetV2 README of
# tensorflow/models; the paper's Table 6 has 300M at 1.0 and 585M at 1.4).
PAPER_MFLOPS = {0.35: 59, 0.5: 97, 0.75: 209, 1.0: 300, 1.3: 509, 1.4: 582}


def blocks(model):
    return [layer for layer in model.layers if isinstance(layer, InvertedResidual)]


def test_parameters_and_flops_at_alpha_one_match_the_paper():
    info = kr.model_info(kr.create_model("mobilenet_v2"))
    assert info.params == 3_538_984  # keras.applications.MobileNetV2's count_params
    assert round(info.params / 1e6, 1) == 3.5
    assert abs(info.flops / 300e6 - 1) < 0.05


@pytest.mark.parametrize("alpha, paper", PAPER_MFLOPS.items())
def test_flops_of_every_width_multiplier(alpha, paper):
    info = kr.model_info(kr.create_model("mobilenet_v2", alpha=alpha))
    assert abs(info.flops / (paper * 1e6) - 1) < 0.05


def test_the_stage_table_gives_seventeen_blocks_and_ten_residuals():
    model = kr.create_model("mobilenet_v2", input_shape=(64, 64, 3))
    assert len(blocks(model)) == sum(row[2] for row in STAGES) == 17
    assert sum(block.has_residual for block in blocks(model)) == 10
    assert blocks(model)[0].expand_conv is None  # t = 1: the depthwise-separable block
    assert [b.name for b in blocks(model)][:3] == [
        "stage1_block1",
        "stage2_block1",
        "stage2_block2",
    ]


def test_alpha_scales_the_channels_by_multiples_of_eight():
    half = kr.create_model("mobilenet_v2", alpha=0.5, input_shape=(64, 64, 3))
    widths = [block.filters for block in blocks(half)]
    assert widths[0] == 8 and widths[-1] == 160
    assert all(width % 8 == 0 for width in widths)
    # The last 1x1 convolution keeps 1280 channels below alpha 1 and grows above it.
    assert half.get_layer("post_conv").filters == 1280
    wide = kr.create_model("mobilenet_v2", alpha=1.4, input_shape=(64, 64, 3))
    assert wide.get_layer("post_conv").filters == 1792


@pytest.mark.parametrize("size", [32, 45, 160])
def test_any_input_resolution_from_32(size):
    model = kr.create_model("mobilenet_v2", alpha=0.35, input_shape=(size, size, 3), num_classes=5)
    out = keras.ops.convert_to_numpy(model(np.zeros((1, size, size, 3), "float32")))
    assert out.shape == (1, 5)
    with pytest.raises(ValueError, match="at least 32"):
        kr.create_model("mobilenet_v2", input_shape=(31, 31, 3))


# alpha 1.0 is ported in tests/test_cards.py with every pretrained model.
@pytest.mark.parametrize(
    "alpha, size", [(0.35, 64), pytest.param(0.75, 97, marks=pytest.mark.slow)]
)
def test_port_from_keras_applications(alpha, size, rng):
    assert (
        check_port(keras.applications.MobileNetV2, "mobilenet_v2", size, rng, alpha=alpha) <= 1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("alpha", KERAS_ALPHAS)
@pytest.mark.parametrize("size", [64, 97])
def test_port_of_every_alpha(alpha, size, rng):
    assert (
        check_port(keras.applications.MobileNetV2, "mobilenet_v2", size, rng, alpha=alpha) <= 1e-4
    )


# -m slow: test_cards.py loads MobileNetV2's ImageNet file the same way and compares the logits.
@pytest.mark.slow
def test_imagenet_weights_go_through_keras_applications(monkeypatch, tmp_path, rng):
    kwargs = {"alpha": 0.5, "input_shape": (224, 224, 3)}
    made = fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.MobileNetV2, **kwargs)
    theirs = keras.applications.MobileNetV2(
        weights="imagenet", classifier_activation=None, **kwargs
    )
    ours = kr.create_model("mobilenet_v2", weights="imagenet", classifier_activation=None, **kwargs)
    x = rng.uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4

    # A new 3-class head on the ImageNet backbone, at another input size.
    features = kr.create_model(
        "mobilenet_v2", alpha=0.5, weights="imagenet", num_classes=3, input_shape=(96, 96, 3)
    )
    assert features.output_shape == (None, 3)
    ported = [
        w for layer in features.layers if not layer.name.startswith("head_") for w in layer.weights
    ]
    assert len(ported) == len(made[False].weights)
    for ours_weight, source_weight in zip(ported, made[False].weights):
        np.testing.assert_array_equal(ours_weight.numpy(), source_weight.numpy())


def test_imagenet_weights_need_a_released_alpha():
    with pytest.raises(ValueError, match=r"alpha in \(0.35, 0.5, 0.75, 1.0, 1.3, 1.4\)"):
        kr.create_model("mobilenet_v2", alpha=0.6, weights="imagenet")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        kr.create_model("mobilenet_v2", alpha=0)
