"""The BatchNormalization settings every convolutional family here shares."""

import keras

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
    return keras.layers.BatchNormalization(
        epsilon=epsilon,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_init else "ones",
        dtype=dtype,
        name=name,
    )
