"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", arXiv:1801.04381).

A 3x3 stem, seven stages of inverted residual blocks (Table 2 of the paper),
a 1x1 convolution to 1280 channels and the classifier. The width multiplier
`alpha` scales every layer's channels (rounded to multiples of 8).

Variable-for-variable compatible with `keras.applications.MobileNetV2` at
every alpha it ships (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), so `weights="imagenet"`
ports its weights. They expect inputs scaled to [-1, 1] ("tf" mode), which
the model does itself by default (`include_preprocessing=True`).

Two options make it torchvision's and timm's MobileNetV2 (`kerasrecipes.timm.mobilenet_v2`):
`padding="symmetric"` (strided convolutions pad k // 2 on every side, as
PyTorch, where TensorFlow's "same" pads one more at the bottom and right)
and `bn_epsilon=1e-5` (PyTorch's BatchNorm default).
"""

import functools

import keras

from kerasrecipes.cards import FeatureTap, PretrainedWeights, register_model, stage_blocks
from kerasrecipes.layers import InvertedResidual, drop_path_schedule, make_divisible
from kerasrecipes.layers.mobile import CONV_INITIALIZER
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.residual import PADDINGS
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

PAPER = "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks"
# Table 2 of the paper, one row per stage: expansion t, output channels c,
# repeats n, stride s of the stage's first block.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32
LAST_FILTERS = 1280
KERAS_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# keras.applications' MobileNetV2 uses this BatchNorm epsilon; it changes the outputs.
BN_EPSILON = 1e-3


def mobilenet_v2(
    *,
    alpha=1.0,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="tf",
    padding="same",
    bn_epsilon=BN_EPSILON,
    name="mobilenet_v2",
):
    """Builds MobileNetV2 at width multiplier `alpha` (Sandler et al. 2018).

    At alpha 1.0 and 224x224: 3.5M parameters with the 1000-class top and
    300M multiply-adds. Any input of at least 32x32 works; the paper's
    resolutions are 96 to 224.

    Args:
        alpha: float > 0, width multiplier: every layer's channels times
            alpha, rounded to a multiple of 8; the last 1x1 convolution only
            grows (alpha > 1). ImageNet weights exist for 0.35, 0.5, 0.75,
            1.0, 1.3 and 1.4. Defaults to 1.0.
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 32x32. Defaults to (224, 224, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        drop_path_rate: float, stochastic depth of the deepest residual
            block, rising linearly over the blocks (`drop_path_schedule`); the
            paper uses none. Defaults to 0.0.
        weights: None, "imagenet" or the path of a .weights.h5 / .keras file.
            Defaults to None.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "tf" ([-1, 1],
            what the ImageNet weights expect).
        padding: how the strided convolutions (stem, depthwise) pad: "same"
            (TensorFlow's, keras.applications') or "symmetric" (k // 2 on every
            side, PyTorch's: timm's weights). Defaults to "same".
        bn_epsilon: float, every BatchNorm's epsilon: keras.applications' 1e-3,
            or PyTorch's 1e-5 for timm's weights. Defaults to 1e-3.
        name: model name. Defaults to "mobilenet_v2".

    Example:

    >>> model = mobilenet_v2(alpha=0.5, input_shape=(96, 96, 3), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    if not alpha > 0:
        raise ValueError(f"{name}: alpha must be > 0. Received: alpha={alpha}")
    if weights == "imagenet" and alpha not in KERAS_ALPHAS:
        raise ValueError(
            f"{name}: ImageNet weights exist for alpha in {KERAS_ALPHAS}. "
            f"Received: alpha={alpha}. Pick one of those, or pass weights=None."
        )
    if padding not in PADDINGS:
        raise ValueError(f"{name}: padding must be one of {PADDINGS}. Received: {padding!r}")
    if weights == "imagenet" and (padding, bn_epsilon) != ("same", BN_EPSILON):
        raise ValueError(
            f"{name}: the ImageNet weights of keras.applications need padding='same' and "
            f"bn_epsilon={BN_EPSILON}. Received: padding={padding!r}, bn_epsilon={bn_epsilon}"
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
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D(1, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        make_divisible(STEM_FILTERS * alpha),
        3,
        strides=2,
        padding="valid" if padding == "symmetric" else "same",
        use_bias=False,
        kernel_initializer=CONV_INITIALIZER,
        name="stem_conv",
    )(x)
    x = batch_norm("stem_bn", epsilon=bn_epsilon)(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)

    rates = drop_path_schedule(drop_path_rate, sum(repeats for _, _, repeats, _ in STAGES))
    block_index = 0
    for stage, (expand_ratio, filters, repeats, stride) in enumerate(STAGES, start=1):
        # keras.applications truncates before rounding: int(filters * alpha).
        out_channels = make_divisible(int(filters * alpha))
        for block in range(1, repeats + 1):
            x = InvertedResidual(
                out_channels,
                expand_ratio=expand_ratio,
                strides=stride if block == 1 else 1,
                activation="relu6",
                drop_path_rate=rates[block_index],
                bn_epsilon=bn_epsilon,
                padding=padding,
                name=f"stage{stage}_block{block}",
            )(x)
            block_index += 1

    last_filters = make_divisible(LAST_FILTERS * alpha) if alpha > 1.0 else LAST_FILTERS
    x = keras.layers.Conv2D(
        last_filters, 1, use_bias=False, kernel_initializer=CONV_INITIALIZER, name="post_conv"
    )(x)
    x = batch_norm("post_bn", epsilon=bn_epsilon)(x)
    x = keras.layers.ReLU(6.0, name="post_relu")(x)
    # The ImageNet weights do not depend on the input size; build the twin at 224.
    twin = functools.partial(keras.applications.MobileNetV2, alpha=alpha, input_shape=(224, 224, 3))
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
        keras_twin=twin,
    )


@register_model(
    "mobilenet_v2",
    family="mobilenet_v2",
    paper=PAPER,
    default_input_shape=(224, 224, 3),
    min_input_size=32,
    variant={"stages": STAGES, "alpha": 1.0},
    pretrained={"imagenet": PretrainedWeights("MobileNetV2", "tf", 224, "mobilenet_v2")},
    blocks=stage_blocks(repeats for _, _, repeats, _ in STAGES),
    # The last stage at each resolution (timm's taps): strides 2, 4, 8, 16, 32.
    feature_taps=tuple(
        FeatureTap(f"stage{stage}_block{STAGES[stage - 1][2]}", STAGES[stage - 1][1], 2**level)
        for level, stage in enumerate((1, 2, 3, 5, 7), start=1)
    ),
    depthwise=True,
)
def mobilenet_v2_model(**kwargs):
    """MobileNetV2, any `alpha`: 3.5M parameters and 300M multiply-adds at 1.0 and 224."""
    return mobilenet_v2(**kwargs)
