"""timm's VGG and Inception-v3 checkpoints load into our models exactly, offline, from twins.

As tests/test_timm_weights.py: timm's own model with random weights and
statistics, saved by timm into a temporary Hugging Face cache, loaded with
`weights="timm:..."`; the logits must agree. VGG's flattening top equals
timm's convolutional one on the 7x7 map of a 224x224 input only, so VGG is
compared at 224 (its 138M parameters make these the heaviest twins).
"""

import keras
import numpy as np
import pytest
from timm_twins import (
    TOLERANCE,
    check_parity,
    random_images,
    random_twin,
    relative_difference,
    save_to_folder,
    save_to_hub_cache,
    timm_logits,
)

import kerasrecipes as kr
from kerasrecipes.layers import InceptionModule, inception_e

pytest.importorskip("timm")


# (timm architecture, our model, input size): one per family by default, the others slow.
PARITY = [
    ("inception_v3", "inception_v3", 75),
    pytest.param("vgg16_bn", "vgg16", 224, marks=pytest.mark.slow),
    pytest.param("vgg16", "vgg16", 224, marks=pytest.mark.slow),
    pytest.param("vgg19", "vgg19", 224, marks=pytest.mark.slow),
    pytest.param("vgg19_bn", "vgg19", 224, marks=pytest.mark.slow),
    pytest.param("inception_v3", "inception_v3", 299, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("architecture, model_name, size", PARITY)
def test_timm_checkpoint_gives_timms_logits(hub_cache, architecture, model_name, size):
    check_parity(hub_cache, architecture, model_name, size)


def test_inception_checkpoint_with_the_auxiliary_classifier(hub_cache):
    """torchvision's checkpoint (`tv_in1k`) holds `AuxLogits.*`, which we leave out."""
    twin = random_twin("inception_v3", aux_logits=True)
    assert any(key.startswith("AuxLogits.") for key in twin.state_dict())
    weights = save_to_hub_cache(twin, hub_cache, "inception_v3")
    twin.aux_logits = False  # timm's forward then returns the logits alone
    size = 107
    model = kr.create_model(
        "inception_v3", weights=weights, input_shape=(size, size, 3), classifier_activation=None
    )
    images = random_images(size)
    difference = relative_difference(
        np.asarray(model(images, training=False)), timm_logits(twin, images)
    )
    assert difference <= TOLERANCE
    print(f"parity inception_v3 (AuxLogits ignored) at {size}px: {difference:.1e}")


@pytest.fixture(scope="module")
def vgg16_bn_checkpoint(tmp_path_factory):
    """timm's random vgg16_bn saved as a local checkpoint (138M parameters: made once here)."""
    twin = random_twin("vgg16_bn")
    return twin, save_to_folder(twin, tmp_path_factory.mktemp("vgg16_bn"))


def test_vgg_backbone_loads_at_any_size(vgg16_bn_checkpoint):
    """Without the top, timm's convolutions and BatchNorms load at any size; the top's
    tensors are left out. (The whole network at 224 is compared in the slow PARITY tests.)"""
    import torch

    twin, path = vgg16_bn_checkpoint
    size = 64
    model = kr.create_model(
        "vgg16", weights=path, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    assert model.get_layer("stage1_block1_bn").epsilon == pytest.approx(1e-5, rel=0.01)
    images = random_images(size)
    mean, std = (np.asarray(twin.pretrained_cfg[key], "float32") for key in ("mean", "std"))
    x = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        theirs = twin.forward_features(x).mean(dim=(2, 3)).numpy()
    difference = relative_difference(np.asarray(model(images, training=False)), theirs)
    assert difference <= TOLERANCE
    print(f"parity vgg16_bn backbone -> vgg16 at {size}px: {difference:.1e}")


def test_vgg_checkpoint_top_needs_224(vgg16_bn_checkpoint):
    """timm's fc6 is a 7x7 convolution, our flattening top's first layer only at 224x224."""
    _, path = vgg16_bn_checkpoint
    with pytest.raises(ValueError, match=r"input_shape=\(224, 224, 3\), or include_top=False"):
        kr.create_model("vgg16", weights=path, input_shape=(160, 160, 3))
    with pytest.raises(ValueError, match="needs batch_norm=True"):
        kr.create_model("vgg16", weights=path, batch_norm=False)


def test_torchvision_inception_options_reach_every_layer_and_round_trip(tmp_path, rng):
    """bn_scale and count_include_pad reach the stem and every module, and survive a .keras
    file; keras.applications' ImageNet weights refuse them."""
    model = kr.create_model(
        "inception_v3", input_shape=(75, 75, 3), bn_scale=True, count_include_pad=True
    )
    modules = [layer for layer in model.layers if isinstance(layer, InceptionModule)]
    assert len(modules) == 11
    assert all(module.bn_scale and module.count_include_pad for module in modules)
    assert all(model.get_layer(f"stem_bn{k}").scale for k in range(1, 6))
    with pytest.raises(ValueError, match="bn_scale=False and count_include_pad=False"):
        kr.create_model("inception_v3", weights="imagenet", bn_scale=True)

    # The module's configuration in a .keras file (a small model: the whole one takes 10 s).
    inputs = keras.Input((9, 9, 16))
    module = InceptionModule(inception_e(), bn_scale=True, count_include_pad=True, name="m")
    small = keras.Model(inputs, module(inputs))
    for variable in small.weights:  # random scales and statistics, so no unit is trivial
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    path = str(tmp_path / "module.keras")
    small.save(path)
    again = keras.saving.load_model(path)
    x = rng.normal(size=(2, 9, 9, 16)).astype("float32")
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(small(x)))
    loaded = again.get_layer("m")
    assert loaded.bn_scale and loaded.count_include_pad
    # Keras' average pools (the default) give other values at the border.
    keras_pools = InceptionModule(inception_e(), bn_scale=True, name="m")
    keras_pools(x)
    keras_pools.set_weights(module.get_weights())
    assert not np.allclose(np.asarray(keras_pools(x)), np.asarray(small(x)))
