"""ConvNeXt-T/S/B/L/XL (Liu et al. 2022, "A ConvNet for the 2020s", arXiv:2201.03545).

A 4x4/4 "patchify" stem with LayerNorm, four stages of ConvNeXt blocks with
a LayerNorm and 2x2/2 convolution opening each stage after the first, then
global average pooling, a LayerNorm and the classifier (Sec. 2 and Table 9
of the paper).

Variable-for-variable compatible with `keras.applications.ConvNeXtTiny` ..
`ConvNeXtXLarge`, so `weights="imagenet"` ports their weights (the Base,
Large and XLarge ones were pre-trained on ImageNet-21k and fine-tuned on
ImageNet-1k). As there, the model takes 0-255 RGB inputs and normalizes them
itself (`stem_normalize`); `preprocessing` swaps in another scaling (a timm
checkpoint's mean and std, `kerasrecipes.timm.convnext`).
"""

import keras

from kerasrecipes.cards import FeatureTap, PretrainedWeights, register_model, stage_blocks
from kerasrecipes.layers import ConvNeXtBlock, drop_path_schedule
from kerasrecipes.layers.convnext import CONVNEXT_INITIALIZER
from kerasrecipes.layers.normalization import LayerNormalization
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

PAPER = "Liu et al. 2022, A ConvNet for the 2020s"
# Sec. 3 of the paper: blocks per stage and channels per stage.
VARIANTS = {
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnext_large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "convnext_xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}
KERAS_TWINS = {
    "convnext_tiny": "ConvNeXtTiny",
    "convnext_small": "ConvNeXtSmall",
    "convnext_base": "ConvNeXtBase",
    "convnext_large": "ConvNeXtLarge",
    "convnext_xlarge": "ConvNeXtXLarge",
}
NORM_EPSILON = 1e-6
# ImageNet mean and variance on the 0-255 scale, as keras.applications' PreStem.
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_VARIANCE_255 = ((0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2)


def _layer_norm(name):
    return LayerNormalization(epsilon=NORM_EPSILON, name=name)


def _conv(filters, size, name):
    return keras.layers.Conv2D(
        filters, size, strides=size, kernel_initializer=CONVNEXT_INITIALIZER, name=name
    )


def convnext(
    depths,
    widths,
    *,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    layer_scale_init=1e-6,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing=None,
    name="convnext",
    keras_twin=None,
):
    """Builds a ConvNeXt from blocks per stage and channels per stage (Liu et al. 2022).

    Layer names: `stem_normalize`, `stem_conv`, `stem_norm`; for stages 2-4
    `stage{i}_downsample_norm` and `stage{i}_downsample_conv`; the blocks
    `stage{i}_block{j}`; then `head_pool`, `post_norm` (the final LayerNorm,
    after the pooling as in the paper; pretrained, so part of the backbone)
    and `head_dense`.

    Args:
        depths: four ints, blocks per stage, e.g. (3, 3, 9, 3) for ConvNeXt-T.
        widths: four ints, channels per stage, e.g. (96, 192, 384, 768).
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 32x32. Defaults to (224, 224, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top; the final
            LayerNorm follows the pooling, or applies to the feature map when
            pooling is None (as keras.applications). Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        drop_path_rate: float, stochastic depth of the deepest block, rising
            linearly from 0 over all blocks (`drop_path_schedule`). The paper
            trains ImageNet-1k with 0.1 (T), 0.4 (S), 0.5 (B, L). Defaults to 0.0.
        layer_scale_init: float, initial LayerScale value, or None for no
            LayerScale (such a model cannot take the ImageNet weights). Defaults to 1e-6.
        weights: None, "imagenet" (needs `keras_twin`) or the path of a
            .weights.h5 / .keras file. Defaults to None.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and
            standardize them with the ImageNet mean and standard deviation
            inside the model (`stem_normalize`, as keras.applications); False
            leaves that layer out ("torch"-preprocessed input). Defaults to True.
        preprocessing: None for keras.applications' `stem_normalize` above, or
            an `ImagePreprocessing` mode (or {"mean": [...], "std": [...]}) that
            `stem_preprocess` applies instead, e.g. a timm checkpoint's mean and
            std. Defaults to None.
        name: model name. Defaults to "convnext".
        keras_twin: name of the keras.applications function with the same
            variables, used for `weights="imagenet"`. Defaults to None.

    Example:

    >>> model = convnext((1, 1, 2, 1), (32, 64, 128, 256), input_shape=(64, 64, 3), num_classes=4)
    >>> model.output_shape
    (None, 4)
    """
    if len(depths) != 4 or len(widths) != 4 or min(depths) < 1 or min(widths) < 1:
        raise ValueError(
            f"{name}: depths and widths must be four ints >= 1 each. "
            f"Received: depths={depths}, widths={widths}"
        )
    if weights == "imagenet" and layer_scale_init is None:
        raise ValueError(
            f"{name}: the ImageNet weights include LayerScale; "
            "layer_scale_init=None cannot take them. Pass a float (1e-6) or weights=None."
        )
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=32,
    )
    if preprocessing is None:
        inputs = x = keras.Input(shape=input_shape, name="input")
        if include_preprocessing:
            x = keras.layers.Normalization(
                mean=IMAGENET_MEAN_255, variance=IMAGENET_VARIANCE_255, name="stem_normalize"
            )(x)
    else:
        inputs, x = model_inputs(
            input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
        )
    x = _conv(widths[0], 4, "stem_conv")(x)
    x = _layer_norm("stem_norm")(x)

    rates = drop_path_schedule(drop_path_rate, sum(depths))
    block_index = 0
    for stage, (depth, width) in enumerate(zip(depths, widths), start=1):
        if stage > 1:
            x = _layer_norm(f"stage{stage}_downsample_norm")(x)
            x = _conv(width, 2, f"stage{stage}_downsample_conv")(x)
        for block in range(1, depth + 1):
            x = ConvNeXtBlock(
                layer_scale_init=layer_scale_init,
                drop_path_rate=rates[block_index],
                norm_epsilon=NORM_EPSILON,
                name=f"stage{stage}_block{block}",
            )(x)
            block_index += 1

    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        keras_twin=keras_twin,
        pooled_norm=_layer_norm("post_norm"),
        dense_initializer=CONVNEXT_INITIALIZER,
    )


def _variant(name, kwargs):
    depths, widths = VARIANTS[name]
    return convnext(depths, widths, **{"name": name, "keras_twin": KERAS_TWINS[name], **kwargs})


def _register(name):
    depths, widths = VARIANTS[name]
    return register_model(
        name,
        family="convnext",
        bn_momentum=None,
        paper=PAPER,
        default_input_shape=(224, 224, 3),
        min_input_size=32,
        variant={"depths": depths, "widths": widths},
        pretrained={"imagenet": PretrainedWeights(KERAS_TWINS[name], "torch", 224, "convnext")},
        blocks=stage_blocks(depths),
        feature_taps=tuple(
            FeatureTap(f"stage{stage}_block{depth}", width, 2 ** (stage + 1))
            for stage, (depth, width) in enumerate(zip(depths, widths), start=1)
        ),
        heavy=name != "convnext_tiny",
        depthwise=True,
    )


@_register("convnext_tiny")
def convnext_tiny(**kwargs):
    """ConvNeXt-T: 28.6M parameters, 4.5G multiply-adds at 224 (Table 1)."""
    return _variant("convnext_tiny", kwargs)


@_register("convnext_small")
def convnext_small(**kwargs):
    """ConvNeXt-S: 50.2M parameters, 8.7G multiply-adds at 224 (Table 1)."""
    return _variant("convnext_small", kwargs)


@_register("convnext_base")
def convnext_base(**kwargs):
    """ConvNeXt-B: 88.6M parameters, 15.4G multiply-adds at 224 (Table 1)."""
    return _variant("convnext_base", kwargs)


@_register("convnext_large")
def convnext_large(**kwargs):
    """ConvNeXt-L: 197.8M parameters, 34.4G multiply-adds at 224 (Table 1)."""
    return _variant("convnext_large", kwargs)


@_register("convnext_xlarge")
def convnext_xlarge(**kwargs):
    """ConvNeXt-XL: 350.2M parameters, 60.9G multiply-adds at 224 (Table 1)."""
    return _variant("convnext_xlarge", kwargs)
