"""Loading weights: local files, and ImageNet weights ported from keras.applications."""

import os

import keras

from kerasrecipes import _compat
from kerasrecipes.model_parts import HEAD_PREFIX, head_layers

# The classifier layer's name in our builders (kept for code that imported it).
CLASSIFIER = f"{HEAD_PREFIX}dense"


def _weights_of(model, skip_head):
    if not skip_head:
        return list(model.weights)
    head = {id(layer) for layer in head_layers(model)}
    return [weight for layer in model.layers if id(layer) not in head for weight in layer.weights]


def port_weights(source_model, target_model, skip_head=False):
    """Copies every variable of `source_model` into `target_model`, by position.

    The two models must be variable-for-variable compatible: the same number
    of variables, in the same order, with the same shapes (ours are, for
    the keras.applications networks they mirror). Names are not compared,
    since the two sides name layers differently; a mismatch in count or in
    any shape raises a `ValueError` naming the first offending variables.
    Shapes that differ only by axes of size 1 count as the same, and the
    values are reshaped, which keeps their order: a grouped `Conv2D` kernel
    (7, 7, 1, C) goes into a `DepthwiseConv2D` kernel (7, 7, C, 1), a 1x1
    convolution kernel (1, 1, C, D) into a `Dense` kernel (C, D).

    Args:
        source_model: the model to copy from, e.g. `keras.applications.ResNet50()`.
        target_model: the model to copy into, e.g. `create_model("resnet50")`.
        skip_head: bool, leave the target's head (`kr.model_parts.head_layers`) out (they keep their
            initialization), for a source built without its classifier.
            Defaults to False.

    Returns:
        The number of variables copied.

    Example:

    >>> source = keras.applications.ResNet50(weights=None)     # doctest: +SKIP
    >>> port_weights(source, create_model("resnet50"))          # doctest: +SKIP
    320
    """
    target_weights = _weights_of(target_model, skip_head)
    _port_variables(
        _source_weights(source_model, target_model),
        target_weights,
        source_model.name,
        target_model,
        " outside its head" if skip_head else "",
    )
    return len(target_weights)


def _normalizations(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]


def _source_weights(source_model, target_model):
    """The source's variables, less its input normalization's when the target has none.

    A model built with `include_preprocessing=False` leaves out the
    `Normalization` layer its keras.applications twin (EfficientNet) starts with.
    """
    if not _normalizations(source_model) or _normalizations(target_model):
        return list(source_model.weights)
    skipped = {id(w) for layer in _normalizations(source_model) for w in layer.weights}
    return [weight for weight in source_model.weights if id(weight) not in skipped]


def _port_variables(source_weights, target_weights, source_name, target_model, scope):
    """Checks count and shapes of two variable lists, then assigns one to the other."""
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"Cannot port weights: '{source_name}' has {len(source_weights)} "
            f"variables but '{target_model.name}' has {len(target_weights)}{scope}. Build "
            "both with the same architecture options (include_top, shortcut, preact, ...)."
        )
    for index, (source, target) in enumerate(zip(source_weights, target_weights)):
        if _without_unit_axes(source.shape) != _without_unit_axes(target.shape):
            raise ValueError(
                f"Cannot port weights: variable {index} has shape {tuple(source.shape)} "
                f"in '{source_name}' ({source.path}) but {tuple(target.shape)} in "
                f"'{target_model.name}' ({target.path})."
            )
    for source, target in zip(source_weights, target_weights):
        target.assign(keras.ops.reshape(source.value, target.shape))
    for layer in _compat.sublayers(target_model, recursive=True):
        if isinstance(layer, keras.layers.Normalization):
            # It keeps tensors made from its variables; make them again.
            layer.finalize_state()


def _port_saved_model(saved, model, path):
    """`saved`'s variables into `model`: all of them when the two have the same head; else
    those of `saved`'s backbone into `model` without its head, which keeps its initialization.

    The meaning a `.keras` file has everywhere (`load_backbone`, the command): its model's
    backbone, with its head only where the head fits.
    """
    try:
        port_weights(saved, model)
        return
    except ValueError as whole:
        head = {id(layer) for layer in head_layers(saved)}
        backbone = [w for layer in saved.layers if id(layer) not in head for w in layer.weights]
        try:
            _port_variables(
                backbone, _weights_of(model, skip_head=True), saved.name, model, " outside its head"
            )
        except ValueError as cut:
            raise ValueError(
                f"{path}: its model does not fit {model.name!r}, whole ({whole}) or without "
                f"the heads ({cut}). Build the architecture the file was saved from."
            ) from None


def _without_unit_axes(shape):
    return tuple(size for size in shape if size != 1)


def load_model_weights(model, weights, *, keras_twin=None, include_top=True, num_classes=1000):
    """Loads `weights` into a freshly built `model`: None, "imagenet" or a file path.

    "imagenet" builds the keras.applications twin with its ImageNet weights
    (the real download goes through `keras.applications`) and ports them.
    When our classifier is not the 1000-class one, only the backbone is
    ported and the new head keeps its initialization; when the top has
    pretrained hidden layers (VGG's `head_fc1`, `head_fc2`), they are ported
    from the file with the top, and only the classifier is new. A path may
    name a `.weights.h5` file (loaded with `model.load_weights`) or a `.keras` file:
    the variables of the model saved in it, ported by position, its head's
    only when it fits (another number of classes keeps the new head), as
    `load_backbone` reads the same file.
    """
    if weights is None:
        return model
    if (
        isinstance(weights, str)
        and weights.startswith("timm:")
        or str(weights).endswith(".safetensors")
    ):
        raise ValueError(
            f"weights={weights!r}: build {model.name!r} with kr.create_model({model.name!r}, "
            "weights=...), which sets the architecture options, preprocessing and input size "
            "a timm checkpoint needs."
        )
    if weights == "imagenet":
        if keras_twin is None:
            raise ValueError(
                f"No ImageNet weights for '{model.name}': keras.applications has no "
                "twin of this network. Pass weights=None, or a path to a .weights.h5 "
                "or .keras file."
            )
        with_top = include_top and num_classes == 1000
        head_dense = [
            layer for layer in head_layers(model) if isinstance(layer, keras.layers.Dense)
        ]
        if include_top and not with_top and len(head_dense) > 1:  # hidden layers before it
            source = keras_twin(weights="imagenet", include_top=True)
            classifier = head_dense[-1]
            target_weights = [
                weight
                for layer in model.layers
                if layer is not classifier
                for weight in layer.weights
            ]
            # All but the source's 1000-class classifier, its last two variables.
            _port_variables(
                _source_weights(source, model)[:-2],
                target_weights,
                source.name,
                model,
                f" outside {classifier.name}",
            )
            return model
        source = keras_twin(weights="imagenet", include_top=with_top)
        port_weights(source, model, skip_head=include_top and not with_top)
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None, 'imagenet', or a path to a .weights.h5 or .keras "
            f"file. Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Weights file not found: {path}. Pass weights=None, 'imagenet', or the "
            "path of an existing .weights.h5 or .keras file."
        )
    if path.endswith(".keras"):
        saved = keras.saving.load_model(path, compile=False)
        _port_saved_model(getattr(saved, "network", saved), model, path)  # a kr.ImageClassifier's
    elif path.endswith(".h5"):
        model.load_weights(path)
    else:
        raise ValueError(
            f"Unsupported weights file: {path}. Expected a .weights.h5 or .keras file."
        )
    return model
