"""The Inception-v3 modules (Szegedy et al. 2016, "Rethinking the Inception Architecture
for Computer Vision", arXiv:1512.00567).

One layer, `InceptionModule`, runs parallel branches of convolution-BatchNorm-ReLU
units and concatenates them on the channel axis. The five module types of the
network are tables of branches (named A-E as in torchvision's Inception-v3):

- `inception_a`: 35x35 modules of Fig. 5, the 5x5 kept as one branch and
  factorized into two 3x3 in another.
- `inception_b`: the grid reduction 35 -> 17 (Fig. 10).
- `inception_c`: 17x17 modules of Fig. 6, n x n factorized into 1xn and nx1 (n = 7).
- `inception_d`: the grid reduction 17 -> 8.
- `inception_e`: 8x8 modules of Fig. 7 with the expanded filter bank: 1x3 and
  3x1 side by side, concatenated.

A branch is a list of steps, each a string or, last, a pair of strings:
"F KxL" is a convolution with F filters and a K x L kernel (stride 1, same
padding), "F KxL/2" one with stride 2 and valid padding, "avgpool" a 3x3
average pooling with stride 1, "maxpool/2" a 3x3 max pooling with stride 2;
a final pair of convolutions runs side by side on the branch and is concatenated.
"""

import re

import keras

from kerasrecipes.layers.building import serialize_initializer
from kerasrecipes.layers.normalization import BN_MOMENTUM, BatchNormalization

# As keras.applications' InceptionV3 (the Keras default), so ported statistics mean the same.
INCEPTION_BN_EPSILON = 1e-3
_CONV_STEP = re.compile(r"^(\d+) (\d+)x(\d+)(/2)?$")
_POOL_STEPS = ("avgpool", "maxpool/2")


def inception_a(pool_filters):
    """Fig. 5: 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; 3x3 average pool -> 1x1 (`pool_filters`)."""
    return [
        ["64 1x1"],
        ["48 1x1", "64 5x5"],
        ["64 1x1", "96 3x3", "96 3x3"],
        ["avgpool", f"{pool_filters} 1x1"],
    ]


def inception_b():
    """Grid reduction 35 -> 17 (Fig. 10): a strided 3x3, a strided double 3x3 and a max pool."""
    return [
        ["384 3x3/2"],
        ["64 1x1", "96 3x3", "96 3x3/2"],
        ["maxpool/2"],
    ]


def inception_c(channels_7x7):
    """Fig. 6 with n = 7: the 7x7 convolutions factorized into 1x7 and 7x1."""
    c = channels_7x7
    return [
        ["192 1x1"],
        [f"{c} 1x1", f"{c} 1x7", "192 7x1"],
        [f"{c} 1x1", f"{c} 7x1", f"{c} 1x7", f"{c} 7x1", "192 1x7"],
        ["avgpool", "192 1x1"],
    ]


def inception_d():
    """Grid reduction 17 -> 8: 1x1 -> strided 3x3; 1x1 -> 1x7 -> 7x1 -> strided 3x3; max pool."""
    return [
        ["192 1x1", "320 3x3/2"],
        ["192 1x1", "192 1x7", "192 7x1", "192 3x3/2"],
        ["maxpool/2"],
    ]


def inception_e():
    """Fig. 7: the expanded filter bank, 1x3 and 3x1 side by side in two branches."""
    return [
        ["320 1x1"],
        ["384 1x1", ["384 1x3", "384 3x1"]],
        ["448 1x1", "384 3x3", ["384 1x3", "384 3x1"]],
        ["avgpool", "192 1x1"],
    ]


def _parse_conv(step, layer_name):
    match = _CONV_STEP.match(step)
    if match is None:
        raise ValueError(
            f"InceptionModule '{layer_name}': cannot read the step {step!r}. Expected "
            f"'F KxL' or 'F KxL/2' (a convolution) or one of {_POOL_STEPS}."
        )
    filters, rows, cols, strided = match.groups()
    return int(filters), (int(rows), int(cols)), 2 if strided else 1


def _strided_size(size, kernel):
    """Output size of a stride-2 window of `kernel` with valid padding."""
    return None if size is None else (size - kernel) // 2 + 1


@keras.saving.register_keras_serializable(package="kerasrecipes")
class InceptionModule(keras.layers.Layer):
    """Parallel branches of conv-BN-ReLU units, concatenated on the channel axis.

    Each convolution has no bias and is followed by a BatchNormalization
    without scale by default (the next convolution can absorb it) and a ReLU,
    as in keras.applications' `InceptionV3`. The sublayers are created in the
    order of that model's variables, which is by depth, not by branch: a
    functional model lists its layers from the input by their distance to the
    module's output, then by the order they were made. Built like this, an
    Inception-v3 of these modules takes keras.applications' weights by position.

    Why not keras-hub or keras-cv: neither has Inception-v3 modules.

    Args:
        branches: list of branches, each a list of steps as described in the
            module docstring, e.g. `inception_a(32)`.
        norm_epsilon: float, BatchNorm epsilon. Defaults to 1e-3.
        kernel_initializer: initializer of the convolutions. Defaults to "glorot_uniform".
        bn_scale: bool, give each BatchNorm a learned scale (gamma), as
            torchvision's and timm's BasicConv2d have. Defaults to False (Keras').
        count_include_pad: bool, the 3x3 "avgpool" steps zero-pad the input by
            one pixel and average 9 values everywhere (a `branch{b}_pad`
            ZeroPadding2D before a valid pooling), as PyTorch's
            `avg_pool2d(..., padding=1)` with `count_include_pad=True`; False
            averages only the pixels inside the image at the border, as
            Keras' "same" pooling. Defaults to False.

    Example:

    >>> module = InceptionModule(inception_a(pool_filters=32), name="stage1_block1")
    >>> tuple(module(keras.ops.ones((1, 35, 35, 192))).shape)
    (1, 35, 35, 256)
    """

    def __init__(
        self,
        branches,
        norm_epsilon=INCEPTION_BN_EPSILON,
        kernel_initializer=None,
        bn_scale=False,
        count_include_pad=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not branches or any(not branch for branch in branches):
            raise ValueError(
                f"InceptionModule '{self.name}': branches must be a non-empty list of "
                f"non-empty lists of steps. Received: branches={branches!r}"
            )
        self.branches = [list(branch) for branch in branches]
        self.norm_epsilon = norm_epsilon
        self.kernel_initializer = kernel_initializer or "glorot_uniform"
        self.bn_scale = bool(bn_scale)
        self.count_include_pad = bool(count_include_pad)
        for branch in self.branches:
            for position, step in enumerate(branch):
                if isinstance(step, (list, tuple)):
                    if position != len(branch) - 1:
                        raise ValueError(
                            f"InceptionModule '{self.name}': a pair of side-by-side "
                            f"convolutions must be the last step of its branch: {branch}"
                        )
                    for conv in step:
                        _parse_conv(conv, self.name)
                elif step not in _POOL_STEPS:
                    _parse_conv(step, self.name)

    def _unit(self, step, name):
        filters, kernel_size, strides = _parse_conv(step, self.name)
        conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid" if strides > 1 else "same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=f"{name}_conv",
        )
        norm = BatchNormalization(
            epsilon=self.norm_epsilon,
            momentum=BN_MOMENTUM,
            scale=self.bn_scale,
            dtype=self.dtype_policy,
            name=f"{name}_bn",
        )
        return conv, norm

    def build(self, input_shape):
        # plan[b][s]: a pooling layer, a (conv, norm) unit, or a list of units side by side.
        plan = []
        ordered = []  # (distance of the layer to the module output, order made, layer)
        for b, branch in enumerate(self.branches, start=1):
            steps = []
            convs = [step for step in branch if step not in _POOL_STEPS]
            split = isinstance(branch[-1], (list, tuple))
            # The ReLU of a unit feeding the concatenation is 1 away from the
            # output, its BatchNorm 2 and its convolution 3; a side-by-side pair
            # adds its own concatenation.
            distance = 3 * (len(convs) - split) + (4 if split else 0)
            for s, step in enumerate(branch, start=1):
                if step == "avgpool":
                    if self.count_include_pad:
                        steps.append(keras.layers.ZeroPadding2D(1, name=f"branch{b}_pad"))
                    steps.append(
                        keras.layers.AveragePooling2D(
                            3,
                            strides=1,
                            padding="valid" if self.count_include_pad else "same",
                            name=f"branch{b}_pool",
                        )
                    )
                    continue
                if step == "maxpool/2":
                    steps.append(keras.layers.MaxPooling2D(3, strides=2, name=f"branch{b}_pool"))
                    continue
                pair = step if isinstance(step, (list, tuple)) else [step]
                units = []
                for p, conv_step in enumerate(pair):
                    suffix = "ab"[p] if len(pair) > 1 else ""
                    unit = self._unit(conv_step, f"branch{b}_step{s}{suffix}")
                    unit_distance = 4 if len(pair) > 1 else distance
                    ordered.append((unit_distance, len(ordered), unit[0]))
                    ordered.append((unit_distance - 1, len(ordered), unit[1]))
                    units.append(unit)
                if len(pair) == 1:
                    distance -= 3
                steps.append(units if len(pair) > 1 else units[0])
            plan.append(steps)
        ordered.sort(key=lambda item: (-item[0], item[1]))
        # Tracked in this order (before the plan, which holds the same layers),
        # so `weights` lists them as keras.applications does.
        self.unit_layers = [layer for _, _, layer in ordered]
        self._plan = plan
        for branch in self._plan:
            shape = input_shape
            for step in branch:
                shape = self._build_step(step, shape)
        self.built = True

    @staticmethod
    def _build_step(step, shape):
        if isinstance(step, keras.layers.Layer):
            return step.compute_output_shape(shape)
        units = step if isinstance(step, list) else [step]
        outputs = []
        for conv, norm in units:
            conv.build(shape)
            out = conv.compute_output_shape(shape)
            norm.build(out)
            outputs.append(out)
        return outputs[0][:-1] + (sum(out[-1] for out in outputs),)

    @staticmethod
    def _run_step(step, x, training):
        if isinstance(step, keras.layers.Layer):
            return step(x)
        units = step if isinstance(step, list) else [step]
        outputs = [keras.ops.relu(norm(conv(x), training=training)) for conv, norm in units]
        return outputs[0] if len(outputs) == 1 else keras.ops.concatenate(outputs, axis=-1)

    def call(self, inputs, training=False):
        outputs = []
        for branch in self._plan:
            x = inputs
            for step in branch:
                x = self._run_step(step, x, training)
            outputs.append(x)
        return keras.ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        outputs = []
        for branch in self.branches:
            size, branch_channels = (height, width), channels
            for step in branch:
                if step == "maxpool/2":
                    size = tuple(_strided_size(n, 3) for n in size)
                    continue
                if step == "avgpool":
                    continue
                pair = step if isinstance(step, (list, tuple)) else [step]
                branch_channels = 0
                for conv_step in pair:
                    filters, kernel_size, strides = _parse_conv(conv_step, self.name)
                    branch_channels += filters
                if strides == 2:
                    size = tuple(_strided_size(n, k) for n, k in zip(size, kernel_size))
            outputs.append((size, branch_channels))
        return (batch, *outputs[0][0], sum(c for _, c in outputs))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "branches": self.branches,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "bn_scale": self.bn_scale,
                "count_include_pad": self.count_include_pad,
            }
        )
        return config
