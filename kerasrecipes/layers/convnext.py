"""The ConvNeXt block (Liu et al. 2022, "A ConvNet for the 2020s", arXiv:2201.03545, Fig. 4)."""

import keras

from kerasrecipes.layers.activations import gelu
from kerasrecipes.layers.building import build_sequentially, serialize_initializer
from kerasrecipes.layers.layer_scale import LayerScale
from kerasrecipes.layers.normalization import LayerNormalization
from kerasrecipes.layers.regularization import DropPath

# The reference code's truncated normal with std 0.02 for convolutions and dense layers.
CONVNEXT_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ConvNeXtBlock(keras.layers.Layer):
    """7x7 depthwise conv, LayerNorm, inverted MLP (4x, GELU), LayerScale, stochastic depth.

    The block of Liu et al. 2022 (Fig. 4, right): a depthwise convolution
    with a large kernel, one LayerNorm, a pointwise MLP that expands the
    channels `mlp_ratio` times and projects back, a learned per-channel
    scale (`LayerScale`), and the residual addition through stochastic
    depth. The pointwise layers are `Dense` layers on the channel axis, as in
    the reference code. The block keeps the shape of its input.

    The depthwise convolution is a `DepthwiseConv2D`, where keras.applications
    uses a grouped `Conv2D` (`groups=channels`): same arithmetic, but on
    TensorFlow's CPU kernels the grouped form ran 26-27x slower (forward and
    backward, 16x56x56x96, 7x7). The kernels differ only by where the axis of
    size 1 sits, (7, 7, C, 1) here and (7, 7, 1, C) there, and `port_weights`
    moves it.

    Args:
        kernel_size: int, size of the depthwise kernel. Defaults to 7.
        mlp_ratio: int, expansion of the pointwise MLP. Defaults to 4.
        layer_scale_init: float, initial LayerScale value, or None for no
            LayerScale. Defaults to 1e-6.
        drop_path_rate: float, stochastic-depth rate of the residual branch. Defaults to 0.0.
        norm_epsilon: float, LayerNorm epsilon. Defaults to 1e-6.
        kernel_initializer: initializer of the convolution and dense layers.
            Defaults to a truncated normal with standard deviation 0.02.
        seed: optional int seed for stochastic depth. Defaults to None.

    Example:

    >>> block = ConvNeXtBlock(drop_path_rate=0.1, name="stage1_block1")
    >>> tuple(block(keras.ops.ones((2, 8, 8, 96))).shape)
    (2, 8, 8, 96)
    """

    def __init__(
        self,
        kernel_size=7,
        mlp_ratio=4,
        layer_scale_init=1e-6,
        drop_path_rate=0.0,
        norm_epsilon=1e-6,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size < 1 or mlp_ratio < 1:
            raise ValueError(
                f"ConvNeXtBlock '{self.name}': kernel_size and mlp_ratio must be >= 1. "
                f"Received: kernel_size={kernel_size}, mlp_ratio={mlp_ratio}"
            )
        self.kernel_size = kernel_size
        self.mlp_ratio = mlp_ratio
        self.layer_scale_init = layer_scale_init
        self.drop_path_rate = drop_path_rate
        self.norm_epsilon = norm_epsilon
        self.kernel_initializer = kernel_initializer or CONVNEXT_INITIALIZER
        self.seed = seed
        self.drop_path = DropPath(
            drop_path_rate, seed=seed, dtype=self.dtype_policy, name="drop_path"
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        # Created here, in the order of keras.applications' variables; the
        # widths depend on the input channels.
        self.depthwise_conv = keras.layers.DepthwiseConv2D(
            self.kernel_size,
            padding="same",
            depthwise_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="depthwise_conv",
        )
        self.norm = LayerNormalization(
            epsilon=self.norm_epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.pointwise_expand = keras.layers.Dense(
            self.mlp_ratio * channels,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="pointwise_expand",
        )
        self.pointwise_project = keras.layers.Dense(
            channels,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="pointwise_project",
        )
        self.layer_scale = None
        if self.layer_scale_init is not None:
            self.layer_scale = LayerScale(
                self.layer_scale_init, dtype=self.dtype_policy, name="layer_scale"
            )
        build_sequentially(self._branch_layers(), input_shape)
        self.built = True

    def _branch_layers(self):
        layers = [
            self.depthwise_conv,
            self.norm,
            self.pointwise_expand,
            self.pointwise_project,
            self.layer_scale,
        ]
        return [layer for layer in layers if layer is not None]

    def call(self, inputs, training=False):
        x = self.norm(self.depthwise_conv(inputs))
        x = self.pointwise_project(gelu(self.pointwise_expand(x)))
        if self.layer_scale is not None:
            x = self.layer_scale(x)
        return inputs + self.drop_path(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio,
                "layer_scale_init": self.layer_scale_init,
                "drop_path_rate": self.drop_path_rate,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
