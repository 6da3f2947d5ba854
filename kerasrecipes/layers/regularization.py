"""Regularization layers and the stochastic-depth schedule shared by every family."""

import keras


@keras.saving.register_keras_serializable(package="kerasrecipes")
class DropPath(keras.layers.Layer):
    """Drops a whole residual branch per sample (stochastic depth).

    Huang et al. 2016, "Deep Networks with Stochastic Depth": during training
    each sample's residual branch is zeroed with probability `rate` and the
    survivors are scaled by `1 / (1 - rate)`, so inference needs no rescaling.
    Apply it to the residual branch, before the addition with the shortcut.

    Why not keras-cv: `keras_cv.layers.DropPath` (0.9) draws its mask with
    `keras.random.uniform(seed=int)`, which under a compiled train step gives
    the same mask at every step, and with `seed=None` fails inside a JAX
    `jit`; `keras_cv.layers.StochasticDepth` calls the Keras 2 API
    `keras.backend.random_bernoulli`, which Keras 3 does not have. This
    layer draws through a `keras.random.SeedGenerator`, so masks differ
    step to step, are reproducible under a seed, and work on every backend.

    Args:
        rate: float in [0, 1), probability of dropping the branch. Defaults to 0.0.
        seed: optional int seed for the mask. Defaults to None.

    Example:

    >>> layer = DropPath(rate=0.5, seed=0)
    >>> x = keras.ops.ones((8, 4, 4, 2))
    >>> bool(keras.ops.all(layer(x, training=False) == x))
    True
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1). Received: rate={rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.rate == 0.0:
            return inputs
        noise_shape = (None,) + (1,) * (len(inputs.shape) - 1)
        return keras.random.dropout(
            inputs, self.rate, noise_shape=noise_shape, seed=self.seed_generator
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


def drop_path_schedule(drop_path_rate, num_blocks):
    """Per-block stochastic-depth rates, rising linearly with depth.

    Rule: block `i` of `num_blocks` (counting from 0) gets
    `drop_path_rate * i / (num_blocks - 1)`: the first block is never
    dropped and the last block gets the full `drop_path_rate`. This is the
    `linspace(0, rate, depth)` of timm and of the ConvNeXt reference code.
    Huang et al. 2016 use `rate * (i + 1) / num_blocks` instead (first block
    slightly above 0); keras.applications' EfficientNet uses
    `rate * i / num_blocks` (the last block below the full rate).

    Args:
        drop_path_rate: float in [0, 1), the rate of the deepest block.
        num_blocks: int >= 1, the number of residual blocks in the network.

    Returns:
        A list of `num_blocks` floats.

    Example:

    >>> drop_path_schedule(0.2, 5)
    [0.0, 0.05, 0.1, 0.15000000000000002, 0.2]
    """
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(
            f"drop_path_rate must be in [0, 1). Received: drop_path_rate={drop_path_rate}"
        )
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1. Received: num_blocks={num_blocks}")
    if num_blocks == 1:
        return [float(drop_path_rate)]
    return [drop_path_rate * i / (num_blocks - 1) for i in range(num_blocks)]
