"""Mobile inverted bottlenecks: MobileNetV2's inverted residual, EfficientNet's MBConv, and SE.

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
(arXiv:1801.04381); Tan & Le 2019, "EfficientNet: Rethinking Model Scaling
for Convolutional Neural Networks" (arXiv:1905.11946); Hu et al. 2018,
"Squeeze-and-Excitation Networks" (arXiv:1709.01507).

Each block is one Keras layer. A block called `stage2_block1` holds
variables such as `stage2_block1/expand_conv/kernel`, created in the order of
keras.applications' variables (expand, depthwise, squeeze-excite, project),
so ImageNet weights port one to one.
"""

import keras
from keras import ops

from kerasrecipes.layers.building import build_sequentially, serialize_initializer
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.regularization import DropPath
from kerasrecipes.layers.residual import PADDINGS, strided_shape

# EfficientNet's convolution initializer (He initialization over fan-out,
# truncated), also torchvision's for MobileNetV2.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}


def make_divisible(value, divisor=8):
    """Rounds a channel count to the nearest multiple of `divisor`, never down by more than 10%.

    The rule of the MobileNet and EfficientNet reference code (and of
    keras.applications), used to turn width multipliers into channel counts.

    Example:

    >>> make_divisible(32 * 0.35), make_divisible(96 * 1.4), make_divisible(24 * 0.5)
    (16, 136, 16)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class SqueezeExcite(keras.layers.Layer):
    """Channel attention: pool, reduce, expand, sigmoid gate (Hu et al. 2018).

    The two 1x1 convolutions (with biases) act on the globally averaged
    features; their sigmoid output rescales each channel of the input.

    Why our own: `keras_cv.layers.SqueezeAndExcite2D` (0.9) leaves its
    convolutions unnamed (their variable paths depend on how many layers were
    made before), has no `build()` (so a `.keras` file cannot rebuild it before
    loading its variables), and fixes the kernel initializer.

    Args:
        squeeze_filters: int, channels of the reduced representation.
        activation: activation after the reduce convolution. Defaults to "relu".
        kernel_initializer: initializer of both convolutions. Defaults to
            EfficientNet's (`CONV_INITIALIZER`).

    Example:

    >>> se = SqueezeExcite(squeeze_filters=4)
    >>> tuple(se(keras.ops.ones((2, 8, 8, 16))).shape)
    (2, 8, 8, 16)
    """

    def __init__(self, squeeze_filters, activation="relu", kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if squeeze_filters < 1:
            raise ValueError(
                f"SqueezeExcite '{self.name}': squeeze_filters must be >= 1. "
                f"Received: squeeze_filters={squeeze_filters}"
            )
        self.squeeze_filters = int(squeeze_filters)
        self.activation = activation
        self.kernel_initializer = kernel_initializer or CONV_INITIALIZER

    def build(self, input_shape):
        channels = input_shape[-1]
        self.reduce_conv = keras.layers.Conv2D(
            self.squeeze_filters,
            1,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="reduce_conv",
        )
        self.expand_conv = keras.layers.Conv2D(
            channels,
            1,
            activation="sigmoid",
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="expand_conv",
        )
        pooled_shape = (input_shape[0], 1, 1, channels)
        self.reduce_conv.build(pooled_shape)
        self.expand_conv.build(self.reduce_conv.compute_output_shape(pooled_shape))
        self.built = True

    def call(self, inputs):
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
        return inputs * self.expand_conv(self.reduce_conv(pooled))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "squeeze_filters": self.squeeze_filters,
                "activation": self.activation,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class InvertedResidual(keras.layers.Layer):
    """The inverted residual with linear bottleneck (MobileNetV2, Sandler et al. 2018, Table 1).

    1x1 expansion to `expand_ratio` times the input channels (BN, activation),
    a kxk depthwise convolution (BN, activation), optional squeeze-and-excite,
    then a linear 1x1 projection to `filters` (BN, no activation: the "linear
    bottleneck"). When the block keeps the shape (stride 1, same channels) the
    input is added back, through stochastic depth if `drop_path_rate > 0`.

    With `expand_ratio=1` there is no expansion and the block is the
    depthwise-separable convolution of MobileNet (Howard et al. 2017) with a
    linear projection. Core Keras' `SeparableConv2D` is the same factorization
    without the normalization and activation between its two convolutions.
    `MBConv` is this block with EfficientNet's defaults.

    Why not `keras_cv.layers.MBConvBlock` (0.9): it makes new pooling,
    reshape, multiply and add layers inside `call()` on every call, its
    `build()` builds none of its sublayers (so a `.keras` file cannot
    restore it before loading its variables), it needs the input channels
    up front, and it has no MobileNetV2 form (ReLU6, no SE).

    Strided depthwise convolutions use "same" padding by default, which pads
    exactly as keras.applications' explicit `correct_pad` (the extra pixel at
    the bottom/right for even sizes), so ported weights agree at any input
    size; `padding="symmetric"` pads k // 2 on every side instead
    (`depthwise_pad`, then a "valid" convolution), as PyTorch does (timm's
    and torchvision's weights).

    Args:
        filters: int, output channels.
        expand_ratio: int, expansion of the input channels. Defaults to 6.
        kernel_size: int, size of the depthwise kernel. Defaults to 3.
        strides: int, stride of the depthwise convolution. Defaults to 1.
        se_ratio: float in [0, 1], squeeze-and-excite channels as a fraction
            of the block's input channels; 0 for none. Defaults to 0.0.
        activation: activation after the expansion and the depthwise
            convolution. Defaults to "relu6" (MobileNetV2).
        drop_path_rate: float, stochastic-depth rate of the residual branch. Defaults to 0.0.
        bn_epsilon: float, BatchNorm epsilon (keras.applications uses 1e-3
            in both families, PyTorch 1e-5). Defaults to 1e-3.
        padding: "same" (TensorFlow's) or "symmetric" (PyTorch's), how the
            strided depthwise convolution pads. Defaults to "same".
        kernel_initializer: initializer of the convolutions. Defaults to
            EfficientNet's (`CONV_INITIALIZER`).
        seed: optional int seed for stochastic depth. Defaults to None.

    Example:

    >>> block = InvertedResidual(24, expand_ratio=6, strides=2, name="stage2_block1")
    >>> tuple(block(keras.ops.ones((2, 16, 16, 16))).shape)
    (2, 8, 8, 24)
    """

    def __init__(
        self,
        filters,
        expand_ratio=6,
        kernel_size=3,
        strides=1,
        se_ratio=0.0,
        activation="relu6",
        drop_path_rate=0.0,
        bn_epsilon=1e-3,
        kernel_initializer=None,
        seed=None,
        padding="same",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': padding must be one of {PADDINGS}. "
                f"Received: padding={padding!r}"
            )
        for arg, value, low in (
            ("filters", filters, 1),
            ("expand_ratio", expand_ratio, 1),
            ("kernel_size", kernel_size, 1),
            ("strides", strides, 1),
        ):
            if value < low:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': {arg} must be >= {low}. "
                    f"Received: {arg}={value}"
                )
        if not 0.0 <= se_ratio <= 1.0:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': se_ratio must be in [0, 1]. "
                f"Received: se_ratio={se_ratio}"
            )
        self.filters = int(filters)
        self.expand_ratio = expand_ratio
        self.kernel_size = kernel_size
        self.strides = strides
        self.se_ratio = se_ratio
        self.activation = activation
        self.drop_path_rate = drop_path_rate
        self.bn_epsilon = bn_epsilon
        self.kernel_initializer = kernel_initializer or CONV_INITIALIZER
        self.seed = seed
        self.padding = padding
        self.drop_path = DropPath(
            drop_path_rate, seed=seed, dtype=self.dtype_policy, name="drop_path"
        )

    def _conv(self, filters, name):
        return keras.layers.Conv2D(
            filters,
            1,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _bn(self, name):
        return batch_norm(name, dtype=self.dtype_policy, epsilon=self.bn_epsilon)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.has_residual = self.strides == 1 and in_channels == self.filters
        expanded = in_channels * self.expand_ratio
        # Created here, in the order of keras.applications' variables; the
        # expansion's width depends on the input channels.
        self.expand_conv = self.expand_bn = self.se = self.depthwise_pad = None
        if self.expand_ratio != 1:
            self.expand_conv = self._conv(expanded, "expand_conv")
            self.expand_bn = self._bn("expand_bn")
        padding = "same"
        if self.padding == "symmetric" and self.strides > 1:
            self.depthwise_pad = keras.layers.ZeroPadding2D(
                self.kernel_size // 2, dtype=self.dtype_policy, name="depthwise_pad"
            )
            padding = "valid"
        self.depthwise_conv = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            strides=self.strides,
            padding=padding,
            use_bias=False,
            depthwise_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="depthwise_conv",
        )
        self.depthwise_bn = self._bn("depthwise_bn")
        if self.se_ratio > 0:
            self.se = SqueezeExcite(
                max(1, int(in_channels * self.se_ratio)),
                activation=self.activation,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name="se",
            )
        self.project_conv = self._conv(self.filters, "project_conv")
        self.project_bn = self._bn("project_bn")

        build_sequentially(self._branch_layers(), input_shape)
        self.built = True

    def _branch_layers(self):
        layers = [
            self.expand_conv,
            self.expand_bn,
            self.depthwise_pad,
            self.depthwise_conv,
            self.depthwise_bn,
            self.se,
            self.project_conv,
            self.project_bn,
        ]
        return [layer for layer in layers if layer is not None]

    def call(self, inputs, training=False):
        activation = keras.activations.get(self.activation)
        x = inputs
        if self.expand_conv is not None:
            x = activation(self.expand_bn(self.expand_conv(x), training=training))
        if self.depthwise_pad is not None:
            x = self.depthwise_pad(x)
        x = activation(self.depthwise_bn(self.depthwise_conv(x), training=training))
        if self.se is not None:
            x = self.se(x)
        x = self.project_bn(self.project_conv(x), training=training)
        if self.has_residual:
            x = inputs + self.drop_path(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "expand_ratio": self.expand_ratio,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "se_ratio": self.se_ratio,
                "activation": self.activation,
                "drop_path_rate": self.drop_path_rate,
                "bn_epsilon": self.bn_epsilon,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "seed": self.seed,
                "padding": self.padding,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class MBConv(InvertedResidual):
    """EfficientNet's mobile inverted bottleneck: `InvertedResidual` with SE and swish.

    Tan & Le 2019, Sec. 4 (from MnasNet, Tan et al. 2019): the inverted
    residual with squeeze-and-excitation at a quarter of the input channels,
    the swish (SiLU) activation, and stochastic depth on the residual branch
    (the reference code's "drop connect").

    Args:
        filters: int, output channels.
        expand_ratio: int, expansion of the input channels. Defaults to 6.
        kernel_size: int, size of the depthwise kernel (3 or 5). Defaults to 3.
        strides: int, stride of the depthwise convolution. Defaults to 1.
        se_ratio: float, squeeze-and-excite ratio. Defaults to 0.25.
        activation: activation. Defaults to "swish".
        **kwargs: the other arguments of `InvertedResidual`.

    Example:

    >>> block = MBConv(40, kernel_size=5, strides=2, drop_path_rate=0.1)
    >>> tuple(block(keras.ops.ones((2, 16, 16, 24))).shape)
    (2, 8, 8, 40)
    """

    def __init__(
        self,
        filters,
        expand_ratio=6,
        kernel_size=3,
        strides=1,
        se_ratio=0.25,
        activation="swish",
        **kwargs,
    ):
        super().__init__(
            filters,
            expand_ratio=expand_ratio,
            kernel_size=kernel_size,
            strides=strides,
            se_ratio=se_ratio,
            activation=activation,
            **kwargs,
        )
