"""EfficientNet-B0 to B7 by compound scaling (Tan & Le 2019, "EfficientNet: Rethinking
Model Scaling for Convolutional Neural Networks", arXiv:1905.11946).

One table describes the B0 baseline (Table 1 of the paper); every variant
scales it by a width coefficient (channels, rounded to multiples of 8), a
depth coefficient (blocks per stage, rounded up) and an input resolution.
The compound-scaling rule (Sec. 3.3) ties the three to one exponent phi:
depth alpha^phi, width beta^phi, resolution gamma^phi with alpha=1.2,
beta=1.1, gamma=1.15 (`efficientnet_scaling`). The released B1..B7 use
coefficients rounded from that rule (the reference code's
`efficientnet_params`), which `VARIANTS` lists.

Variable-for-variable compatible with `keras.applications.EfficientNetB0..B7`,
so `weights="imagenet"` ports their weights. As there, the model takes
0-255 RGB inputs and normalizes them itself (`stem_rescale`, `stem_normalize`).

timm's weights (`kerasrecipes.timm.efficientnet`) load through three options:
`preprocessing` (the checkpoint's mean and std, in place of the layers above),
and for timm's own PyTorch-trained `efficientnet_b*` (not the `tf_` ports of
the reference weights, which are this network as it is) `padding="symmetric"`
(strided convolutions pad k // 2 on every side, as PyTorch) and
`bn_epsilon=1e-5` (PyTorch's BatchNorm default).
"""

import math
from typing import NamedTuple

import keras
import numpy as np

from kerasrecipes.cards import FeatureTap, PretrainedWeights, register_model, stage_blocks
from kerasrecipes.layers import MBConv, drop_path_schedule, make_divisible
from kerasrecipes.layers.mobile import CONV_INITIALIZER
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.residual import PADDINGS
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

PAPER = "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs"
# Table 1 of the paper (EfficientNet-B0), one row per stage: repeats,
# depthwise kernel size, stride of the first block, expansion ratio, input
# and output channels. Every block has squeeze-and-excitation at 0.25.
B0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
LAST_FILTERS = 1280
# Width coefficient, depth coefficient, input resolution and dropout before the
# classifier of each released variant (the reference code's efficientnet_params).
VARIANTS = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
KERAS_TWINS = {name: f"EfficientNetB{name[-1]}" for name in VARIANTS}
# The grid search of Sec. 3.3 under alpha * beta^2 * gamma^2 ~ 2.
DEPTH_BASE, WIDTH_BASE, RESOLUTION_BASE = 1.2, 1.1, 1.15
# keras.applications' EfficientNet uses Keras' default BatchNorm epsilon.
BN_EPSILON = 1e-3
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
# keras.applications' classifier initializer (the reference code's dense_kernel_initializer).
DENSE_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


class CompoundScaling(NamedTuple):
    """The multipliers of compound scaling for one phi: depth, width, resolution."""

    depth: float
    width: float
    resolution: float


def efficientnet_scaling(phi):
    """The compound-scaling coefficients for exponent `phi` (Tan & Le 2019, Eq. 3).

    depth = 1.2^phi, width = 1.1^phi, resolution = 1.15^phi: each step of phi
    roughly doubles the FLOPs (1.2 * 1.1^2 * 1.15^2 = 1.92). The released
    B1..B7 round these (B2 uses depth 1.2 and width 1.1 where phi=2 gives
    1.44 and 1.21); `efficientnet(width_coefficient=..., depth_coefficient=...)`
    builds either.

    Example:

    >>> [round(value, 4) for value in efficientnet_scaling(phi=2)]
    [1.44, 1.21, 1.3225]
    """
    if phi < 0:
        raise ValueError(f"efficientnet_scaling: phi must be >= 0. Received: phi={phi}")
    return CompoundScaling(
        depth=DEPTH_BASE**phi, width=WIDTH_BASE**phi, resolution=RESOLUTION_BASE**phi
    )


def scaled_filters(filters, width_coefficient):
    """Channels times the width coefficient, rounded to a multiple of 8."""
    return make_divisible(filters * width_coefficient)


def scaled_repeats(repeats, depth_coefficient):
    """Blocks of a stage times the depth coefficient, rounded up."""
    return int(math.ceil(depth_coefficient * repeats))


def efficientnet(
    *,
    width_coefficient=1.0,
    depth_coefficient=1.0,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.2,
    drop_path_rate=0.2,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing=None,
    padding="same",
    bn_epsilon=BN_EPSILON,
    name="efficientnet",
    keras_twin=None,
):
    """Builds an EfficientNet from the B0 table scaled by width and depth coefficients.

    Stem: 3x3/2 convolution to 32 x width channels. Then the seven MBConv
    stages of B0, each with ceil(repeats x depth) blocks and channels x width
    (rounded to multiples of 8), a 1x1 convolution to 1280 x width channels,
    pooling, dropout and the classifier. Inputs are 0-255 RGB; the model
    rescales them and normalizes them with the ImageNet mean and standard
    deviation.

    Args:
        width_coefficient: float, channel multiplier. Defaults to 1.0.
        depth_coefficient: float, multiplier of the blocks per stage. Defaults to 1.0.
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 32x32. Defaults to (224, 224, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.2 (B0's).
        drop_path_rate: float, stochastic depth ("drop connect") of the deepest
            block, rising linearly from 0 over the blocks
            (`drop_path_schedule`); only blocks with a residual connection
            use it. keras.applications fixes 0.2 with the rule
            `0.2 * i / num_blocks`. Defaults to 0.2.
        weights: None, "imagenet" (needs `keras_twin`) or the path of a
            .weights.h5 / .keras file. Defaults to None.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and rescale
            and standardize them inside the model (`stem_rescale`,
            `stem_normalize`, as keras.applications); False leaves those
            layers out ("torch"-preprocessed input). Defaults to True.
        preprocessing: None for keras.applications' `stem_rescale` and
            `stem_normalize` above, or an `ImagePreprocessing` mode (or
            {"mean": [...], "std": [...]}) that `stem_preprocess` applies
            instead, e.g. a timm checkpoint's mean and std. Defaults to None.
        padding: how the strided convolutions (stem, depthwise) pad: "same"
            (TensorFlow's: keras.applications' and the reference weights) or
            "symmetric" (k // 2 on every side, PyTorch's: timm's `efficientnet_b*`).
            Defaults to "same".
        bn_epsilon: float, every BatchNorm's epsilon: TensorFlow's 1e-3, or
            PyTorch's 1e-5 for timm's `efficientnet_b*`. Defaults to 1e-3.
        name: model name. Defaults to "efficientnet".
        keras_twin: name of the keras.applications function with the same
            variables, used for `weights="imagenet"`. Defaults to None.

    Example:

    >>> model = efficientnet(width_coefficient=1.1, depth_coefficient=1.2, num_classes=3)
    >>> model.output_shape
    (None, 3)
    """

    if width_coefficient <= 0 or depth_coefficient <= 0:
        raise ValueError(
            f"{name}: width_coefficient and depth_coefficient must be > 0. Received: "
            f"width_coefficient={width_coefficient}, depth_coefficient={depth_coefficient}"
        )
    if padding not in PADDINGS:
        raise ValueError(f"{name}: padding must be one of {PADDINGS}. Received: {padding!r}")
    keras_network = (preprocessing, padding, bn_epsilon) == (None, "same", BN_EPSILON)
    if weights == "imagenet" and not keras_network:
        raise ValueError(
            f"{name}: the ImageNet weights of keras.applications need preprocessing=None, "
            f"padding='same' and bn_epsilon={BN_EPSILON}. Received: "
            f"preprocessing={preprocessing!r}, padding={padding!r}, bn_epsilon={bn_epsilon}"
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
    )
    normalize = None
    if preprocessing is None:
        inputs = x = keras.Input(shape=input_shape, name="input")
        if include_preprocessing:
            x = keras.layers.Rescaling(1.0 / 255.0, name="stem_rescale")(x)
            normalize = keras.layers.Normalization(axis=-1, name="stem_normalize")
            x = normalize(x)
    else:
        inputs, x = model_inputs(
            input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
        )
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D(1, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        scaled_filters(STEM_FILTERS, width_coefficient),
        3,
        strides=2,
        padding="valid" if padding == "symmetric" else "same",
        use_bias=False,
        kernel_initializer=CONV_INITIALIZER,
        name="stem_conv",
    )(x)
    x = batch_norm("stem_bn", epsilon=bn_epsilon)(x)
    x = keras.layers.Activation("swish", name="stem_act")(x)

    rates = drop_path_schedule(
        drop_path_rate, sum(scaled_repeats(row[0], depth_coefficient) for row in B0_STAGES)
    )
    block_index = 0
    for stage, (repeats, kernel_size, stride, expand_ratio, _, filters) in enumerate(
        B0_STAGES, start=1
    ):
        for block in range(1, scaled_repeats(repeats, depth_coefficient) + 1):
            x = MBConv(
                scaled_filters(filters, width_coefficient),
                expand_ratio=expand_ratio,
                kernel_size=kernel_size,
                strides=stride if block == 1 else 1,
                drop_path_rate=rates[block_index],
                bn_epsilon=bn_epsilon,
                padding=padding,
                name=f"stage{stage}_block{block}",
            )(x)
            block_index += 1

    x = keras.layers.Conv2D(
        scaled_filters(LAST_FILTERS, width_coefficient),
        1,
        use_bias=False,
        kernel_initializer=CONV_INITIALIZER,
        name="post_conv",
    )(x)
    x = batch_norm("post_bn", epsilon=bn_epsilon)(x)
    x = keras.layers.Activation("swish", name="post_act")(x)
    if normalize is not None:
        set_normalization(normalize, IMAGENET_MEAN_RGB, np.square(IMAGENET_STDDEV_RGB))
    model = finish_model(
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
        dense_initializer=DENSE_INITIALIZER,
    )
    if weights == "imagenet" and normalize is not None:
        # keras.applications' ImageNet files store the standard deviation where
        # the variance belongs, and its EfficientNet (weights="imagenet") adds a
        # Rescaling(1 / sqrt(stddev)) after the Normalization to make up for
        # it. We fold that factor into the variance instead, so the model
        # needs no extra layer and its saved weights stand on their own.
        set_normalization(
            normalize,
            normalize.adapt_mean.numpy(),
            normalize.adapt_variance.numpy() * np.asarray(IMAGENET_STDDEV_RGB),
        )
    return model


def set_normalization(layer, mean, variance):
    """Sets the mean and variance of a built `keras.layers.Normalization` layer."""
    layer.adapt_mean.assign(np.asarray(mean, dtype="float32"))
    layer.adapt_variance.assign(np.asarray(variance, dtype="float32"))
    layer.finalize_state()


def _variant(name, kwargs):
    width, depth, resolution, dropout = VARIANTS[name]
    return efficientnet(
        **{
            "width_coefficient": width,
            "depth_coefficient": depth,
            "input_shape": (resolution, resolution, 3),
            "dropout": dropout,
            "name": name,
            "keras_twin": KERAS_TWINS[name],
            **kwargs,
        }
    )


def _register(name):
    width, depth, resolution, dropout = VARIANTS[name]
    repeats = [scaled_repeats(row[0], depth) for row in B0_STAGES]
    channels = [scaled_filters(row[5], width) for row in B0_STAGES]
    # The last stage at each resolution (timm's taps): strides 2, 4, 8, 16, 32.
    tap_stages = (1, 2, 3, 5, 7)
    return register_model(
        name,
        family="efficientnet",
        paper=PAPER,
        default_input_shape=(resolution, resolution, 3),
        min_input_size=32,
        variant={
            "width_coefficient": width,
            "depth_coefficient": depth,
            "resolution": resolution,
            "dropout": dropout,
        },
        pretrained={
            "imagenet": PretrainedWeights(KERAS_TWINS[name], "torch", resolution, "efficientnet")
        },
        blocks=stage_blocks(repeats),
        feature_taps=tuple(
            FeatureTap(f"stage{stage}_block{repeats[stage - 1]}", channels[stage - 1], 2**level)
            for level, stage in enumerate(tap_stages, start=1)
        ),
        heavy=name != "efficientnet_b0",
        depthwise=True,
    )


@_register("efficientnet_b0")
def efficientnet_b0(**kwargs):
    """EfficientNet-B0 at 224: 5.3M parameters, 0.39G multiply-adds (Table 2)."""
    return _variant("efficientnet_b0", kwargs)


@_register("efficientnet_b1")
def efficientnet_b1(**kwargs):
    """EfficientNet-B1 at 240: 7.8M parameters, 0.70G multiply-adds (Table 2)."""
    return _variant("efficientnet_b1", kwargs)


@_register("efficientnet_b2")
def efficientnet_b2(**kwargs):
    """EfficientNet-B2 at 260: 9.2M parameters, 1.0G multiply-adds (Table 2)."""
    return _variant("efficientnet_b2", kwargs)


@_register("efficientnet_b3")
def efficientnet_b3(**kwargs):
    """EfficientNet-B3 at 300: 12M parameters, 1.8G multiply-adds (Table 2)."""
    return _variant("efficientnet_b3", kwargs)


@_register("efficientnet_b4")
def efficientnet_b4(**kwargs):
    """EfficientNet-B4 at 380: 19M parameters, 4.2G multiply-adds (Table 2)."""
    return _variant("efficientnet_b4", kwargs)


@_register("efficientnet_b5")
def efficientnet_b5(**kwargs):
    """EfficientNet-B5 at 456: 30M parameters, 9.9G multiply-adds (Table 2)."""
    return _variant("efficientnet_b5", kwargs)


@_register("efficientnet_b6")
def efficientnet_b6(**kwargs):
    """EfficientNet-B6 at 528: 43M parameters, 19G multiply-adds (Table 2)."""
    return _variant("efficientnet_b6", kwargs)


@_register("efficientnet_b7")
def efficientnet_b7(**kwargs):
    """EfficientNet-B7 at 600: 66M parameters, 37G multiply-adds (Table 2)."""
    return _variant("efficientnet_b7", kwargs)
