"""VGG-16/19 and AlexNet: the papers' figures, the batch-normalized variants, the VGG port."""

import keras
import numpy as np
import pytest
from conftest import tiny_model
from porting import fake_imagenet_files, max_relative_difference

import kerasrecipes as kr

# count_params of keras.applications.VGG16 / VGG19 (the paper's 138M and 144M,
# Table 2) and multiply-adds at 224 (15.5G and 19.6G, as usually quoted).
VGG = {"vgg16": (138_357_544, 15.5e9), "vgg19": (143_667_240, 19.6e9)}


@pytest.mark.parametrize("name", list(VGG))
def test_vgg_parameters_and_flops(name):
    info = kr.model_info(kr.create_model(name))
    params, flops = VGG[name]
    assert info.params == params
    assert abs(info.flops / flops - 1) < 0.05
    assert not info.uncounted_layers


def test_vgg_layers_follow_configuration_d():
    model = tiny_model("vgg16")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [conv.filters for conv in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert all(conv.kernel_size == (3, 3) and conv.activation.__name__ == "relu" for conv in convs)
    names = [layer.name for layer in model.layers]
    assert names[-7:] == [
        "stage5_pool",
        "head_flatten",
        "head_fc1",
        "head_dropout1",
        "head_fc2",
        "head_dropout2",
        "head_dense",
    ]
    assert model.get_layer("head_dropout1").rate == 0.5


def test_batch_normalized_vgg():
    model = kr.create_model("vgg16", batch_norm=True, input_shape=(32, 32, 3))
    assert model.name == "vgg16_bn"
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 13
    names = [layer.name for layer in model.layers]
    assert names[1:5] == [
        "stem_preprocess",
        "stage1_block1_conv",
        "stage1_block1_bn",
        "stage1_block1_relu",
    ]
    plain = tiny_model("vgg16")
    learned = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert learned - plain.count_params() == 2 * 4224  # gamma and beta of 4,224 channels
    with pytest.raises(ValueError, match="no ImageNet weights for the batch-normalized"):
        kr.create_model("vgg16", batch_norm=True, weights="imagenet")
    with pytest.raises(ValueError, match="take the 7x7x512 map of a 224x224 input"):
        kr.create_model("vgg16", weights="imagenet", input_shape=(160, 160, 3))


def test_vgg_imagenet_backbone_goes_through_keras_applications(monkeypatch, tmp_path, rng):
    fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.VGG16)
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    theirs = keras.applications.VGG16(
        weights="imagenet", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    ours = kr.create_model(
        "vgg16", weights="imagenet", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    # Ours applies the "caffe" preprocessing itself; theirs takes preprocess_input's output.
    expected = keras.ops.convert_to_numpy(
        theirs(keras.applications.vgg16.preprocess_input(x.copy()))
    )
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4


@pytest.mark.slow
def test_vgg_new_classifier_keeps_the_pretrained_fully_connected_layers(monkeypatch, tmp_path, rng):
    made = fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.VGG16)
    ours = kr.create_model("vgg16", weights="imagenet", num_classes=2)
    source = made[True]
    pairs = (("head_fc1", "fc1"), ("head_fc2", "fc2"), ("stage5_block3_conv", "block5_conv3"))
    for name, keras_name in pairs:
        for mine, theirs in zip(ours.get_layer(name).weights, source.get_layer(keras_name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert ours.get_layer("head_dense").kernel.shape == (4096, 2)


# torchvision's alexnet (the single-tower network of Krizhevsky 2014): 61.1M parameters, 0.71G.
ALEXNET_PARAMS, ALEXNET_FLOPS = 61_100_840, 0.71e9


def test_alexnet_parameters_and_flops():
    info = kr.model_info(kr.create_model("alexnet"))
    assert info.params == ALEXNET_PARAMS
    assert abs(info.flops / ALEXNET_FLOPS - 1) < 0.05


def test_alexnet_layers():
    model = tiny_model("alexnet")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [
        (64, (11, 11), (4, 4)),
        (192, (5, 5), (1, 1)),
        (384, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)),
    ]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2))] * 3
    assert model.get_layer("head_fc1").units == model.get_layer("head_fc2").units == 4096
    assert model.get_layer("head_dropout2").rate == 0.5
    # At 224 the first fully connected layer sees the 6x6x256 map, flattened.
    assert kr.create_model("alexnet", include_top=False).output_shape == (None, 6, 6, 256)


def test_batch_normalized_alexnet_and_errors():
    model = kr.create_model("alexnet", batch_norm=True, input_shape=(63, 63, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(not conv.use_bias for conv in convs)
    assert len([layer for layer in model.layers if layer.name.endswith("_bn")]) == 5
    with pytest.raises(ValueError, match="at least 63"):
        kr.create_model("alexnet", input_shape=(62, 62, 3))
    with pytest.raises(ValueError, match="No ImageNet weights for 'alexnet'"):
        kr.create_model("alexnet", weights="imagenet")
