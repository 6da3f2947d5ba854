"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for
Computer Vision", arXiv:1512.00567).

A stem of five convolutions and two max poolings takes 299x299 inputs to a
35x35x192 map; three stages of Inception modules follow (Table 1 of the
paper): three 35x35 modules (Fig. 5), a grid reduction and four 17x17
modules with factorized 7x7 convolutions (Fig. 6), a grid reduction and two
8x8 modules with the expanded filter bank (Fig. 7); then global average
pooling and the classifier. Every convolution is followed by BatchNorm and ReLU.

Variable-for-variable compatible with `keras.applications.InceptionV3`, so
`weights="imagenet"` ports its weights. As there, the model takes inputs
scaled to [-1, 1] (`keras.applications.inception_v3.preprocess_input`). The
paper's auxiliary classifier on the 17x17 grid is not built, as in Keras:
it only helps training from scratch and has no pretrained weights there.

`bn_scale=True, count_include_pad=True` build torchvision's and timm's
Inception-v3 instead (a learned BatchNorm scale; branch average pools that
count their zero padding), which `weights="timm:inception_v3.TAG"` needs.
"""

import keras

from kerasrecipes.cards import FeatureTap, PretrainedWeights, register_model, stage_blocks
from kerasrecipes.layers.inception import (
    INCEPTION_BN_EPSILON,
    InceptionModule,
    inception_a,
    inception_b,
    inception_c,
    inception_d,
    inception_e,
)
from kerasrecipes.layers.normalization import BN_MOMENTUM, BatchNormalization
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

PAPER = "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision"
# The stem: (filters, kernel size, stride, padding) per convolution; "pool" is a 3x3/2 max pool.
STEM = (
    (32, 3, 2, "valid"),
    (32, 3, 1, "valid"),
    (64, 3, 1, "same"),
    "pool",
    (80, 1, 1, "valid"),
    (192, 3, 1, "valid"),
    "pool",
)
# Table 1: the modules of each stage; the first of stages 2 and 3 reduces the grid.
STAGES = (
    (inception_a(32), inception_a(64), inception_a(64)),
    (inception_b(), inception_c(128), inception_c(160), inception_c(160), inception_c(192)),
    (inception_d(), inception_e(), inception_e()),
)
# Five valid 3x3 windows of stride 2 (and two of stride 1) need 75x75 inputs, as Keras says.
MIN_INPUT_SIZE = 75


def _stem(x, bn_scale=False):
    conv_index, pool_index = 0, 0
    for step in STEM:
        if step == "pool":
            pool_index += 1
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"stem_pool{pool_index}")(x)
            continue
        conv_index += 1
        filters, size, stride, padding = step
        x = keras.layers.Conv2D(
            filters,
            size,
            strides=stride,
            padding=padding,
            use_bias=False,
            name=f"stem_conv{conv_index}",
        )(x)
        x = BatchNormalization(
            epsilon=INCEPTION_BN_EPSILON,
            momentum=BN_MOMENTUM,
            scale=bn_scale,
            name=f"stem_bn{conv_index}",
        )(x)
        x = keras.layers.ReLU(name=f"stem_relu{conv_index}")(x)
    return x


@register_model(
    "inception_v3",
    family="inception",
    paper=PAPER,
    default_input_shape=(299, 299, 3),
    min_input_size=MIN_INPUT_SIZE,
    variant={"stem": STEM, "modules_per_stage": tuple(len(modules) for modules in STAGES)},
    pretrained={"imagenet": PretrainedWeights("InceptionV3", "tf", 299, "inception_v3")},
    blocks=stage_blocks(len(modules) for modules in STAGES),
    # timm's taps: the stem at strides 2 and 4, then each stage's last module.
    feature_taps=(
        FeatureTap("stem_relu3", 64, 2),
        FeatureTap("stem_relu5", 192, 4),
        FeatureTap("stage1_block3", 288, 8),
        FeatureTap("stage2_block5", 768, 16),
        FeatureTap("stage3_block3", 2048, 32),
    ),
    drop_path=False,
)
def inception_v3(
    *,
    num_classes=1000,
    input_shape=(299, 299, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="tf",
    bn_scale=False,
    count_include_pad=False,
    name="inception_v3",
):
    """Inception-v3: 23.9M parameters, 5.7G multiply-adds at 299.

    Layer names: `stem_conv{k}`, `stem_bn{k}`, `stem_relu{k}` (k = 1..5),
    `stem_pool1`, `stem_pool2`; the modules `stage{i}_block{j}` (stage 1: three
    35x35 modules; stage 2: the reduction then four 17x17 modules; stage 3:
    the reduction then two 8x8 modules); `head_pool`, `head_dense`.

    Args:
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 75x75. Defaults to (299, 299, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier; keras.applications
            has none, torchvision 0.5. Defaults to 0.0.
        weights: None, "imagenet" (ported from keras.applications.InceptionV3)
            or the path of a .weights.h5 / .keras file. Defaults to None.
        drop_path_rate: must be 0.0: the network has no residual branches;
            accepted so every builder takes the same arguments. Defaults to 0.0.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "tf" ([-1, 1], the
            ImageNet weights').
        bn_scale: bool, give every BatchNorm a learned scale (gamma), as
            torchvision's and timm's Inception-v3; keras.applications' has
            none, so its weights need False. Defaults to False.
        count_include_pad: bool, the modules' 3x3 average pools count their
            zero padding (PyTorch's `count_include_pad=True`, torchvision's
            and timm's); False averages only the pixels inside the image at
            the border, as Keras' "same" pooling. Defaults to False.
        name: model name. Defaults to "inception_v3".

    Example:

    >>> inception_v3(num_classes=10, input_shape=(75, 75, 3)).output_shape
    (None, 10)
    """
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=MIN_INPUT_SIZE,
        drop_path=False,
    )
    if weights == "imagenet" and (bn_scale or count_include_pad):
        raise ValueError(
            f"{name}: keras.applications' ImageNet weights are for its Inception-v3, "
            "without BatchNorm scales and with Keras' average pools. Pass bn_scale=False "
            "and count_include_pad=False, or weights='timm:inception_v3.tv_in1k'."
        )
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    x = _stem(x, bn_scale=bn_scale)
    for stage, modules in enumerate(STAGES, start=1):
        for block, branches in enumerate(modules, start=1):
            x = InceptionModule(
                branches,
                bn_scale=bn_scale,
                count_include_pad=count_include_pad,
                name=f"stage{stage}_block{block}",
            )(x)
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
        keras_twin="InceptionV3",
    )
