"""Which layers of a model are its head: recorded by the code that builds the model.

Fine-tuning splits every model in two: the backbone, which is pre-trained,
frozen first and trained at a lower rate, and the head, new and trained at
the full rate. The builders record the split when they make a model
(`record_head`, as keras-hub's task models keep their `backbone`), and
everything that needs it (`kr.param_groups`, `UnfreezeBackbone`,
`backbone_of`, `port_weights`) asks `head_layers`.

A model read back from a `.keras` file carries no record: Keras saves the
graph, not attributes set on it. For such a model the layer names decide:
our builders name every head layer `head_*`, so a saved model splits as
the one that was built.
"""

import keras

# The builders name every head layer with this prefix; it is read only for models without a record.
HEAD_PREFIX = "head_"
_RECORD = "_kerasrecipes_head_layers"


def record_head(model, features, backbone_layers=()):
    """Records as `model`'s head every top-level layer that does not feed `features`.

    Args:
        model: a functional `keras.Model`.
        features: the tensor (or list of tensors) of `model`'s graph where the
            head starts: what the backbone gives, e.g. the feature map before
            the pooling, or a U-Net's encoder maps.
        backbone_layers: layers of the backbone applied after `features`
            (ConvNeXt's final LayerNorm, applied after the pooling).

    Returns:
        `model`, for chaining.
    """
    backbone_side = keras.Model(model.inputs, features)
    backbone = {id(layer) for layer in [*backbone_side.layers, *backbone_layers]}
    names = tuple(layer.name for layer in model.layers if id(layer) not in backbone)
    object.__setattr__(model, _RECORD, names)
    return model


def recorded_head(model):
    """The head layer names `record_head` stored on `model`; None for a model without a record."""
    return getattr(model, _RECORD, None)


def head_layers(model):
    """The top-level layers of `model` that form its head, in graph order (none: an empty list).

    The record `record_head` made when the model was built; for a model
    without one (read from a file, or built elsewhere), its `head_*` layers.
    """
    names = recorded_head(model)
    if names is None:
        return [layer for layer in model.layers if layer.name.startswith(HEAD_PREFIX)]
    names = set(names)
    return [layer for layer in model.layers if layer.name in names]


def is_head_layer(model, layer):
    """Whether `layer`, a top-level layer of `model`, belongs to its head."""
    return any(layer is head for head in head_layers(model))
