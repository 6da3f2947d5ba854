"""ConvNeXt: the paper's figures, LayerScale, stochastic depth, and the keras.applications port."""

import keras
import numpy as np
import pytest
from conftest import tiny_model
from porting import fake_imagenet_files, max_relative_difference

import kerasrecipes as kr
from kerasrecipes.layers import ConvNeXtBlock
from kerasrecipes.models.convnext import VARIANTS

# Liu et al. 2022, Table 1 (ImageNet-1k at 224): parameters (millions), multiply-adds (billions).
PAPER = {
    "convnext_tiny": (28.6, 4.5),
    "convnext_small": (50.2, 8.7),
    "convnext_base": (88.6, 15.4),
    "convnext_large": (197.8, 34.4),
    "convnext_xlarge": (350.2, 60.9),
}


def blocks(model):
    return [layer for layer in model.layers if isinstance(layer, ConvNeXtBlock)]


@pytest.mark.parametrize("name", list(PAPER))
def test_parameters_match_the_paper(name):
    assert round(tiny_model(name).count_params() / 1e6, 1) == PAPER[name][0]


def test_tiny_matches_keras_and_the_paper_flops():
    info = kr.model_info(kr.create_model("convnext_tiny"))
    assert info.params == 28_589_128  # keras.applications.ConvNeXtTiny's count_params
    assert abs(info.flops / 4.5e9 - 1) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in PAPER if name != "convnext_tiny"])
def test_flops_of_the_larger_variants(name):
    assert abs(kr.model_info(kr.create_model(name)).flops / (PAPER[name][1] * 1e9) - 1) < 0.05


def test_stages_and_layer_names():
    model = tiny_model("convnext_tiny")
    assert [
        len([b for b in blocks(model) if b.name.startswith(f"stage{i}_")]) for i in (1, 2, 3, 4)
    ] == [3, 3, 9, 3]
    names = [layer.name for layer in model.layers]
    assert names[:4] == ["input", "stem_normalize", "stem_conv", "stem_norm"]
    assert names.index("stage2_downsample_norm") < names.index("stage2_downsample_conv")
    assert names.index("stage1_block3") < names.index("stage2_downsample_norm")
    assert names[-3:] == ["head_pool", "post_norm", "head_dense"]


def test_layer_scale_init_is_a_knob():
    model = kr.create_model("convnext_tiny", input_shape=(32, 32, 3), layer_scale_init=1e-3)
    gamma = blocks(model)[0].layer_scale.gamma.numpy()
    np.testing.assert_allclose(gamma, np.full(96, 1e-3, "float32"))
    without = kr.create_model("convnext_tiny", input_shape=(32, 32, 3), layer_scale_init=None)
    assert all(block.layer_scale is None for block in blocks(without))
    depths, widths = VARIANTS["convnext_tiny"]
    fewer = sum(d * w for d, w in zip(depths, widths))
    assert tiny_model("convnext_tiny").count_params() - without.count_params() == fewer
    with pytest.raises(ValueError, match="layer_scale_init=None cannot take them"):
        kr.create_model("convnext_tiny", layer_scale_init=None, weights="imagenet")


def test_stochastic_depth_rises_linearly_over_all_blocks():
    model = kr.create_model("convnext_tiny", input_shape=(32, 32, 3), drop_path_rate=0.1)
    rates = [block.drop_path_rate for block in blocks(model)]
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.1, 18))
    assert all(block.drop_path_rate == 0.0 for block in blocks(tiny_model("convnext_tiny")))


def test_imagenet_weights_go_through_keras_applications(monkeypatch, tmp_path, rng):
    fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.ConvNeXtTiny)
    x = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    theirs = keras.applications.ConvNeXtTiny(weights="imagenet", classifier_activation=None)
    ours = kr.create_model("convnext_tiny", weights="imagenet", classifier_activation=None)
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4

    # A new head: the backbone and the final LayerNorm come from the notop file.
    x = x[:, :64, :64]
    theirs = keras.applications.ConvNeXtTiny(
        weights="imagenet", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    ours = kr.create_model(
        "convnext_tiny", weights="imagenet", num_classes=2, input_shape=(64, 64, 3)
    )
    features = keras.Model(ours.input, ours.get_layer("post_norm").output)
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(features(x))) <= 1e-4
