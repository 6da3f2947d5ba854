"""timm's MobileNetV2s and EfficientNets load into our models exactly (issue 36), offline.

As tests/test_timm_weights.py: timm's twins with random weights and
statistics, saved by timm into a temporary Hugging Face cache, loaded with
`weights="timm:..."`, compared on the logits of the same images.
"""

import functools

import keras
import numpy as np
import pytest
import timm_twins
from timm_twins import check_parity, random_images, random_twin, save_to_hub_cache

import kerasrecipes as kr

pytest.importorskip("timm")

# The second moment each BatchNorm's random running variance is scaled to (see `scaled_twin`).
SCALED_STD = 0.2


def scaled_twin(architecture, seed=0, size=64, **kwargs):
    """`random_twin`, each BatchNorm's running variance scaled by the mean square of its input.

    A random EfficientNet forgets its input: its BatchNorms' random statistics
    shrink the signal in every block until the constant biases dominate, and
    two images differ by 3e-4 in the logits (check_parity asks 5e-2).
    Normalizing every BatchNorm's input to the unit exactly instead makes the
    random network chaotic (float32 rounding grows to 1e-3 over B7's 55
    blocks). In between: each running variance stays the twin's random one
    (0.5 to 1.5) times the mean square of the layer's input on the check's
    images over SCALED_STD^2, set layer by layer in one pass; the running
    means stay the twin's (random, no cancellation).
    """
    import torch

    twin = random_twin(architecture, seed=seed, **kwargs)

    def scale(module, args):
        square = args[0].double().square().mean((0, 2, 3)).float()
        module.running_var.mul_(square / SCALED_STD**2)

    norms = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [norm.register_forward_pre_hook(scale) for norm in norms]
    config = twin.pretrained_cfg
    mean, std = (np.asarray(config[key], "float32") for key in ("mean", "std"))
    images = (random_images(size) / 255.0 - mean) / std
    with torch.no_grad():
        twin(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    for hook in hooks:
        hook.remove()
    return twin


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


# (timm architecture, our model, input size): one per family by default, the others slow.
PARITY = [
    ("mobilenetv2_100", "mobilenet_v2", 64),
    ("efficientnet_b0", "efficientnet_b0", 64),
    *(slow(f"mobilenetv2_{suffix}", "mobilenet_v2", 64) for suffix in ("035", "050", "075", "140")),
    *(slow(f"tf_efficientnet_b{index}", f"efficientnet_b{index}", 64) for index in range(8)),
    *(slow(f"efficientnet_b{index}", f"efficientnet_b{index}", 64) for index in range(1, 8)),
]


@pytest.mark.parametrize("architecture, model_name, size", PARITY)
def test_timm_checkpoint_gives_timms_logits(hub_cache, monkeypatch, architecture, model_name, size):
    if "efficientnet" in architecture:
        monkeypatch.setattr(timm_twins, "random_twin", functools.partial(scaled_twin, size=size))
    check_parity(hub_cache, architecture, model_name, size)


def test_options_that_contradict_the_checkpoint_are_named(hub_cache):
    weights = save_to_hub_cache(random_twin("efficientnet_b0"), hub_cache, "efficientnet_b0")
    with pytest.raises(ValueError, match="needs padding='symmetric'.*Received: padding='same'"):
        kr.create_model("efficientnet_b0", weights=weights, padding="same")
    with pytest.raises(ValueError, match="is our 'efficientnet_b0', not 'efficientnet_b1'"):
        kr.create_model("efficientnet_b1", weights=weights)
    weights = save_to_hub_cache(random_twin("mobilenetv2_050"), hub_cache, "mobilenetv2_050")
    with pytest.raises(ValueError, match="needs alpha=0.5"):
        kr.create_model("mobilenet_v2", weights=weights, alpha=1.0)


def test_unsupported_variant_says_why(hub_cache):
    weights = save_to_hub_cache(random_twin("mobilenetv2_110d"), hub_cache, "mobilenetv2_110d")
    with pytest.raises(ValueError, match="mobilenetv2_110d cannot be loaded: .*deeper variant"):
        kr.create_model("mobilenet_v2", weights=weights)


def test_keras_imagenet_weights_refuse_the_pytorch_options():
    with pytest.raises(ValueError, match="need padding='same'"):
        kr.create_model("mobilenet_v2", weights="imagenet", padding="symmetric")
    with pytest.raises(ValueError, match="need preprocessing=None"):
        kr.create_model("efficientnet_b0", weights="imagenet", preprocessing="tf")
    with pytest.raises(ValueError, match="padding must be one of"):
        kr.create_model("efficientnet_b0", padding="valid")


@pytest.mark.parametrize(
    "model_name, options",
    [
        ("mobilenet_v2", {"alpha": 0.35}),
        ("efficientnet_b0", {"preprocessing": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4]}}),
    ],
)
def test_pytorch_options_round_trip_through_a_keras_file(tmp_path, model_name, options):
    keras.utils.set_random_seed(0)
    model = kr.create_model(
        model_name, input_shape=(48, 48, 3), padding="symmetric", bn_epsilon=1e-5, **options
    )
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    block = loaded.get_layer("stage2_block1")
    assert (block.padding, block.bn_epsilon) == ("symmetric", 1e-5)
    assert block.depthwise_conv.padding == "valid" and loaded.get_layer("stem_pad")
    images = random_images(48)
    np.testing.assert_allclose(
        np.asarray(loaded(images)), np.asarray(model(images)), rtol=1e-5, atol=1e-6
    )
