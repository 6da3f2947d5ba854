"""Helpers the composite blocks share: building a chain of sublayers, serializing initializers."""

import keras


def build_sequentially(layers, input_shape):
    """Builds `layers` as a chain from `input_shape`; returns the chain's output shape.

    Composite blocks build their sublayers explicitly in `build()`, so a
    `.keras` file can restore them before loading their variables.
    """
    shape = input_shape
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def serialize_initializer(initializer):
    """The config of an initializer given by name, dict or object, for `get_config`."""
    return keras.initializers.serialize(keras.initializers.get(initializer))
