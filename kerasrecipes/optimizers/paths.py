"""Variable paths as `model.summary()` shows them, and the blocks that order layers by depth.

Keras gives every variable a `path`, but it records the name scope the
variable was created in, not the model it ended up in: the layers of a
`keras.applications` backbone used inside another model have paths such as
`block1a_dwconv/depthwise_kernel`, without the backbone's name. The paths
here are rebuilt from the layer tree instead, so they read the way the model
is printed: `efficientnetb0/block1a_dwconv/depthwise_kernel`,
`head_dense/kernel`, `stage1_block1/conv1/kernel` for a variable of a
sublayer.
"""

import re

from kerasrecipes import _compat

# A layer belongs to a block when its name starts with "<anything>block<N>[letter]":
# "stage2_block3_conv1" (ours), "conv3_block2_1_conv" (keras.applications ResNet),
# "block4a_expand_conv" (EfficientNet), "convnext_tiny_stage_1_block_2_pointwise_conv_1".
BLOCK_PATTERN = r"^(.*?block_?\d+[a-z]?)(?=_|$)"


def variable_paths(model):
    """Every variable of `model` that training can update, with its path, in layer order.

    Frozen layers are included (their variables train once unfrozen); the
    non-trainable state of a layer (BatchNorm moving statistics, seeds) is
    not. Variables shared by two layers appear once, under the first path.

    Returns:
        list of `(path, variable)` pairs.

    Example:

    >>> import keras
    >>> inner = keras.Sequential([keras.layers.Dense(2, name="fc")], name="backbone")
    >>> model = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1, name="head")])
    >>> [path for path, _ in variable_paths(model)]
    ['backbone/fc/kernel', 'backbone/fc/bias', 'head/kernel', 'head/bias']
    """
    seen = set()
    found = []

    def visit(layer, prefix):
        for variable in _compat.own_trainable_variables(layer):
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append((prefix + variable.name, variable))
        for sublayer in _compat.sublayers(layer):
            visit(sublayer, f"{prefix}{sublayer.name}/")

    for layer in _compat.sublayers(model):
        visit(layer, f"{layer.name}/")
    return found


def layer_path(variable_path):
    """The path of the layer that holds a variable: `"a/b/kernel"` -> `"a/b"`."""
    return variable_path.rsplit("/", 1)[0]


def block_of(path, block_pattern=BLOCK_PATTERN):
    """The path prefix naming the block a variable belongs to, or None.

    >>> block_of("stage2_block3_conv1/kernel")
    'stage2_block3'
    >>> block_of("efficientnetb0/block4a_expand_conv/kernel")
    'efficientnetb0/block4a'
    >>> block_of("head_dense/kernel") is None
    True
    """
    parts = path.split("/")[:-1]
    for index, part in enumerate(parts):
        match = re.match(block_pattern, part)
        if match:
            return "/".join(parts[:index] + [match.group(1)])
    return None


def depth_groups(paths, block_pattern=BLOCK_PATTERN):
    """Assigns each variable path a depth: 0 stem, 1..N blocks, N+1 head.

    Blocks are numbered in the order they first appear. A layer outside any
    block takes depth 0 before the first block, N+1 after the last one, and
    the depth of the next block in between (a stage's downsampling layer goes
    with the stage it opens). A model without block names gets one depth per
    layer, in order.

    Returns:
        `(depths, num_blocks)`: a list of ints aligned with `paths`, and N.

    >>> depth_groups(["stem/kernel", "stage1_block1_conv/kernel", "stage2_down/kernel",
    ...               "stage2_block1_conv/kernel", "head/kernel"])
    ([0, 1, 2, 2, 3], 2)
    """
    blocks = [block_of(path, block_pattern) for path in paths]
    if not any(blocks):
        blocks = [layer_path(path) for path in paths]
        # Every layer is its own block; no stem and no head outside them.
        order = list(dict.fromkeys(blocks))
        depths = [order.index(block) + 1 for block in blocks]
        return depths, len(order)
    order = list(dict.fromkeys(block for block in blocks if block))
    number = {block: index + 1 for index, block in enumerate(order)}
    block_positions = [i for i, block in enumerate(blocks) if block]
    depths = []
    for position, block in enumerate(blocks):
        if block:
            depths.append(number[block])
        elif position < block_positions[0]:
            depths.append(0)
        elif position > block_positions[-1]:
            depths.append(len(order) + 1)
        else:
            depths.append(number[next(b for b in blocks[position:] if b)])
    return depths, len(order)
