"""Registry and model_info."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

import kerasrecipes as kr
from kerasrecipes.registry import register_model


def test_list_models_filters_and_sorts_naturally():
    names = kr.list_models("resnet*")
    assert all(name.startswith("resnet") for name in names)
    # Numbers sort as numbers: resnet20 before resnet101, not after it.
    for smaller, larger in [("resnet18", "resnet20"), ("resnet56", "resnet101")]:
        assert names.index(smaller) < names.index(larger)
    assert names[-1] == "resnet1202"
    assert kr.list_models("nothing*") == []
    assert "baseline_cnn" in kr.list_models()


def test_create_model_passes_arguments_to_the_builder():
    model = kr.create_model("resnet20", num_classes=7, input_shape=(24, 24, 1), dropout=0.2)
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None, 24, 24, 1)
    assert model.get_layer("head_dropout").rate == 0.2


def test_unknown_name_lists_the_closest_registered_names():
    with pytest.raises(ValueError, match="Unknown model name: 'resnet51'.*resnet50") as error:
        kr.create_model("resnet51")
    assert "list_models()" in str(error.value)


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_model(
            "resnet20", family="x", paper="x", default_input_shape=(1, 1, 1), min_input_size=1
        )(lambda **kwargs: None)


def test_cards_describe_the_models():
    card = kr.model_card("resnet50")
    assert card.family == "resnet" and list(card.pretrained) == ["imagenet"]
    assert card.pretrained["imagenet"] == kr.PretrainedWeights("ResNet50", "caffe", 224, "resnet")
    assert card.default_input_shape == (224, 224, 3)
    assert card.variant["blocks_per_stage"] == (3, 4, 6, 3)
    assert card.blocks[0] == "stage1_block1" and len(card.blocks) == 16
    assert kr.model_card("resnet20").pretrained == {}
    assert kr.get_model_entry("resnet20") is kr.model_card("resnet20")  # the earlier name


def test_list_models_filters_on_pretrained_weights():
    with_weights = kr.list_models(pretrained=True)
    assert "resnet50" in with_weights and "resnet20" not in with_weights
    assert kr.list_models("vgg*", pretrained="imagenet") == ["vgg16", "vgg19"]
    assert kr.list_models("vit*", pretrained=True) == []


def test_model_info_counts_convolutions_and_dense_layers_exactly():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(
        inputs
    )  # 5x5x4 outputs
    x = keras.layers.DepthwiseConv2D(3)(x)  # 3x3x4 outputs
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2)(x)
    info = kr.model_info(keras.Model(inputs, outputs))
    conv = 5 * 5 * (3 * 3 * 3 * 4)
    depthwise = 3 * 3 * (3 * 3 * 4)
    dense = 36 * 2
    assert info.flops == conv + depthwise + dense
    assert info.params == 3 * 3 * 3 * 4 + (3 * 3 * 4 + 4) + (36 * 2 + 2)


def test_model_info_counts_separable_transposed_and_einsum_layers_and_lists_others():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.SeparableConv2D(6, 3, padding="same", use_bias=False)(inputs)  # 8x8 out
    x = keras.layers.Conv2DTranspose(2, 2, strides=2, use_bias=False)(x)  # 8x8 in, 16x16 out
    x = keras.layers.Reshape((16 * 16, 2))(x)
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(16 * 16, 3))(x)
    outputs = keras.layers.PReLU(name="mix")(x)
    info = kr.model_info(keras.Model(inputs, outputs))
    separable = 8 * 8 * (3 * 3 * 4 + 4 * 6)
    transposed = 8 * 8 * (2 * 2 * 2 * 6)
    einsum = 16 * 16 * 3 * 2  # one multiply-add per output entry per contracted entry
    assert info.flops == separable + transposed + einsum
    assert info.uncounted_layers == ("mix",)
    assert "not counted: mix" in str(info)


def test_model_info_reports_trainable_parameters_and_unknown_flops():
    model = kr.create_model("resnet20", input_shape=(None, None, 3))
    info = kr.model_info(model)
    assert info.flops is None and "unknown" in str(info)
    model.get_layer("stage1_block1").trainable = False
    frozen = kr.model_info(model)
    assert frozen.params == info.params
    assert frozen.trainable_params < info.trainable_params


def test_model_info_string():
    text = str(kr.model_info(kr.create_model("resnet20")))
    assert text.startswith("resnet20: 271,098 parameters (269,722 trainable), 0.041G multiply-adds")


def test_the_model_builders_load_without_tensorflow():
    # A GPU machine with JAX or PyTorch and no TensorFlow (what benchmarks/vs_timm.py's workers
    # run on): `sys.modules["tensorflow"] = None` makes every import of it fail, as there.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None
        import kerasrecipes as kr
        import kerasrecipes.models
        from kerasrecipes.info import model_info
        from kerasrecipes.precision import auto_precision
        from kerasrecipes.registry import create_model
        from kerasrecipes.backbones import backbone_of, load_backbone
        model = create_model("resnet18", input_shape=(32, 32, 3), num_classes=3)
        assert backbone_of(model).output_shape[-1] == 512
        print(model_info(model).params, auto_precision())
        try:
            kr.fine_tune
        except ModuleNotFoundError as error:
            print(error)
        """
    )
    environment = dict(os.environ, KERAS_BACKEND="torch")
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sizes, error = done.stdout.strip().splitlines()[-2:]
    params, precision = sizes.split()
    expected = kr.create_model("resnet18", num_classes=3, input_shape=(32, 32, 3))
    assert int(params) == kr.model_info(expected).params
    assert precision in ("float32", "mixed_bfloat16")
    assert "kerasrecipes.fine_tune needs TensorFlow" in error
