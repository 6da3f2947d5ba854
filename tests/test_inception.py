"""Inception-v3: the paper's figures, the modules A-E, and the keras.applications port."""

import keras
import numpy as np
import pytest
from conftest import tiny_model
from porting import fake_imagenet_files, max_relative_difference

import kerasrecipes as kr
from kerasrecipes.layers import InceptionModule, inception_a, inception_c, inception_e


@pytest.fixture(scope="module")
def full_size():
    return kr.create_model("inception_v3")


def test_parameters_and_flops(full_size):
    info = kr.model_info(full_size)
    assert info.params == 23_851_784  # keras.applications.InceptionV3's count_params
    assert abs(info.flops / 5.7e9 - 1) < 0.05  # the published 5.7G at 299 (torchvision: 5.71)
    assert not info.uncounted_layers


def test_grid_sizes_follow_table_1(full_size):
    shapes = {layer.name: layer.output.shape[1:] for layer in full_size.layers}
    assert shapes["stem_pool2"] == (35, 35, 192)
    stage1 = [shapes[f"stage1_block{j}"] for j in (1, 2, 3)]
    assert stage1 == [(35, 35, 256), (35, 35, 288), (35, 35, 288)]
    assert [shapes[f"stage2_block{j}"] for j in range(1, 6)] == [(17, 17, 768)] * 5
    assert [shapes[f"stage3_block{j}"] for j in (1, 2, 3)] == [
        (8, 8, 1280),
        (8, 8, 2048),
        (8, 8, 2048),
    ]


def _conv_kernels(module):
    return sorted(
        tuple(layer.kernel.shape[:2])
        for layer in module.unit_layers
        if isinstance(layer, keras.layers.Conv2D)
    )


def test_modules_factorize_the_convolutions():
    model = tiny_model("inception_v3")
    # Fig. 6: the 7x7 convolutions are 1x7 and 7x1 pairs; no 7x7 kernel anywhere.
    kernels = _conv_kernels(model.get_layer("stage2_block2"))
    assert kernels.count((1, 7)) == kernels.count((7, 1)) == 3 and (7, 7) not in kernels
    # Fig. 7: the expanded filter bank, 1x3 and 3x1 side by side.
    kernels = _conv_kernels(model.get_layer("stage3_block2"))
    assert kernels.count((1, 3)) == kernels.count((3, 1)) == 2
    for layer in model.get_layer("stage1_block1").unit_layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.scale and layer.epsilon == 1e-3


def test_a_module_runs_its_branches_and_concatenates(rng):
    module = InceptionModule(inception_a(pool_filters=8), name="module")
    x = rng.normal(size=(2, 9, 9, 5)).astype("float32")
    y = keras.ops.convert_to_numpy(module(x))
    assert y.shape == (2, 9, 9, 64 + 64 + 96 + 8)
    assert module.compute_output_shape((None, 9, 9, 5)) == (None, 9, 9, 232)
    # The first branch is conv-BN-ReLU of the input: recompute it by hand.
    conv, norm = module._plan[0][0]
    expected = np.maximum(keras.ops.convert_to_numpy(norm(conv(x), training=False)), 0)
    np.testing.assert_allclose(y[..., :64], expected, atol=1e-6)
    # Weights are listed by depth, as keras.applications lists them.
    first = [w.path.split("/")[-2] for w in module.weights[:4]]
    assert first == [
        "branch3_step1_conv",
        "branch3_step1_bn",
        "branch3_step1_bn",
        "branch3_step1_bn",
    ]


def test_module_config_round_trip_and_errors():
    module = InceptionModule(inception_c(128), name="stage2_block2")
    again = InceptionModule.from_config(module.get_config())
    assert again.branches == module.branches
    assert again.compute_output_shape((None, 17, 17, 768)) == (None, 17, 17, 768)
    assert InceptionModule(inception_e()).compute_output_shape((None, 8, 8, 1280)) == (
        None,
        8,
        8,
        2048,
    )
    with pytest.raises(ValueError, match="cannot read the step '64 3by3'"):
        InceptionModule([["64 3by3"]], name="bad")
    with pytest.raises(ValueError, match="must be the last step"):
        InceptionModule([[["8 1x3", "8 3x1"], "8 1x1"]], name="bad")


# -m slow: test_cards.py loads Inception-v3's ImageNet file the same way and compares the logits.
@pytest.mark.slow
def test_imagenet_weights_go_through_keras_applications(monkeypatch, tmp_path, rng):
    fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.InceptionV3)
    x = rng.uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    # A new head: the backbone comes from the notop file.
    theirs = keras.applications.InceptionV3(
        weights="imagenet", include_top=False, pooling="avg", input_shape=(75, 75, 3)
    )
    ours = kr.create_model(  # the raw network: x is already preprocessed to [-1, 1]
        "inception_v3",
        weights="imagenet",
        num_classes=2,
        input_shape=(75, 75, 3),
        include_preprocessing=False,
    )
    features = keras.Model(ours.input, ours.get_layer("head_pool").output)
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(features(x))) <= 1e-4
