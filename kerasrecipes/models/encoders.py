"""Encoders for dense heads: a zoo backbone's feature pyramid, for a U-Net or a detector."""

import dataclasses

import keras

from kerasrecipes.features import LoadedBackbone, features_model
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.registry import create_model, find_card, model_card


@dataclasses.dataclass
class PyramidEncoder:
    """What a dense head (U-Net, detector) builds on.

    Attributes:
        model: a model from images to feature maps, shallow to deep, one per reduction.
        reductions: the nominal stride of each map.
        preprocessing: layers to apply to [0, 255] images before `model`, in order.
    """

    model: keras.Model
    reductions: tuple
    preprocessing: list


def pyramid_encoder(backbone, input_shape, weights=None, max_reduction=32):
    """The deepest tap of each reduction up to `max_reduction` of `backbone`, at `input_shape`.

    `backbone` is a registered name (built with `weights`), a model built by
    `create_model`, one that wraps such a model after its input scaling (the
    demo backbones, `kr.load_backbone`'s), or a `kr.LoadedBackbone`. A model
    built at another size is rebuilt at `input_shape` with the same weights.
    """
    preprocessing = []
    if isinstance(backbone, LoadedBackbone):
        if backbone.preprocessing:
            preprocessing.append(ImagePreprocessing(backbone.preprocessing, name="preprocessing"))
        backbone = backbone.model
    if isinstance(backbone, str):
        card = model_card(backbone)
        net = create_model(
            backbone, include_top=False, input_shape=tuple(input_shape), weights=weights
        )
    elif isinstance(backbone, keras.Model):
        net, card = _carded_net(backbone)
        wrapper_scaling = [
            layer for layer in backbone.layers if isinstance(layer, ImagePreprocessing)
        ]
        preprocessing += (
            [ImagePreprocessing.from_config(layer.get_config()) for layer in wrapper_scaling]
            if net is not backbone
            else []
        )
        if tuple(net.input_shape[1:]) != tuple(input_shape):
            net = _at_input_size(net, input_shape)
    else:
        raise TypeError(
            "backbone must be a registered model name, a keras.Model built by kr.create_model "
            f"(or wrapping one) or a kr.LoadedBackbone. Received: {type(backbone).__name__}"
        )
    deepest = {}
    for index, tap in enumerate(card.feature_taps):
        if tap.reduction <= max_reduction:
            deepest[tap.reduction] = index
    if len(deepest) < 2:
        raise ValueError(
            f"{card.name} gives feature maps at one reduction only "
            f"({sorted(deepest) or [t.reduction for t in card.feature_taps]}); a dense head needs "
            "a pyramid of at least two. Use a CNN backbone (kr.list_models())."
        )
    indices = tuple(deepest[r] for r in sorted(deepest))
    return PyramidEncoder(features_model(card, net, indices), tuple(sorted(deepest)), preprocessing)


def _carded_net(model):
    """`model` if `create_model` built it, else the one such model nested in it."""
    if find_card(model) is not None:
        return model, find_card(model)
    nested = [layer for layer in model.layers if find_card(layer) is not None]
    if len(nested) != 1:
        raise ValueError(
            f"Model {model.name!r} is not a kr.create_model network and does not wrap exactly "
            "one; a dense head needs the model card's feature taps. Pass a registered name "
            "or a model built by kr.create_model(..., include_top=False)."
        )
    return nested[0], find_card(nested[0])


def _at_input_size(net, input_shape):
    """A copy of the functional `net` built for `input_shape`, with the same weights."""
    serialized = keras.saving.serialize_keras_object(net)
    for layer in serialized["config"]["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, *input_shape]
    copy = keras.saving.deserialize_keras_object(serialized)
    copy.set_weights(net.get_weights())
    return copy
