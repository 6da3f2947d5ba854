"""Residual blocks of He et al. 2015 ("Deep Residual Learning for Image Recognition")
and their pre-activation variant (He et al. 2016, "Identity Mappings in Deep
Residual Networks").

Each block is one Keras layer whose sublayers are named `conv{k}`, `bn{k}`,
`preact_bn`, `shortcut_conv` and `shortcut_bn`, so a block called
`stage2_block1` holds variables such as `stage2_block1/conv1/kernel`.
"""

import keras
from keras import ops

from kerasrecipes.layers.building import build_sequentially, serialize_initializer
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.regularization import DropPath

# "none" drops the shortcut: the plain network the paper compares against (Sec. 4.1, Fig. 6).
SHORTCUTS = ("identity", "projection", "zero_pad", "none")
# The CIFAR paper's names for the shortcut options (Sec. 4.2): A pads zeros, B projects.
SHORTCUT_ALIASES = {"A": "zero_pad", "B": "projection"}
# How a strided convolution pads: TensorFlow's "same" (more on the bottom-right when the total is
# odd; keras.applications) or PyTorch's symmetric k // 2 (torchvision and timm weights).
PADDINGS = ("same", "symmetric")


def strided_shape(input_shape, strides, channels):
    """Output shape (batch, height, width, channels) of a "same"-padded strided layer."""

    def strided_size(size):
        return None if size is None else -(-size // strides)

    batch, height, width, _ = input_shape
    return (batch, strided_size(height), strided_size(width), channels)


def resolve_shortcut(shortcut):
    """Returns the canonical shortcut name for `shortcut` (accepts "A"/"B")."""
    shortcut = SHORTCUT_ALIASES.get(shortcut, shortcut)
    if shortcut not in SHORTCUTS:
        raise ValueError(
            f"shortcut must be one of {SHORTCUTS} (or 'A' for zero_pad, 'B' for "
            f"projection). Received: shortcut={shortcut!r}"
        )
    return shortcut


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut: subsample, then pad the new channels with zeros.

    Option A of He et al. 2015 (Sec. 4.2, CIFAR-10): "the shortcut still
    performs identity mapping, with extra zero entries padded for increasing
    dimensions", taking every `strides`-th pixel when the block downsamples.

    Args:
        filters: int, the number of output channels (>= the input channels).
        strides: int, the spatial subsampling factor. Defaults to 1.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        if input_shape[-1] > self.filters:
            raise ValueError(
                f"ZeroPadShortcut '{self.name}' can only add channels: input has "
                f"{input_shape[-1]}, filters={self.filters}. Use shortcut='projection'."
            )
        self.built = True

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        extra_channels = self.filters - x.shape[-1]
        if extra_channels:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra_channels]])
        return x

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


class _ResidualBlock(keras.layers.Layer):
    """What the basic and bottleneck blocks share: arguments, shortcut, sum."""

    expansion = 1

    def __init__(
        self,
        filters,
        strides=1,
        shortcut="identity",
        preact=False,
        drop_path_rate=0.0,
        use_bias=False,
        kernel_initializer="he_normal",
        zero_init_residual=True,
        seed=None,
        padding="same",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(
                f"Block '{self.name}': padding must be one of {PADDINGS}. Received: {padding!r}"
            )
        if filters < 1:
            raise ValueError(f"filters must be >= 1. Received: filters={filters}")
        if strides < 1:
            raise ValueError(f"strides must be >= 1. Received: strides={strides}")
        self.filters = filters
        self.strides = strides
        self.shortcut = resolve_shortcut(shortcut)
        self.preact = preact
        self.drop_path_rate = drop_path_rate
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.zero_init_residual = zero_init_residual
        self.seed = seed
        self.padding = padding
        self.strided_pad = None
        self.out_channels = filters * self.expansion
        if self.shortcut == "none" and drop_path_rate:
            raise ValueError(
                f"Block '{self.name}': drop_path_rate={drop_path_rate} needs a shortcut; "
                "with shortcut='none' dropping the branch drops the whole signal."
            )

    def _conv(self, filters, kernel_size, strides, name):
        padding = "same"
        if self.padding == "symmetric" and strides > 1 and kernel_size > 1:
            self.strided_pad = keras.layers.ZeroPadding2D(
                kernel_size // 2, dtype=self.dtype_policy, name=f"{name}_pad"
            )
            padding = "valid"
        conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )
        if padding == "valid":
            self.strided_conv = conv
        return conv

    def _bn(self, name, last=False):
        # The branch's last BatchNorm starts at zero (gamma = 0) so each block
        # starts as the identity (Goyal et al. 2017, Sec. 5.1; timm's zero_init_last).
        # Without a shortcut that would zero the block's output, so plain blocks never do it.
        zero_init = last and self.zero_init_residual and self.shortcut != "none"
        return batch_norm(name, zero_init=zero_init, dtype=self.dtype_policy)

    def _make_shortcut_layers(self):
        """Creates shortcut_conv or the zero-pad (shortcut_bn later, in Keras' variable order)."""
        self.shortcut_conv = self.shortcut_bn = self.shortcut_pad = None
        if self.shortcut == "projection":
            self.shortcut_conv = self._conv(self.out_channels, 1, self.strides, "shortcut_conv")
        elif self.shortcut == "zero_pad":
            self.shortcut_pad = ZeroPadShortcut(
                self.out_channels, self.strides, dtype=self.dtype_policy, name="shortcut_pad"
            )

    def _make_shortcut_bn(self):
        if self.shortcut == "projection" and not self.preact:
            self.shortcut_bn = self._bn("shortcut_bn")

    def _branch_layers(self):
        """The residual branch in order: conv, bn, conv, bn, ... (pre-activation ends on a conv),
        with the strided convolution's padding before it when it pads symmetrically."""
        layers = self._branch_convs_and_norms()
        if self.strided_pad is None:
            return layers
        index = layers.index(self.strided_conv)
        return layers[:index] + [self.strided_pad] + layers[index:]

    def _branch_convs_and_norms(self):
        raise NotImplementedError

    def build(self, input_shape):
        # Checked here, not in call(): in a functional model Keras takes the
        # output shape from compute_output_shape and does not trace call().
        if self.shortcut == "identity" and (
            input_shape[-1] != self.out_channels or self.strides != 1
        ):
            raise ValueError(
                f"Block '{self.name}' has an identity shortcut but changes the shape "
                f"(input channels {input_shape[-1]} -> {self.out_channels}, strides "
                f"{self.strides}). Use shortcut='projection' or 'zero_pad'."
            )
        if self.preact:
            self.preact_bn.build(input_shape)
        build_sequentially(self._branch_layers(), input_shape)
        if self.shortcut == "zero_pad":
            self.shortcut_pad.build(input_shape)
        elif self.shortcut == "projection":
            self.shortcut_conv.build(input_shape)
            if self.shortcut_bn is not None:
                self.shortcut_bn.build(self.shortcut_conv.compute_output_shape(input_shape))
        self.built = True

    def _residual_branch(self, x, training):
        """Applies the branch: ReLU after every BatchNorm except a final one."""
        layers = self._branch_layers()
        for index, layer in enumerate(layers):
            if isinstance(layer, keras.layers.BatchNormalization):
                x = layer(x, training=training)
                if index < len(layers) - 1:
                    x = ops.relu(x)
            else:
                x = layer(x)
        return x

    def call(self, inputs, training=False):
        x = inputs
        if self.preact:
            x = ops.relu(self.preact_bn(inputs, training=training))
        if self.shortcut == "projection":
            # Pre-activation blocks project the activated input (He et al. 2016, Fig. 5).
            shortcut = self.shortcut_conv(x if self.preact else inputs)
            if self.shortcut_bn is not None:
                shortcut = self.shortcut_bn(shortcut, training=training)
        elif self.shortcut == "zero_pad":
            shortcut = self.shortcut_pad(inputs)
        elif self.shortcut == "none":
            shortcut = 0.0
        else:
            shortcut = inputs
        residual = self.drop_path(self._residual_branch(x, training), training=training)
        outputs = shortcut + residual
        return outputs if self.preact else ops.relu(outputs)

    def compute_output_shape(self, input_shape):
        return strided_shape(input_shape, self.strides, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "shortcut": self.shortcut,
                "preact": self.preact,
                "drop_path_rate": self.drop_path_rate,
                "use_bias": self.use_bias,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "zero_init_residual": self.zero_init_residual,
                "seed": self.seed,
                "padding": self.padding,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a shortcut: the block of ResNet-18/34 and the CIFAR ResNets.

    He et al. 2015, Fig. 2 (left): conv3x3-BN-ReLU-conv3x3-BN, plus the
    shortcut, then ReLU. With `preact=True`, the pre-activation form of He et
    al. 2016: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus the shortcut, no ReLU after
    the sum. The stride sits in the first 3x3 convolution.

    Args:
        filters: int, output channels of both convolutions.
        strides: int, stride of the first convolution and of the shortcut. Defaults to 1.
        shortcut: "identity", "projection" (1x1 conv + BN; the paper's option B,
            alias "B") or "zero_pad" (subsample + zero channels; option A, alias
            "A"). Use "identity" only where the block keeps the shape. Defaults to
            "identity".
        preact: bool, pre-activation ordering (He et al. 2016). Defaults to False.
        drop_path_rate: float, stochastic-depth rate of the residual branch. Defaults to 0.0.
        use_bias: bool, biases in the convolutions. Defaults to False.
        kernel_initializer: initializer of the convolutions. Defaults to "he_normal".
        zero_init_residual: bool, start the branch's last BatchNorm at gamma = 0
            so the block starts as the identity (Goyal et al. 2017); no effect
            with `preact=True`, whose branch ends on a convolution. Defaults to True.
        seed: optional int seed for stochastic depth. Defaults to None.
        padding: "same" (TensorFlow's, as keras.applications) or "symmetric"
            (PyTorch's k // 2 on every side, as torchvision and timm) for the
            strided convolution. Defaults to "same".

    Example:

    >>> block = BasicBlock(32, strides=2, shortcut="zero_pad", name="stage2_block1")
    >>> tuple(block(keras.ops.ones((2, 8, 8, 16))).shape)
    (2, 4, 4, 32)
    """

    expansion = 1

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)
        if self.preact:
            self.preact_bn = self._bn("preact_bn")
        self.conv1 = self._conv(filters, 3, self.strides, "conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, 1, "conv2")
        if not self.preact:
            self.bn2 = self._bn("bn2", last=True)
        self._make_shortcut_layers()
        self._make_shortcut_bn()
        self.drop_path = DropPath(
            self.drop_path_rate, seed=self.seed, dtype=self.dtype_policy, name="drop_path"
        )

    def _branch_convs_and_norms(self):
        layers = [self.conv1, self.bn1, self.conv2]
        return layers if self.preact else layers + [self.bn2]


@keras.saving.register_keras_serializable(package="kerasrecipes")
class BottleneckBlock(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut: the block of ResNet-50/101/152.

    He et al. 2015, Fig. 5 (right). The stride sits in the first 1x1
    convolution, as in the paper and keras.applications' ResNet50 ("v1");
    `stride_in_3x3=True` moves it to the 3x3, as torchvision's and timm's
    "v1.5" (Goyal et al. 2017 trained it so). Its sublayers are created in
    the order of keras.applications' variables (conv1, bn1, conv2, bn2,
    shortcut_conv, conv3, shortcut_bn, bn3) so ImageNet weights port one to
    one. With `preact=True`: BN-ReLU before each convolution (He et al. 2016).

    Args:
        filters: int, channels of the 1x1 reduce and 3x3 convolutions; the
            block outputs `4 * filters`.
        strides: int, stride of the first 1x1 convolution and the shortcut. Defaults to 1.
        shortcut: "identity", "projection" (option B, alias "B") or "zero_pad"
            (option A, alias "A"). Defaults to "identity".
        preact: bool, pre-activation ordering (He et al. 2016). Defaults to False.
        drop_path_rate: float, stochastic-depth rate of the residual branch. Defaults to 0.0.
        use_bias: bool, biases in the convolutions (keras.applications has them). Defaults to False.
        kernel_initializer: initializer of the convolutions. Defaults to "he_normal".
        zero_init_residual: bool, start the branch's last BatchNorm at gamma = 0
            so the block starts as the identity (Goyal et al. 2017); no effect
            with `preact=True`, whose branch ends on a convolution. Defaults to True.
        seed: optional int seed for stochastic depth. Defaults to None.
        padding: "same" or "symmetric" (PyTorch's) for a strided 3x3
            convolution, as `BasicBlock`. Defaults to "same".
        stride_in_3x3: bool, put the stride in the 3x3 convolution ("v1.5").
            Defaults to False.

    Example:

    >>> block = BottleneckBlock(64, shortcut="projection", name="stage1_block1")
    >>> tuple(block(keras.ops.ones((2, 8, 8, 64))).shape)
    (2, 8, 8, 256)
    """

    expansion = 4

    def __init__(self, filters, stride_in_3x3=False, **kwargs):
        super().__init__(filters, **kwargs)
        self.stride_in_3x3 = stride_in_3x3
        if self.preact:
            self.preact_bn = self._bn("preact_bn")
        self.conv1 = self._conv(filters, 1, 1 if stride_in_3x3 else self.strides, "conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(filters, 3, self.strides if stride_in_3x3 else 1, "conv2")
        self.bn2 = self._bn("bn2")
        self._make_shortcut_layers()
        self.conv3 = self._conv(self.out_channels, 1, 1, "conv3")
        self._make_shortcut_bn()
        if not self.preact:
            self.bn3 = self._bn("bn3", last=True)
        self.drop_path = DropPath(
            self.drop_path_rate, seed=self.seed, dtype=self.dtype_policy, name="drop_path"
        )

    def _branch_convs_and_norms(self):
        layers = [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3]
        return layers if self.preact else layers + [self.bn3]

    def get_config(self):
        return {**super().get_config(), "stride_in_3x3": self.stride_in_3x3}
