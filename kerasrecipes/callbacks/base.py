"""What our callbacks share: `from_config` for deserialization, the model's strategy scope."""

import contextlib

import keras

from kerasrecipes import _compat


class ConfigurableCallback(keras.callbacks.Callback):
    """A callback rebuilt from `get_config()` by `keras.saving.deserialize_keras_object`.

    Keras' `Callback` has no `get_config`/`from_config`; our callbacks define
    `get_config` and inherit this `from_config`.
    """

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def strategy_scope(model):
    """The scope of the `tf.distribute` strategy `model` was compiled under, or a no-op.

    Optimizer variables a callback creates (building, rebuilding) must be
    created there to be mirrored like the ones Keras creates.
    """
    strategy = _compat.compiled_strategy(model)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
