"""Feature maps at every stage, and parameter groups, read off the model cards.

`create_model(name, features_only=True, out_indices=...)` returns the maps a
detection or segmentation head needs (timm's `features_only`, keras-hub's
`pyramid_outputs`); `feature_info(model)` says their channels and
reductions; `param_groups(model)` orders a model's variables into stem,
blocks and head for layer decay and gradual unfreezing (timm's
`group_matcher`).
"""

import dataclasses
import math
import typing

import keras

from kerasrecipes.cards import FeatureTap, find_card
from kerasrecipes.layers.vit import PatchTokensToGrid
from kerasrecipes.model_parts import head_layers
from kerasrecipes.optimizers.paths import block_of, variable_paths

# The group of the head's layers (`kr.model_parts.head_layers`) in `param_groups`.
HEAD_GROUP = "head"


def tap_layer(model, prefix):
    """The last layer of `model` named `prefix` or `prefix_*`: the layer a tap reads."""
    found = None
    for layer in model.layers:
        if layer.name == prefix or layer.name.startswith(prefix + "_"):
            found = layer
    if found is None:
        raise ValueError(
            f"Model {model.name!r} has no layer named {prefix!r} (or {prefix!r}_*) for its "
            "feature tap; was it built by kr.create_model with its layer names?"
        )
    return found


def _tap_indices(card, out_indices):
    count = len(card.feature_taps)
    if count == 0:
        raise ValueError(f"{card.name}: its model card lists no feature taps.")
    if out_indices is None:
        return tuple(range(count))
    indices = tuple(out_indices)
    bad = [index for index in indices if not isinstance(index, int) or not 0 <= index < count]
    if bad or not indices or len(set(indices)) != len(indices):
        taps = ", ".join(
            f"{i}: {tap.layer} (reduction {tap.reduction})"
            for i, tap in enumerate(card.feature_taps)
        )
        raise ValueError(
            f"{card.name}: out_indices must be distinct tap positions in 0..{count - 1}. "
            f"Received: out_indices={out_indices!r}. Its taps are {taps}."
        )
    return indices


def features_model(card, model, out_indices=None):
    """Cuts a built model (include_top=False) to the outputs of the chosen feature taps.

    Transformer taps (tokens) are laid out as the patch grid, without the class token.
    """
    outputs = []
    for index in _tap_indices(card, out_indices):
        layer = tap_layer(model, card.feature_taps[index].layer)
        x = layer.output
        if len(x.shape) == 3:
            height, width = model.inputs[0].shape[1:3]
            patch = round(math.sqrt(height * width / (x.shape[1] - 1)))
            grid = (height // patch, width // patch)
            x = PatchTokensToGrid(grid, name=f"{layer.name}_grid")(x)
        outputs.append(x)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=model.name)


def _reduction(input_shape, map_shape):
    """The nominal stride of a map: the input size over the map size, to the nearest power of 2."""
    if None in (input_shape[1], map_shape[1]):
        return None
    return 2 ** round(math.log2(input_shape[1] / map_shape[1]))


def feature_info(model):
    """Channels and reduction of each feature map a model gives, as `FeatureTap`s (timm's names).

    For a model made with `features_only=True`: one entry per output. For any
    other model built by `create_model`: every tap of its card, found in it.

    Example:

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4),
    ...                         input_shape=(64, 64, 3))
    >>> [(tap.channels, tap.reduction) for tap in kr.feature_info(model)]
    [(64, 4), (128, 8), (256, 16), (512, 32)]
    """
    card = find_card(model)
    input_shape = model.inputs[0].shape
    maps = [output for output in model.outputs if len(output.shape) == 4]
    if len(maps) != len(model.outputs) or not maps:
        if card is None:
            raise ValueError(
                f"feature_info: model {model.name!r} neither outputs feature maps nor was "
                "built by kr.create_model; build it with features_only=True."
            )
        maps = [tap_layer(model, tap.layer).output for tap in card.feature_taps]
    producers = {}
    for layer in model.layers:
        try:
            producers[id(layer.output)] = layer.name
        except (AttributeError, ValueError):
            continue
    taps = card.feature_taps if card is not None else ()
    info = []
    for output in maps:
        name = producers.get(id(output), "?")
        matching = [t for t in taps if name == t.layer or name.startswith(t.layer + "_")]
        if matching:
            tap = max(matching, key=lambda t: len(t.layer))
            name, reduction = tap.layer, tap.reduction
        else:
            reduction = _reduction(input_shape, output.shape)
        info.append(FeatureTap(layer=name, channels=int(output.shape[-1]), reduction=reduction))
    return info


@dataclasses.dataclass
class ParamGroup:
    """One parameter group: a name ("stem", "stage1_block1", ..., "head") and its variables.

    `paths` are the variables' paths as `with_lr_multipliers` matches them.
    """

    name: str
    variables: list
    paths: list

    @property
    def is_stem(self):
        return self.name == "stem" or self.name.endswith("/stem")

    @property
    def is_head(self):
        return self.name == HEAD_GROUP


def _layer_groups(model, prefix=""):
    """(layer path, group name) for every leaf layer of `model`, nested models expanded, in order."""
    card = find_card(model)
    blocks = list(card.blocks) if card is not None else None
    head = {id(layer) for layer in head_layers(model)}
    entries = []
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if id(layer) in head:
            entries.append((path, HEAD_GROUP))
        elif isinstance(layer, keras.Model):
            entries.append((path, _layer_groups(layer, f"{path}/")))
        else:
            entries.append((path, _block(layer.name, blocks)))
    leaves = [(path, block) for path, block in entries if not isinstance(block, list)]
    group_of = dict(_fill_between_blocks(leaves, prefix))
    ordered = []
    for path, block in entries:
        ordered.extend(block if isinstance(block, list) else [(path, group_of[path])])
    return ordered


def _block(name, blocks):
    if blocks is None:
        return block_of(name + "/variable")
    return next((b for b in blocks if name == b or name.startswith(b + "_")), None)


def _fill_between_blocks(leaves, prefix):
    """Stem before the first block, the next block between two, the last block after them."""
    blocks = [block for _, block in leaves]
    real = [i for i, block in enumerate(blocks) if block not in (None, HEAD_GROUP)]
    groups = []
    for position, (path, block) in enumerate(leaves):
        if block == HEAD_GROUP:
            groups.append((path, HEAD_GROUP))
        elif block is not None:
            groups.append((path, f"{prefix}{block}"))
        elif not real or position < real[0]:
            groups.append((path, f"{prefix}stem"))
        elif position > real[-1]:
            groups.append((path, f"{prefix}{blocks[real[-1]]}"))
        else:
            following = next(blocks[i] for i in real if i > position)
            groups.append((path, f"{prefix}{following}"))
    return groups


def param_groups(model):
    """The variables of `model` in ordered groups: stem, each block, head.

    For models built by `create_model` the blocks come from the model card;
    for others (keras.applications) from their layer names (`block4a_*`,
    `conv3_block2_*`). A nested backbone's groups are named with its name
    (`"efficientnetb0/block4a"`). Layers between two blocks (a stage's
    downsampling) go with the block after them, layers after the last block
    (`post_*`, a final norm) with the last block, and the head's layers
    (`kr.model_parts.head_layers`: what the builder recorded) form the
    "head" group. Frozen layers count: their variables train once unfrozen.

    Returns:
        list of `ParamGroup(name, variables)`, shallow to deep, without empty groups.

    Example:

    >>> import kerasrecipes as kr
    >>> groups = kr.param_groups(kr.create_model("resnet20"))
    >>> [group.name for group in groups][:3], groups[-1].name, len(groups)
    (['stem', 'stage1_block1', 'stage1_block2'], 'head', 11)
    """
    layer_groups = _layer_groups(model)
    ordered = {}
    for _, group in layer_groups:
        ordered.setdefault(group, [])
    by_layer = dict(layer_groups)
    for path, variable in variable_paths(model):
        parts = path.split("/")
        group = None
        for cut in range(len(parts) - 1, 0, -1):
            group = by_layer.get("/".join(parts[:cut]))
            if group is not None:
                break
        ordered.setdefault(group or HEAD_GROUP, []).append((path, variable))
    head = ordered.pop(HEAD_GROUP, [])
    groups = [
        ParamGroup(name, [v for _, v in pairs], [p for p, _ in pairs])
        for name, pairs in ordered.items()
        if pairs
    ]
    if head:
        groups.append(ParamGroup(HEAD_GROUP, [v for _, v in head], [p for p, _ in head]))
    return groups


# -- what load_backbone returns --------------------------------------------------------------------


class LoadedBackbone(typing.NamedTuple):
    """What `load_backbone` returns.

    Attributes:
        model: the backbone, a `keras.Model` without classifier.
        preprocessing: the `ImagePreprocessing` mode its weights expect for
            [0, 255] images, or None when the model does it itself.
        description: one line saying where the weights came from.
    """

    model: keras.Model
    preprocessing: str | None
    description: str
