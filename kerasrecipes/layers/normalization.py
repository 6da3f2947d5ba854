"""BatchNormalization as every convolutional family here uses it: one kernel on TensorFlow."""

import keras
from keras import ops

from kerasrecipes import _compat

# As keras.applications' ResNets, so ported moving statistics mean the same.
BN_EPSILON = 1.001e-5
# Moving averages forget 10% per step, as PyTorch's default; Keras' 0.99 lags
# for hundreds of steps, which shows as poor validation accuracy in short runs.
# Momentum is not a weight: ports from keras.applications are unaffected.
BN_MOMENTUM = 0.9


def batch_norm(name, zero_init=False, dtype=None, epsilon=BN_EPSILON):
    """A `BatchNormalization` with the shared momentum and, by default, the shared epsilon.

    Args:
        name: the layer name.
        zero_init: bool, start gamma at 0 (the last norm of a residual branch,
            so the block starts as the identity). Defaults to False.
        dtype: dtype policy, e.g. the parent layer's. Defaults to None.
        epsilon: float added to the variance. A family ported from
            keras.applications keeps that family's value (1e-3 for MobileNetV2
            and EfficientNet): it changes the outputs. Defaults to `BN_EPSILON`.
    """
    return BatchNormalization(
        epsilon=epsilon,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_init else "ones",
        dtype=dtype,
        name=name,
    )


def set_bn_momentum(model, momentum):
    """Sets the moving-average momentum of every BatchNormalization layer in `model`.

    The momentum is a plain attribute, read at each call and saved in the
    layer's config, so the model round-trips with it; the weights are untouched.
    Returns the number of layers changed.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1). Received: {momentum!r}")
    layers = [
        layer
        for layer in _compat.sublayers(model, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


# What TensorFlow's fused kernel normalizes: NHWC maps of these types.
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' `BatchNormalization` (Ioffe & Szegedy 2015, arXiv:1502.03167), fused on TensorFlow.

    Keras 3 normalizes with separate operations (moments, then
    `ops.batch_normalization`) and casts bf16 activations to float32 and
    back around them: on TensorFlow that is a chain of element-wise and
    reduction kernels per layer, forward and backward, which took about 0.9 s
    of ResNet-50's 2.0 s training step in `mixed_bfloat16` on a Xeon with
    AMX (its convolutions ran on oneDNN's AMX kernels). On the
    TensorFlow backend this layer calls TensorFlow's fused kernel instead
    (`FusedBatchNormV3`, oneDNN on x86 CPUs, cuDNN on GPUs): one pass each
    way, bf16 or float16 maps in and out, statistics in float32. The step
    trains 1.8x faster in `mixed_bfloat16` (docs/benchmarks.md). Keras has
    no fused operation to call, hence this subclass.

    Everything else is Keras' layer: the variables, the config, the moving
    averages (of the biased batch variance, as Keras keeps them), and the
    call itself on JAX and PyTorch, for masks, renorm, synchronized
    statistics, axes other than the last and inputs that are not 4-D.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._runs_fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        return _fused_batch_norm_tensorflow(self, inputs, bool(training and self.trainable))

    def _runs_fused(self, inputs, mask):
        rank = len(inputs.shape)
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and rank == 4
            and self.axis in (-1, rank - 1)
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )


def _fused_batch_norm_tensorflow(layer, inputs, training):
    """`layer`'s normalization of NHWC `inputs` by TensorFlow's fused kernel."""
    import tensorflow as tf

    channels = inputs.shape[-1]
    gamma = layer.gamma if layer.scale else ops.ones((channels,), "float32")
    beta = layer.beta if layer.center else ops.zeros((channels,), "float32")
    if not training:
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            gamma,
            beta,
            mean=layer.moving_mean,
            variance=layer.moving_variance,
            epsilon=layer.epsilon,
            is_training=False,
        )
        return outputs
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=layer.epsilon, is_training=True
    )
    # The kernel returns the unbiased (n - 1) batch variance; Keras averages the biased one.
    count = ops.cast(ops.size(inputs) // channels, "float32")
    variance = variance * ops.maximum(count - 1.0, 0.0) / count
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras' `LayerNormalization` (Ba et al. 2016, arXiv:1607.06450), fewer passes on TensorFlow.

    Keras normalizes with `ops.moments` and an affine map, and TensorFlow
    differentiates that chain op by op: a dozen element-wise and reduction
    kernels per layer backward, each a full pass over the activations. On
    the TensorFlow backend, for the usual case (the last axis, with scale
    and center), this layer computes the same normalization in float32
    with the gradient written out (the one PyTorch's `layer_norm` kernel
    computes): `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))` with
    `g = upstream * gamma`. A ConvNeXt-T map of 16x56x56x96 went forward and
    backward in 27 ms instead of 36 (`benchmarks/layer_norm_gelu.py`). Keras has no
    fused layer normalization on TensorFlow to call, hence this subclass;
    on JAX (XLA fuses the chain) and PyTorch (Keras calls its fused kernel)
    it is Keras' layer unchanged, as it is for other axes and options.

    The variables, config and outputs are Keras' (float32 statistics,
    outputs in the compute dtype), so weights port to and from it as to
    Keras' layer.
    """

    def call(self, inputs):
        if not self._normalizes_last_axis_on_tensorflow(inputs):
            return super().call(inputs)
        outputs = _layer_norm_last_axis(
            ops.cast(inputs, "float32"),
            ops.cast(self.gamma, "float32"),
            ops.cast(self.beta, "float32"),
            self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _normalizes_last_axis_on_tensorflow(self, inputs):
        rank = len(inputs.shape)
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        return (
            keras.backend.backend() == "tensorflow"
            and [axis % rank for axis in axes] == [rank - 1]
            and self.scale
            and self.center
            and not self.rms_scaling
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )


def _layer_norm_last_axis(x, gamma, beta, epsilon):
    """Layer normalization of float32 `x` over its last axis, with its gradient written out."""

    @ops.custom_gradient
    def normalize(x, gamma, beta):
        mean = ops.mean(x, axis=-1, keepdims=True)
        centered = x - mean
        rstd = ops.rsqrt(ops.mean(ops.square(centered), axis=-1, keepdims=True) + epsilon)
        normalized = centered * rstd

        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            outer_axes = tuple(range(len(x.shape) - 1))
            scaled = upstream * gamma
            d_x = rstd * (
                scaled
                - ops.mean(scaled, axis=-1, keepdims=True)
                - normalized * ops.mean(scaled * normalized, axis=-1, keepdims=True)
            )
            d_gamma = ops.sum(upstream * normalized, axis=outer_axes)
            return d_x, d_gamma, ops.sum(upstream, axis=outer_axes)

        return normalized * gamma + beta, gradient

    return normalize(x, gamma, beta)
