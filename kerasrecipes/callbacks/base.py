"""The base of our callbacks: Keras' `Callback` plus `from_config`, so they deserialize."""

import keras


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
