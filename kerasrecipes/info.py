"""Model size and cost: parameters and multiply-adds at the model's input size."""

import dataclasses
import math

import keras

from kerasrecipes import _compat
from kerasrecipes.layers.layer_scale import LayerScale


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Parameters and cost of a model.

    Attributes:
        name: the model's name.
        params: all parameters, BatchNorm moving statistics included (the
            figure `model.count_params()` and keras.applications give).
        trainable_params: the parameters an optimizer updates; the papers'
            learned-parameter counts compare with this one (with nothing frozen).
        flops: multiply-adds of one forward pass of one image at `input_shape`
            (the papers' "FLOPs"), counted over convolutions and dense layers;
            None when the input size is not fixed.
        input_shape: the input shape the figure is for, without the batch.
        uncounted_layers: names of layers with weights whose multiply-adds
            `flops` leaves out because their type is not one it knows (not
            normalization or embedding layers, which are left out by design).
    """

    name: str
    params: int
    trainable_params: int
    flops: int | None
    input_shape: tuple
    uncounted_layers: tuple = ()

    def __str__(self):
        flops = (
            "unknown (input size not fixed)" if self.flops is None else f"{self.flops / 1e9:.3f}G"
        )
        text = (
            f"{self.name}: {self.params:,} parameters ({self.trainable_params:,} trainable), "
            f"{flops} multiply-adds at {self.input_shape}"
        )
        if self.uncounted_layers:
            text += f" (not counted: {', '.join(self.uncounted_layers)})"
        return text


# Convolutions and dense layers: one multiply-add per kernel entry per output
# position (a Conv2D kernel is kh x kw x in/groups x out, a depthwise one
# kh x kw x channels x multiplier).
_PER_OUTPUT_POSITION = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
# Transposed convolutions: one multiply-add per kernel entry per input position.
_PER_INPUT_POSITION = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
# Left out by convention, as in the papers: normalization, lookups and
# per-channel scales (one multiply per activation, not per weight).
_NOT_COUNTED = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Normalization,
    keras.layers.Embedding,
    LayerScale,
)


def _einsum_dense_macs(layer, input_shape):
    """One multiply-add per output entry per contracted kernel entry."""
    inputs_and_kernel, output_spec = layer.equation.split("->")
    kernel_spec = inputs_and_kernel.split(",")[1]
    output_shape = layer.compute_output_shape(tuple(input_shape))[1:]
    if any(size is None for size in output_shape):
        return None
    contracted = math.prod(
        size for letter, size in zip(kernel_spec, layer.kernel.shape) if letter not in output_spec
    )
    return math.prod(output_shape) * contracted


def _attention_macs(layer):
    """`MultiHeadAttention`: its four projections and its two matrix products
    (scores, and the weighted sum of values), from the shapes it was built on.
    """
    shapes = (layer.get_build_config() or {}).get("shapes_dict", {})
    query_shape, value_shape = shapes.get("query_shape"), shapes.get("value_shape")
    if query_shape is None or value_shape is None:
        return None
    key_shape = shapes.get("key_shape") or value_shape
    query_positions = math.prod(query_shape[1:-1]) if None not in query_shape[1:] else None
    key_positions = math.prod(key_shape[1:-1]) if None not in key_shape[1:] else None
    if query_positions is None or key_positions is None:
        return None
    value_dim = layer.value_dim or layer.key_dim
    projections = (
        query_positions * math.prod(layer.query_dense.kernel.shape)
        + key_positions * math.prod(layer.key_dense.kernel.shape)
        + key_positions * math.prod(layer.value_dense.kernel.shape)
        + query_positions * math.prod(layer.output_dense.kernel.shape)
    )
    products = query_positions * key_positions * layer.num_heads * (layer.key_dim + value_dim)
    return projections + products


def _layer_macs(layer):
    """Multiply-adds of one call of `layer`: an int, None if its input size is
    unknown, or NotImplemented for a layer type with weights this does not know.

    Normalization, activations, pooling and additions are not counted, as in
    the papers.
    """
    known = _PER_OUTPUT_POSITION + _PER_INPUT_POSITION + _SEPARABLE + (keras.layers.EinsumDense,)
    if not isinstance(layer, known):
        if layer.weights and not isinstance(layer, _NOT_COUNTED):
            return NotImplemented
        return 0
    input_shape = (layer.get_build_config() or {}).get("input_shape")
    if input_shape is None:
        return None
    output_shape = layer.compute_output_shape(tuple(input_shape))
    input_positions, output_positions = input_shape[1:-1], output_shape[1:-1]
    if any(size is None for size in (*input_positions, *output_positions)):
        return None
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_dense_macs(layer, input_shape)
    if isinstance(layer, _SEPARABLE):
        kernel_size = math.prod(layer.depthwise_kernel.shape) + math.prod(
            layer.pointwise_kernel.shape
        )
        return math.prod(output_positions) * kernel_size
    positions = input_positions if isinstance(layer, _PER_INPUT_POSITION) else output_positions
    return math.prod(positions) * math.prod(layer.kernel.shape)


def model_info(model):
    """Returns the parameters and multiply-adds of `model` as a `ModelInfo`.

    Multiply-adds are counted at the input size the model was built with,
    from the shapes each layer was built on, so the model need not run:
    dense layers (`Dense`, `EinsumDense`), convolutions (1D to 3D, grouped,
    depthwise, separable, transposed) and the two matrix products of
    `MultiHeadAttention` (as the ViT papers count them). A layer called more
    than once is counted once; layers with weights of other types are listed
    in `uncounted_layers`.

    Example:

    >>> import kerasrecipes as kr
    >>> info = kr.model_info(kr.create_model("resnet20"))
    >>> info.params, round(info.flops / 1e6, 1)
    (271098, 40.6)
    """
    flops, uncounted = 0, []
    layers = _compat.sublayers(model, recursive=True)
    attention = [layer for layer in layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    # An attention layer is counted as a whole: its projections are built on
    # shapes with unknown sequence lengths.
    inside_attention = {
        id(sublayer) for layer in attention for sublayer in _compat.sublayers(layer, recursive=True)
    }
    per_layer = [
        (layer, _layer_macs(layer))
        for layer in layers
        if not _compat.has_sublayers(layer) and id(layer) not in inside_attention
    ]
    per_layer += [(layer, _attention_macs(layer)) for layer in attention]
    for layer, macs in per_layer:
        if macs is NotImplemented:
            uncounted.append(layer.name)
        elif macs is None or flops is None:
            flops = None
        else:
            flops += macs
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    input_shape = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else ()
    return ModelInfo(
        name=model.name,
        params=model.count_params(),
        trainable_params=int(trainable),
        flops=flops,
        input_shape=input_shape,
        uncounted_layers=tuple(uncounted),
    )
