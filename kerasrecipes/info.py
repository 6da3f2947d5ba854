"""Model size and cost: parameters and multiply-adds at the model's input size."""

import dataclasses
import math

import keras


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Parameters and cost of a model.

    Attributes:
        name: the model's name.
        params: all parameters, BatchNorm moving statistics included
            (the figure `model.count_params()` and the papers give).
        trainable_params: the parameters an optimizer updates.
        flops: multiply-adds of one forward pass of one image at `input_shape`
            (the papers' "FLOPs"), counted over convolutions and dense layers;
            None when the input size is not fixed.
        input_shape: the input shape the figure is for, without the batch.
    """

    name: str
    params: int
    trainable_params: int
    flops: int | None
    input_shape: tuple

    def __str__(self):
        flops = (
            "unknown (input size not fixed)" if self.flops is None else f"{self.flops / 1e9:.3f}G"
        )
        return (
            f"{self.name}: {self.params:,} parameters ({self.trainable_params:,} trainable), "
            f"{flops} multiply-adds at {self.input_shape}"
        )


def _leaf_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False) if not layer._layers]


def _layer_macs(layer):
    """Multiply-adds of one call of `layer`, or None when its input size is unknown.

    Convolutions (any rank, grouped and depthwise included) and dense layers:
    each kernel entry (a Conv2D kernel is kh x kw x in/groups x out, a
    depthwise one kh x kw x channels x multiplier) costs one multiply-add
    per output position. Other layers (normalization, activations, pooling,
    additions) are not counted, as in the papers.
    """
    kernel_layers = (
        keras.layers.Dense,
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.DepthwiseConv2D,
    )
    if not isinstance(layer, kernel_layers) or not layer.built:
        return 0
    build_config = layer.get_build_config() or {}
    input_shape = build_config.get("input_shape")
    if input_shape is None:
        return None
    output_shape = layer.compute_output_shape(tuple(input_shape))
    positions = output_shape[1:-1]
    if any(size is None for size in positions):
        return None
    return math.prod(positions) * math.prod(layer.kernel.shape)


def model_info(model):
    """Returns the parameters and multiply-adds of `model` as a `ModelInfo`.

    Multiply-adds are counted at the input size the model was built with,
    from the shapes each layer was built on, so the model need not run. A
    layer called more than once is counted once.

    Example:

    >>> import kerasrecipes as kr
    >>> info = kr.model_info(kr.create_model("resnet20"))
    >>> info.params, round(info.flops / 1e6, 1)
    (271098, 40.6)
    """
    flops = 0
    for layer in _leaf_layers(model):
        macs = _layer_macs(layer)
        if macs is None:
            flops = None
            break
        flops += macs
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    input_shape = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else ()
    return ModelInfo(
        name=model.name,
        params=model.count_params(),
        trainable_params=int(trainable),
        flops=flops,
        input_shape=input_shape,
    )
