"""Putting a PyTorch state_dict into a Keras model, layer by layer, with every tensor accounted for.

The family converters (`kerasrecipes.timm.resnet`, ...) name which timm key
goes into which of our layers; `StateDictLoader` does the layout changes
(PyTorch's OIHW kernels to Keras' HWIO, `(out, in)` matrices to `(in, out)`)
and checks: a shape that does not fit names both sides, and at the end every
variable of the model has been set and every tensor of the checkpoint used.
keras-hub's timm converters (`keras_hub/src/utils/timm/`) do the same for
keras-hub's own networks, which are not ours, so they cannot be reused here.
"""

import dataclasses
import re
from collections.abc import Callable

import numpy as np

# Bookkeeping of PyTorch's BatchNorm: no Keras variable holds it.
IGNORED_SUFFIXES = (".num_batches_tracked",)
BLOCK_NAME = re.compile(r"stage(\d+)_block(\d+)")


def numbered_blocks(model):
    """`(layer, stage, block)` for each of `model`'s blocks, the layers our builders name
    `stage{stage}_block{block}` (numbered from 1, as the model cards' `blocks`), in order."""
    for layer in model.layers:
        match = BLOCK_NAME.fullmatch(layer.name)
        if match:
            yield layer, int(match[1]), int(match[2])


class StateDictLoader:
    """Assigns a timm checkpoint's tensors to one model's variables.

    Args:
        model: the Keras model built with the architecture options of the checkpoint.
        tensors: dict of state_dict key -> numpy array.
        name: the checkpoint's name, for the errors.
        load_head: bool, load the classifier too (False: the checkpoint's
            classifier keys are consumed and the model's new head keeps its
            initialization). Defaults to True.
        ignored_prefixes: keys starting with one of these are not used (e.g.
            Inception's auxiliary classifier). Defaults to ().
    """

    def __init__(self, model, tensors, name, load_head=True, ignored_prefixes=()):
        self.model = model
        self.tensors = dict(tensors)
        self.name = name
        self.load_head = load_head
        self.ignored_prefixes = tuple(ignored_prefixes)
        self.used = set()
        self.assigned = set()

    # Reading the checkpoint.

    def take(self, key):
        """The tensor `key` as float32, marked used."""
        if key not in self.tensors:
            close = [k for k in self.tensors if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0]]
            raise ValueError(
                f"{self.name}: the checkpoint has no tensor {key!r}"
                + (f" (it has {', '.join(close[:4])})" if close else "")
                + ". It was saved from another architecture than the one built; check the "
                "name and tag."
            )
        self.used.add(key)
        return np.asarray(self.tensors[key], dtype="float32")

    # Writing the model.

    def layer(self, name):
        """Our layer `name` (a top-level layer of the model)."""
        try:
            return self.model.get_layer(name)
        except ValueError:
            raise ValueError(
                f"{self.name}: the model {self.model.name!r} has no layer {name!r} to load into. "
                "Build it with kr.create_model(name, weights='timm:...'), which sets the "
                "architecture options the checkpoint needs."
            ) from None

    def assign(self, variable, value, key):
        """Sets `variable` to `value` (from checkpoint tensor `key`) after checking the shape."""
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"{self.name}: {key!r} has shape {tuple(value.shape)} after conversion, but "
                f"{variable.path} has {tuple(variable.shape)}. The model was built with other "
                "options than the checkpoint's (width, depth, classes); build it with "
                "kr.create_model(name, weights='timm:...')."
            )
        variable.assign(value.astype(variable.dtype))
        self.assigned.add(id(variable))

    def conv(self, layer, prefix, bias=None):
        """A `Conv2D` from `prefix.weight` (O, I, H, W) and `prefix.bias` when the layer has one."""
        self.assign(layer.kernel, self.take(f"{prefix}.weight").transpose(2, 3, 1, 0), prefix)
        self._bias(layer, prefix)

    def depthwise(self, layer, prefix):
        """A `DepthwiseConv2D` from a grouped convolution's (C, 1, H, W) weight."""
        kernel = self.take(f"{prefix}.weight").transpose(2, 3, 0, 1)
        self.assign(layer.kernel, kernel, prefix)
        self._bias(layer, prefix)

    def dense(self, layer, prefix, head=False):
        """A `Dense` from `prefix.weight` (out, in) and `prefix.bias`; a 1x1 or kxk convolution
        weight (out, in, kh, kw) is flattened in Keras' (kh, kw, in) order (VGG's fc6 as a conv).

        `head=True` marks the classifier: consumed but not loaded without `load_head`.
        """
        weight = self.take(f"{prefix}.weight")
        bias_key = f"{prefix}.bias"
        if head and not self.load_head:
            self.used.add(bias_key)
            return
        if weight.ndim == 4:
            weight = weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
        else:
            weight = weight.T
        self.assign(layer.kernel, weight, prefix)
        self._bias(layer, prefix)

    def head(self, layer_name, prefix):
        """The classifier `layer_name` from `prefix`: loaded when the model has it and
        `load_head`, else its tensors are consumed (a model without a top, or a new head)."""
        layer = next((layer for layer in self.model.layers if layer.name == layer_name), None)
        if layer is None or not self.load_head:
            self.used.update(key for key in self.tensors if key.startswith(f"{prefix}."))
            return
        self.dense(layer, prefix, head=True)

    def batch_norm(self, layer, prefix):
        """A `BatchNormalization` from `weight`, `bias`, `running_mean`, `running_var`."""
        if layer.scale:
            self.assign(layer.gamma, self.take(f"{prefix}.weight"), f"{prefix}.weight")
        if layer.center:
            self.assign(layer.beta, self.take(f"{prefix}.bias"), f"{prefix}.bias")
        self.assign(layer.moving_mean, self.take(f"{prefix}.running_mean"), prefix)
        self.assign(layer.moving_variance, self.take(f"{prefix}.running_var"), prefix)

    def layer_norm(self, layer, prefix):
        """A `LayerNormalization` from `weight` and `bias`."""
        self.assign(layer.gamma, self.take(f"{prefix}.weight"), f"{prefix}.weight")
        self.assign(layer.beta, self.take(f"{prefix}.bias"), f"{prefix}.bias")

    def variable(self, variable, key, transform=None):
        """Any other variable, from `key` through an optional `transform` of the array."""
        value = self.take(key)
        self.assign(variable, transform(value) if transform else value, key)

    def _bias(self, layer, prefix):
        if getattr(layer, "use_bias", False):
            self.assign(layer.bias, self.take(f"{prefix}.bias"), f"{prefix}.bias")

    # The final check.

    def finish(self, skipped_variables=()):
        """Raises unless every variable was set and every tensor used.

        `skipped_variables` are the variables left at their initialization on
        purpose (a new head).
        """
        skipped = {id(v) for v in skipped_variables}
        unset = [
            v.path
            for v in self.model.weights
            if id(v) not in self.assigned and id(v) not in skipped
        ]
        unused = [
            key
            for key in self.tensors
            if key not in self.used
            and not key.endswith(IGNORED_SUFFIXES)
            and not key.startswith(self.ignored_prefixes)
        ]
        if unset or unused:
            raise ValueError(
                f"{self.name} does not fit {self.model.name!r}: "
                + (f"{len(unset)} variables were not set ({', '.join(unset[:3])})" if unset else "")
                + ("; " if unset and unused else "")
                + (
                    f"{len(unused)} tensors were not used ({', '.join(unused[:3])})"
                    if unused
                    else ""
                )
                + ". The architecture built is not the checkpoint's."
            )


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one timm architecture becomes one of our models.

    Attributes:
        model: our registered model name.
        convert: `convert(loader, model, architecture)`, the family's mapping of keys to layers.
        options: builder arguments that make our network timm's (e.g. `stride_in_3x3=True`).
        ignored_prefixes: checkpoint keys with no counterpart that are left out on purpose.
        builder_preprocessing: the mode the builder applies itself and cannot change (None:
            it takes a `preprocessing` argument); a checkpoint that needs another is an error.
    """

    model: str
    convert: Callable
    options: dict = dataclasses.field(default_factory=dict)
    ignored_prefixes: tuple = ()
    builder_preprocessing: str | None = None

    def preprocessing_arguments(self, preprocessing):
        """The builder arguments that give our model the checkpoint's `preprocessing`."""
        if self.builder_preprocessing is None:
            return {"preprocessing": preprocessing}
        if preprocessing != self.builder_preprocessing:
            raise ValueError(
                f"{self.model} scales its input itself ({self.builder_preprocessing!r}), but "
                f"this checkpoint was trained with {preprocessing!r}."
            )
        return {}
