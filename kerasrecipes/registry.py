"""Building registered models by name: `create_model` (timm's `_factory`).

The cards themselves, `register_model`, `list_models` and `model_card`,
live in `kerasrecipes.cards`, the leaf every module may import; they are
importable from here too, as they always were.
"""

from kerasrecipes import timm
from kerasrecipes.cards import (  # noqa: F401  (the registry's names, as before the split)
    _HEADS,
    _REGISTRY,
    BN_MOMENTUM,
    COMMON_ARGS,
    FeatureTap,
    ModelCard,
    ModelEntry,
    PretrainedWeights,
    find_card,
    get_model_entry,
    list_heads,
    list_models,
    model_card,
    register_head,
    register_model,
    stage_blocks,
)
from kerasrecipes.features import features_model
from kerasrecipes.layers.normalization import set_bn_momentum
from kerasrecipes.model_parts import HEAD_PREFIX  # noqa: F401  (its old home)


def create_model(name, *, features_only=False, out_indices=None, **kwargs):
    """Builds the registered model `name`; keyword arguments go to its builder.

    Common arguments of every builder: `num_classes`, `input_shape`,
    `bn_momentum` (every BatchNorm layer's; default the card's, 0.9),
    `include_top`, `include_preprocessing` (default True: the model takes RGB
    images in [0, 255] and applies the card's preprocessing itself),
    `pooling`, `dropout`, `drop_path_rate`, `weights`,
    `classifier_activation`. One a model cannot use (e.g. `drop_path_rate`
    on VGG) raises `ValueError`. A task head (`list_heads()`, e.g. "unet")
    takes its own arguments, `backbone=` among them.

    Args:
        name: a registered name (`list_models()`).
        features_only: bool, return the backbone's feature maps instead of
            the classifier: a model whose outputs are the maps of the chosen
            taps, shallow to deep (timm's `features_only`; `kr.feature_info`
            gives their channels and reductions). Defaults to False.
        out_indices: which taps (positions in `model_card(name).feature_taps`)
            to return with `features_only`; None for all. Defaults to None.
        **kwargs: the builder's arguments.

    Example:

    >>> model = create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    >>> model.output_shape
    (None, 10)
    """
    if name in _HEADS:
        if features_only or out_indices is not None:
            raise ValueError(
                f"{name} is a task head; features_only and out_indices apply to its backbone. "
                f"Build it with kr.create_model({name!r}, backbone=...)."
            )
        return _HEADS[name](**kwargs)
    card = model_card(name)
    bn_momentum = kwargs.pop("bn_momentum", None)
    _check_card_arguments(card, kwargs)
    if not features_only:
        if out_indices is not None:
            raise ValueError(
                f"{name}: out_indices chooses feature maps and needs features_only=True. "
                f"Received: out_indices={out_indices!r}"
            )
        return _with_bn_momentum(_build(card, kwargs), bn_momentum)
    for argument in ("include_top", "pooling"):
        if kwargs.get(argument):
            raise ValueError(
                f"{name}: features_only=True returns feature maps, so {argument} does not "
                f"apply. Received: {argument}={kwargs[argument]!r}"
            )
    kwargs.update(include_top=False, pooling=None)
    return features_model(card, _with_bn_momentum(_build(card, kwargs), bn_momentum), out_indices)


def _build(card, kwargs):
    """The card's builder called with `kwargs`; a timm checkpoint (`weights="timm:..."`) is
    built with the options, preprocessing and input size it needs, then converted into it."""
    weights = kwargs.get("weights")
    if not timm.is_timm_weights(weights):
        return card.builder(**kwargs)
    timm.check_family(card.name)
    checkpoint = timm.resolve(weights, card.name)
    model = card.builder(**checkpoint.builder_arguments(kwargs))
    return checkpoint.load_into(model, include_top=kwargs.get("include_top", True))


def _with_bn_momentum(model, momentum):
    if momentum is not None:
        if not set_bn_momentum(model, momentum):
            raise ValueError(
                f"{model.name} has no BatchNorm layers, so bn_momentum does not apply. "
                f"Received: bn_momentum={momentum!r}"
            )
    return model


def _check_card_arguments(card, kwargs):
    """The checks the card answers before anything is built."""
    weights = kwargs.get("weights")
    if weights == "imagenet" and "imagenet" not in card.pretrained:
        with_weights = [
            other
            for other in list_models(pretrained="imagenet")
            if _REGISTRY[other].family == card.family
        ]
        hint = f" ({', '.join(with_weights)} in its family have)" if with_weights else ""
        raise ValueError(
            f"No ImageNet weights for {card.name!r}{hint}. Pass weights=None or the path "
            "of a .weights.h5 or .keras file."
        )
