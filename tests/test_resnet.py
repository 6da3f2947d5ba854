"""ResNet family: the paper's parameter and FLOP figures, the keras.applications port, errors."""

import keras
import numpy as np
import pytest
from conftest import tiny_model
from porting import fake_imagenet_files, randomize_statistics

import kerasrecipes as kr
from kerasrecipes.models.resnet import cifar_resnet
from kerasrecipes.weights import port_weights

# He et al. 2015, Table 6. The paper counts learned parameters, so BatchNorm's
# moving statistics (not learned) are left out: ModelInfo.trainable_params.
CIFAR_PARAMS_M = {
    "resnet20": 0.27,
    "resnet32": 0.46,
    "resnet44": 0.66,
    "resnet56": 0.85,
    "resnet110": 1.7,
    "resnet1202": 19.4,
}
# keras.applications' figures (count_params, moving statistics included), which
# for ResNet-18/34 equal the paper's Table 1 rounding either way.
IMAGENET_PARAMS_M = {
    "resnet18": 11.7,
    "resnet34": 21.8,
    "resnet50": 25.6,
    "resnet101": 44.7,
    "resnet152": 60.4,
}


@pytest.mark.parametrize(
    "name, paper",
    [
        # ResNet-1202 takes ~30 s to build; its forward pass and names stay in the default run.
        pytest.param(name, paper, marks=pytest.mark.slow) if name == "resnet1202" else (name, paper)
        for name, paper in CIFAR_PARAMS_M.items()
    ],
)
def test_cifar_parameter_counts_round_to_the_paper(name, paper):
    info = kr.model_info(tiny_model(name))
    digits = 2 if paper < 1 else 1
    assert round(info.trainable_params / 1e6, digits) == paper


@pytest.mark.parametrize("name, paper", IMAGENET_PARAMS_M.items())
def test_imagenet_parameter_counts(name, paper):
    assert round(tiny_model(name).count_params() / 1e6, 1) == paper


def test_resnet50_has_exactly_the_keras_parameter_count():
    assert tiny_model("resnet50").count_params() == 25_636_712


def test_resnet50_flops_match_the_paper():
    info = kr.model_info(kr.create_model("resnet50"))
    assert info.input_shape == (224, 224, 3)
    # He et al. 2015, Table 1: 3.8G multiply-adds; the Keras (v1, stride in the
    # first 1x1 convolution) network counts 3.86G.
    assert abs(info.flops / 3.8e9 - 1) < 0.05
    assert abs(info.flops / 3.86e9 - 1) < 0.005


@pytest.mark.parametrize("depth", [8, 14, 26])
def test_cifar_builder_takes_any_depth_6n_plus_2(depth):
    model = cifar_resnet(depth=depth, input_shape=(16, 16, 3))
    blocks = [layer for layer in model.layers if layer.name.startswith("stage")]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert model.name == f"resnet{depth}"


def test_option_b_projection_adds_parameters_over_option_a():
    option_a = cifar_resnet(depth=20, input_shape=(16, 16, 3))
    option_b = cifar_resnet(depth=20, input_shape=(16, 16, 3), shortcut="B")
    assert option_b.layers[-1].output.shape == option_a.layers[-1].output.shape
    assert option_b.count_params() > option_a.count_params()
    projected = [
        layer.name for layer in option_b.layers if getattr(layer, "shortcut", None) == "projection"
    ]
    assert projected == ["stage2_block1", "stage3_block1"]


def test_plain_network_is_the_resnet_without_its_shortcuts(tmp_path):
    # He et al.'s plain-20 (Fig. 6): the same layers and parameters as ResNet-20 with
    # option A, no shortcut in any block, and no block starting at zero.
    plain = cifar_resnet(depth=20, input_shape=(16, 16, 3), shortcut="none")
    residual = cifar_resnet(depth=20, input_shape=(16, 16, 3))
    assert plain.name == "plain20"
    assert plain.count_params() == residual.count_params()
    blocks = [layer for layer in plain.layers if layer.name.startswith("stage")]
    assert len(blocks) == 9 and all(block.shortcut == "none" for block in blocks)
    assert all(np.all(np.array(block.bn2.gamma) == 1.0) for block in blocks)
    # A plain block's output is its branch alone, through the ReLU.
    features = np.random.default_rng(1).normal(size=(2, 8, 8, 16)).astype("float32")
    block = plain.get_layer("stage1_block2")
    np.testing.assert_allclose(
        block(features), keras.ops.relu(block._residual_branch(features, False)), atol=1e-6
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    out = plain(images)
    path = tmp_path / "plain20.keras"
    plain.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(images), out, atol=1e-6)
    with pytest.raises(ValueError, match="drop_path_rate=0.1 needs a shortcut"):
        cifar_resnet(depth=20, shortcut="none", drop_path_rate=0.1)


def test_preactivation_variant_builds_and_ends_with_post_norm():
    model = cifar_resnet(depth=20, input_shape=(16, 16, 3), preact=True)
    names = [layer.name for layer in model.layers]
    assert "post_bn" in names and "stem_bn" not in names
    assert all(layer.preact for layer in model.layers if layer.name.startswith("stage"))
    out = model(np.ones((2, 16, 16, 3), "float32"))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))


def test_zero_init_residual_can_be_turned_off_from_the_builder():
    def last_gammas(model):
        return [layer.bn2.gamma.numpy() for layer in model.layers if layer.name.startswith("stage")]

    assert all(not g.any() for g in last_gammas(cifar_resnet(depth=8, input_shape=(16, 16, 3))))
    paper_init = cifar_resnet(depth=8, input_shape=(16, 16, 3), zero_init_residual=False)
    assert all((g == 1).all() for g in last_gammas(paper_init))


def test_numpy_integers_are_accepted_as_num_classes():
    labels = np.array([0, 3, 1])
    assert cifar_resnet(depth=8, num_classes=labels.max() + 1).output_shape == (None, 4)


def test_drop_path_rates_rise_linearly_to_the_last_block():
    model = cifar_resnet(depth=20, input_shape=(16, 16, 3), drop_path_rate=0.2)
    rates = [layer.drop_path_rate for layer in model.layers if layer.name.startswith("stage")]
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.2)
    assert np.all(np.diff(rates) > 0)


def test_port_between_different_networks_names_the_problem():
    source = keras.applications.ResNet101(weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="'resnet101' has 626 variables but 'resnet50' has 320"):
        port_weights(source, tiny_model("resnet50"))


@pytest.fixture
def fake_imagenet_download(monkeypatch, tmp_path, rng):
    return fake_imagenet_files(monkeypatch, tmp_path, rng, keras.applications.ResNet50)


def test_imagenet_weights_go_through_keras_applications(fake_imagenet_download):
    ours = kr.create_model("resnet50", weights="imagenet")
    source = fake_imagenet_download[True]
    for ours_weight, source_weight in zip(ours.weights, source.weights):
        np.testing.assert_array_equal(ours_weight.numpy(), source_weight.numpy())


def test_imagenet_backbone_with_a_new_head(fake_imagenet_download):
    ours = kr.create_model("resnet50", weights="imagenet", num_classes=5, input_shape=(64, 64, 3))
    source = fake_imagenet_download[False]
    backbone = [
        w for layer in ours.layers if not layer.name.startswith("head_") for w in layer.weights
    ]
    assert len(backbone) == len(source.weights)
    for ours_weight, source_weight in zip(backbone, source.weights):
        np.testing.assert_array_equal(ours_weight.numpy(), source_weight.numpy())
    assert ours.output_shape == (None, 5)


def test_weights_from_local_files(tmp_path, rng):
    trained = cifar_resnet(depth=8, input_shape=(16, 16, 3))
    randomize_statistics(trained, rng)
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(trained(x))
    trained.save_weights(tmp_path / "r8.weights.h5")
    trained.save(tmp_path / "r8.keras")
    for path in (tmp_path / "r8.weights.h5", tmp_path / "r8.keras"):
        loaded = cifar_resnet(depth=8, input_shape=(16, 16, 3), weights=str(path))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)


def test_weights_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        cifar_resnet(depth=8, weights=str(tmp_path / "missing.weights.h5"))
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="Expected a .weights.h5 or .keras file"):
        cifar_resnet(depth=8, weights=str(tmp_path / "w.npz"))
    with pytest.raises(ValueError, match="No ImageNet weights for 'resnet18'"):
        kr.create_model("resnet18", weights="imagenet")
    with pytest.raises(ValueError, match="weights must be None, 'imagenet'"):
        cifar_resnet(depth=8, weights=3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cifar_resnet(depth=21), r"depth must be 6n\+2.*Received: depth=21"),
        (lambda: cifar_resnet(depth=2), r"depth must be 6n\+2"),
        (lambda: kr.create_model("resnet20", num_classes=0), "num_classes must be an integer >= 1"),
        (
            lambda: kr.create_model("resnet50", input_shape=(16, 16, 3)),
            "too small.*downsamples by 32",
        ),
        (lambda: kr.create_model("resnet20", input_shape=(32, 32)), r"\(height, width, channels\)"),
        (lambda: kr.create_model("resnet20", pooling="sum"), "pooling must be one of"),
        (lambda: kr.create_model("resnet20", dropout=1.5), "dropout must be in"),
        (lambda: kr.create_model("resnet20", drop_path_rate=-0.1), "drop_path_rate must be in"),
        (lambda: kr.create_model("resnet20", shortcut="C"), "shortcut must be one of"),
        (lambda: kr.create_model("resnet50", block="wide"), "block must be one of"),
        (lambda: kr.create_model("baseline_cnn", drop_path_rate=0.1), "needs residual branches"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
