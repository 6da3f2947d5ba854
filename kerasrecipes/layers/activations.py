"""The exact GELU, with its gradient written out on TensorFlow."""

import keras
from keras import ops

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def gelu(x):
    """The exact GELU, `x * Phi(x)` (Hendrycks & Gimpel 2016, arXiv:1606.08415).

    What `ops.gelu(x, approximate=False)` computes. On TensorFlow, Keras calls
    `tf.nn.gelu`, whose gradient TensorFlow derives op by op through `erfc`;
    here the forward pass is `0.5 * x * (1 + erf(x / sqrt(2)))`, as PyTorch's
    and JAX's GELU compute it, and the gradient is written out,
    `Phi(x) + x * phi(x)`, reusing `Phi(x)` from the forward pass: on a
    16x56x56x384 map (ConvNeXt-T's first stage) forward and backward took
    82 ms instead of 113 (`benchmarks/layer_norm_gelu.py`). Keras has no fused GELU on
    TensorFlow to call. On JAX and PyTorch this is `ops.gelu`.

    Example:

    >>> [round(float(v), 4) for v in gelu(keras.ops.convert_to_tensor([-1.0, 0.0, 2.0]))]
    [-0.1587, 0.0, 1.9545]
    """
    if keras.backend.backend() != "tensorflow":
        return ops.gelu(x, approximate=False)

    @ops.custom_gradient
    def gelu_with_gradient(x):
        cdf = 0.5 + 0.5 * ops.erf(x * _SQRT_HALF)

        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            pdf = _INV_SQRT_2PI * ops.exp(-0.5 * ops.square(x))
            return upstream * (cdf + x * pdf)

        return x * cdf, gradient

    return gelu_with_gradient(x)
