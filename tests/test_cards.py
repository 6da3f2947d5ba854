"""The model cards, driven by the registry: every registered model gets these tests.

A new variant is one table row plus its registration; these tests then cover its
card, its builder contract, its feature maps and (with weights) its port.
"""

import keras
import numpy as np
import pytest
from conftest import (
    classifier_on_keras_mobilenet_v2,
    marked_slow_but_one_per_family,
    marked_slow_if_heavy,
    one_per_family,
    tiny_input_shape,
)
from porting import check_port, fake_imagenet_files, max_relative_difference

import kerasrecipes as kr
from kerasrecipes import _compat
from kerasrecipes.layers.preprocessing import MODES
from kerasrecipes.registry import COMMON_ARGS

ALL_MODELS = kr.list_models()
PRETRAINED = kr.list_models(pretrained=True)
# Families whose maps are not exact divisions of the input (valid-padded stems and pools).
VALID_PADDED = {"alexnet", "inception"}
# The layers that preprocess inside a model: ours, or keras.applications' own layers.
PREPROCESSING_LAYERS = ("stem_preprocess", "stem_rescale", "stem_normalize")


def twin_function(name):
    return getattr(keras.applications, kr.model_card(name).pretrained["imagenet"].twin)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_card_is_complete(name):
    card = kr.model_card(name)
    assert card.name == name and card.paper and card.variant
    assert card.preprocessing in MODES
    assert card.blocks and len(set(card.blocks)) == len(card.blocks)
    assert card.param_group_names == ("stem", *card.blocks, "head")
    assert card.feature_taps
    reductions = [tap.reduction for tap in card.feature_taps]
    assert reductions == sorted(reductions) and all(tap.channels > 0 for tap in card.feature_taps)
    for weights in card.pretrained.values():
        assert weights.preprocessing in MODES and hasattr(keras.applications, weights.twin)
        # The builder puts the weights' preprocessing in front by default.
        assert card.preprocessing == weights.preprocessing


@pytest.mark.parametrize("name", marked_slow_but_one_per_family(ALL_MODELS))
def test_builders_take_every_common_argument_and_the_cards_preprocessing(name):
    card = kr.model_card(name)
    shape = tiny_input_shape(name)
    common = {
        "num_classes": 3,
        "input_shape": shape,
        "include_top": True,
        "include_preprocessing": False,
        "pooling": None,
        "dropout": 0.1,
        "drop_path_rate": 0.1 if card.drop_path else 0.0,
        "weights": None,
        "classifier_activation": None,
    }
    assert set(common) == set(COMMON_ARGS)
    raw = kr.create_model(name, **common)
    names = [layer.name for layer in raw.layers]
    assert not set(PREPROCESSING_LAYERS) & set(names)
    assert raw.output_shape == (None, 3)
    full = kr.create_model(name, input_shape=shape, num_classes=3)
    full_names = [layer.name for layer in full.layers]
    if "stem_preprocess" in full_names:
        assert full.get_layer("stem_preprocess").mode == card.preprocessing
    else:  # EfficientNet and ConvNeXt standardize inside, as keras.applications
        assert "stem_normalize" in full_names and card.preprocessing == "torch"
    # The same variables: preprocessing adds none that a weights file would carry.
    assert [w.shape for w in full.trainable_weights] == [w.shape for w in raw.trainable_weights]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_an_argument_the_model_cannot_use_is_a_value_error_naming_it(name):
    card = kr.model_card(name)
    if not card.drop_path:
        with pytest.raises(ValueError, match=f"{name}: drop_path_rate needs residual"):
            kr.create_model(name, drop_path_rate=0.1)
    if "imagenet" not in card.pretrained:
        with pytest.raises(ValueError, match=f"No ImageNet weights for '{name}'"):
            kr.create_model(name, weights="imagenet")
    if card.family != "vit":
        with pytest.raises(ValueError, match=f"{name}: pooling must be one of"):
            kr.create_model(name, pooling="token", input_shape=tiny_input_shape(name))


def feature_sizes(name):
    card = kr.model_card(name)
    if card.family == "vit":
        return (32, 48)
    if card.family == "inception":
        return (75, 107)
    return (64, 96) if card.family != "alexnet" else (63, 127)


@pytest.mark.parametrize("name", marked_slow_if_heavy(ALL_MODELS))
def test_features_only_gives_every_tap_at_two_input_sizes(name):
    card = kr.model_card(name)
    for size in feature_sizes(name):
        model = kr.create_model(name, features_only=True, input_shape=(size, size, 3))
        x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
        maps = model(x)
        info = kr.feature_info(model)
        assert [tap.layer for tap in info] == [tap.layer for tap in card.feature_taps]
        for tap, expected, feature_map in zip(info, card.feature_taps, maps):
            feature_map = keras.ops.convert_to_numpy(feature_map)
            assert feature_map.shape[-1] == expected.channels == tap.channels
            assert tap.reduction == expected.reduction
            assert np.all(np.isfinite(feature_map))
            height = feature_map.shape[1]
            if card.family in VALID_PADDED:
                # Valid windows trim a few pixels at every stride.
                assert size / tap.reduction - 4 <= height <= size / tap.reduction, tap
            else:
                assert height * tap.reduction == size, (tap, feature_map.shape)


def test_resnet50_stages_one_to_four_are_strides_4_to_32():
    model = kr.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    info = kr.feature_info(model)
    assert [tap.reduction for tap in info] == [4, 8, 16, 32]
    assert [tap.channels for tap in info] == [256, 512, 1024, 2048]
    assert [tuple(output.shape[1:3]) for output in model.outputs] == [
        (56, 56),
        (28, 28),
        (14, 14),
        (7, 7),
    ]
    # feature_info of a whole classifier lists the card's taps found in it.
    classifier = kr.create_model("resnet20")
    assert [tap.channels for tap in kr.feature_info(classifier)] == [16, 32, 64]


def test_vit_taps_are_patch_grids_of_the_chosen_blocks():
    model = kr.create_model(
        "vit_tiny16", features_only=True, out_indices=(3, 11), input_shape=(32, 48, 3)
    )
    assert [tuple(output.shape) for output in model.outputs] == [(None, 2, 3, 192)] * 2
    assert [tap.layer for tap in kr.feature_info(model)] == ["stage1_block4", "stage1_block12"]


def test_feature_model_arguments_are_checked():
    with pytest.raises(ValueError, match=r"out_indices must be distinct tap positions in 0..4"):
        kr.create_model("resnet18", features_only=True, out_indices=(1, 5))
    with pytest.raises(ValueError, match="needs features_only=True"):
        kr.create_model("resnet18", out_indices=(1,))
    with pytest.raises(ValueError, match="include_top does not apply"):
        kr.create_model("resnet18", features_only=True, include_top=True)


def test_features_keep_the_weights_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    features = kr.create_model("mobilenet_v2", features_only=True, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    path = tmp_path / "features.keras"
    features.save(path)
    loaded = keras.saving.load_model(path)
    for ours, theirs in zip(features(x), loaded(x)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), atol=1e-6
        )
    assert [tap.reduction for tap in kr.feature_info(loaded)] == [2, 4, 8, 16, 32]


# -m slow: the ported weights are checked by test_port_of_every_pretrained_model and each tap's
# shape by test_features_only_gives_every_tap_at_two_input_sizes; this compares one tap's values.
@pytest.mark.slow
def test_pretrained_features_match_the_twins_stage_outputs(monkeypatch, tmp_path, rng):
    fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.ResNet50)
    ours = kr.create_model(
        "resnet50",
        weights="imagenet",
        features_only=True,
        out_indices=(3,),
        input_shape=(64, 64, 3),
    )
    twin = keras.applications.ResNet50(
        weights="imagenet", include_top=False, input_shape=(64, 64, 3)
    )
    stage3 = keras.Model(twin.input, twin.get_layer("conv4_block6_out").output)
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(
        stage3(keras.applications.resnet.preprocess_input(x.copy()))
    )
    actual = keras.ops.convert_to_numpy(ours(x))
    assert max_relative_difference(expected, actual) <= 1e-4


@pytest.mark.parametrize("name", marked_slow_if_heavy(PRETRAINED))
def test_port_of_every_pretrained_model(name, rng):
    """Random twin weights, ported by position; ours on 0-255 vs the twin on preprocess_input.

    Two sizes: one a multiple of 32, one odd (padding and pooling at the edges).
    """
    sizes = (75, 107) if kr.model_card(name).family == "inception" else (64, 97)
    for size in sizes:
        assert check_port(twin_function(name), name, size, rng) <= 1e-4, size


@pytest.mark.parametrize("name", one_per_family(PRETRAINED))
def test_imagenet_weights_from_a_local_file_give_the_twins_logits(name, monkeypatch, tmp_path, rng):
    """weights="imagenet" through keras.applications' download (a file made here)."""
    card = kr.model_card(name)
    weights = card.pretrained["imagenet"]
    fake_imagenet_files(monkeypatch, tmp_path, rng, twin_function(name))
    # VGG's flattening top needs 224x224; its backbone is compared at 64 instead.
    options = {"include_top": False, "pooling": "avg"} if card.family == "vgg" else {}
    options["classifier_activation"] = None  # compare logits, not near-zero probabilities
    size = 64 if card.family == "vgg" else weights.input_size
    shape = (size, size, 3)
    ours = kr.create_model(name, weights="imagenet", input_shape=shape, **options)
    twin = twin_function(name)(weights="imagenet", input_shape=shape, **options)
    x = rng.uniform(0, 255, (2,) + shape).astype("float32")
    expected = keras.ops.convert_to_numpy(twin(weights.twin_preprocess_input(x.copy())))
    assert max_relative_difference(expected, keras.ops.convert_to_numpy(ours(x))) <= 1e-4


def test_param_groups_follow_the_card():
    model = kr.create_model("convnext_tiny", input_shape=(32, 32, 3), num_classes=2)
    groups = kr.param_groups(model)
    card = kr.model_card("convnext_tiny")
    assert [group.name for group in groups] == list(card.param_group_names)
    by_name = {group.name: group for group in groups}
    # A stage's downsampling goes with the block it opens; the final norm with the last block.
    assert any(p.startswith("stage2_downsample_conv/") for p in by_name["stage2_block1"].paths)
    assert any(p.startswith("post_norm/") for p in by_name["stage4_block3"].paths)
    assert {p.split("/")[0] for p in by_name["head"].paths} == {"head_dense"}
    total = sum(len(group.variables) for group in groups)
    assert total == len(model.trainable_variables)


def test_param_groups_of_a_nested_keras_applications_backbone():
    model, backbone = classifier_on_keras_mobilenet_v2()
    names = [group.name for group in kr.param_groups(model)]
    prefix = backbone.name
    assert names[0] == f"{prefix}/stem" and names[-1] == "head"
    assert names[1:-1] == [f"{prefix}/block_{i}" for i in range(1, 17)]


@pytest.mark.parametrize("name", one_per_family(ALL_MODELS))
def test_a_mixed_precision_model_reloads_with_every_sublayer_in_its_policy(name, tmp_path):
    """A model trained under `mixed_bfloat16` (`precision="auto"` on AMX CPUs) and loaded in a
    float32 process: a sublayer made without the parent's policy would compute in float32 and
    break the block's residual sum (bfloat16 + float32)."""
    shape = tiny_input_shape(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = kr.create_model(name, num_classes=2, input_shape=shape)
    finally:
        keras.config.set_dtype_policy(previous)
    model.save(tmp_path / "mixed.keras")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras")
    policies = {
        layer.path: layer.dtype_policy.name
        for layer in _compat.sublayers(loaded, recursive=True)
        if not isinstance(layer, keras.layers.InputLayer)
    }
    assert {path for path, policy in policies.items() if policy != "mixed_bfloat16"} == set()
    images = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32")
    assert loaded.predict(images, verbose=0).shape == (1, 2)
