"""VGG-16 and VGG-19 (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", arXiv:1409.1556).

Five stages of 3x3 convolutions with ReLU, each closed by a 2x2 max pooling,
then three fully connected layers (4096, 4096, classes) on the flattened
7x7x512 map: configurations D (16 layers) and E (19 layers) of Table 1.
`batch_norm=True` adds a BatchNormalization after every convolution (the
"vgg16_bn" of torchvision and timm; not in the paper, which predates it).

Variable-for-variable compatible with `keras.applications.VGG16` / `VGG19`,
so `weights="imagenet"` ports their weights. As there, the model takes
inputs preprocessed by `keras.applications.vgg16.preprocess_input` (BGR,
ImageNet mean subtracted, 0-255 scale).
"""

import keras

from kerasrecipes.cards import FeatureTap, PretrainedWeights, register_model, stage_blocks
from kerasrecipes.models.common import check_common_args, conv_relu, finish_model, model_inputs

PAPER = (
    "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale Image Recognition"
)
# Table 1 of the paper: 3x3 convolutions per stage; the widths double per stage up to 512.
VARIANTS = {
    "vgg16": (2, 2, 3, 3, 3),  # configuration D
    "vgg19": (2, 2, 4, 4, 4),  # configuration E
}
WIDTHS = (64, 128, 256, 512, 512)
KERAS_TWINS = {"vgg16": "VGG16", "vgg19": "VGG19"}
HIDDEN_UNITS = (4096, 4096)


def vgg(
    convs_per_stage,
    *,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.5,
    drop_path_rate=0.0,
    batch_norm_after_conv=False,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="caffe",
    name="vgg",
    keras_twin=None,
):
    """Builds a VGG network from the number of 3x3 convolutions in each of its five stages.

    Layer names: `stage{i}_block{j}_conv` for the j-th convolution of stage i
    (with `_bn` and `_relu` after it when batch-normalized), `stage{i}_pool`,
    then the top: `head_flatten`, `head_fc1`, `head_dropout1`, `head_fc2`,
    `head_dropout2`, `head_dense`.

    Args:
        convs_per_stage: five ints, e.g. (2, 2, 3, 3, 3) for VGG-16.
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 32x32. The top
            flattens the final map, so its first dense layer depends on the
            input size (7x7x512 inputs at 224, as the ImageNet weights need).
            Defaults to (224, 224, 3).
        include_top: bool, add the three fully connected layers. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout after each of the two hidden fully connected
            layers, 0.5 in the paper (Sec. 3.1). Defaults to 0.5.
        batch_norm_after_conv: bool, BatchNormalization between each
            convolution and its ReLU (such a model cannot take the ImageNet
            weights). Defaults to False.
        weights: None, "imagenet" (needs `keras_twin`) or the path of a
            .weights.h5 / .keras file. With "imagenet" and a new classifier,
            the hidden fully connected layers are still pretrained. Defaults to None.
        drop_path_rate: must be 0.0: the network has no residual branches;
            accepted so every builder takes the same arguments. Defaults to 0.0.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "caffe" (the ImageNet weights').
        name: model name. Defaults to "vgg".
        keras_twin: name of the keras.applications function with the same
            variables, used for `weights="imagenet"`. Defaults to None.

    Example:

    >>> model = vgg((1, 1, 1, 1, 1), input_shape=(32, 32, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    if len(convs_per_stage) != 5 or min(convs_per_stage) < 1:
        raise ValueError(
            f"{name}: convs_per_stage must be five ints >= 1. "
            f"Received: convs_per_stage={convs_per_stage}"
        )
    if weights == "imagenet" and batch_norm_after_conv:
        raise ValueError(
            f"{name}: keras.applications has no ImageNet weights for the batch-normalized "
            "VGG. Pass batch_norm_after_conv=False or weights=None."
        )
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=32,
        drop_path=False,
    )
    if weights == "imagenet" and include_top and tuple(input_shape[:2]) != (224, 224):
        raise ValueError(
            f"{name}: the pretrained fully connected layers take the 7x7x512 map of a "
            f"224x224 input; input_shape={input_shape} cannot load them. Pass "
            "input_shape=(224, 224, 3), or include_top=False with pooling='avg' for "
            "another size."
        )
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    for stage, (convs, width) in enumerate(zip(convs_per_stage, WIDTHS), start=1):
        for block in range(1, convs + 1):
            x = conv_relu(
                x,
                width,
                3,
                f"stage{stage}_block{block}",
                batch_norm_after_conv=batch_norm_after_conv,
            )
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)

    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        keras_twin=keras_twin,
        flatten=True,
        hidden_units=HIDDEN_UNITS,
    )


def _variant(name, kwargs):
    batch_normalized = kwargs.pop("batch_norm", False)
    return vgg(
        VARIANTS[name],
        **{
            "name": f"{name}_bn" if batch_normalized else name,
            "keras_twin": KERAS_TWINS[name],
            "batch_norm_after_conv": batch_normalized,
            **kwargs,
        },
    )


def _register(name):
    convs = VARIANTS[name]
    return register_model(
        name,
        family="vgg",
        paper=PAPER,
        default_input_shape=(224, 224, 3),
        min_input_size=32,
        variant={"convs_per_stage": convs, "widths": WIDTHS, "hidden_units": HIDDEN_UNITS},
        pretrained={"imagenet": PretrainedWeights(KERAS_TWINS[name], "caffe", 224, name)},
        blocks=stage_blocks(convs),
        # Each stage's last convolution (stride 1 to 16), then the last pooling (32).
        feature_taps=tuple(
            FeatureTap(f"stage{stage}_block{count}", width, 2 ** (stage - 1))
            for stage, (count, width) in enumerate(zip(convs, WIDTHS), start=1)
        )
        + (FeatureTap("stage5_pool", WIDTHS[-1], 32),),
        drop_path=False,
    )


@_register("vgg16")
def vgg16(**kwargs):
    """VGG-16 (configuration D): 138.4M parameters, 15.5G multiply-adds at 224.

    `batch_norm=True` builds the batch-normalized variant: 16,896 more
    parameters, 8,448 of them learned (138,365,992 learned, as torchvision's vgg16_bn).
    """
    return _variant("vgg16", kwargs)


@_register("vgg19")
def vgg19(**kwargs):
    """VGG-19 (configuration E): 143.7M parameters, 19.6G multiply-adds at 224.

    `batch_norm=True` builds the batch-normalized variant.
    """
    return _variant("vgg19", kwargs)
