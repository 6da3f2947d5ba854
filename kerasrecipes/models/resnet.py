"""ResNets: the CIFAR family (depth 6n+2) and the ImageNet family (18 to 152 layers).

He et al. 2015, "Deep Residual Learning for Image Recognition"
(arXiv:1512.03385): Table 1 for the ImageNet networks, Sec. 4.2 and Table 6
for the CIFAR-10 ones. `preact=True` gives the pre-activation variant of He
et al. 2016, "Identity Mappings in Deep Residual Networks".

ResNet-50/101/152 are variable-for-variable compatible with
`keras.applications.ResNet50/101/152` (biases in the convolutions, stride in
the first 1x1 convolution), so `weights="imagenet"` ports their weights.
Those weights expect Keras' ResNet preprocessing (RGB 0-255 to BGR with the
ImageNet mean subtracted, "caffe" style), which the model applies itself
(`include_preprocessing=True`, the default), so it takes RGB images in [0, 255].
"""

import keras

from kerasrecipes.cards import (
    FeatureTap,
    PretrainedWeights,
    model_card,
    register_model,
    stage_blocks,
)
from kerasrecipes.layers import BasicBlock, BottleneckBlock, drop_path_schedule
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.residual import resolve_shortcut
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}

CIFAR_STAGE_FILTERS = (16, 32, 64)
CIFAR_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition, Sec. 4.2"
IMAGENET_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition, Table 1"

# Table 1 of the paper: blocks per stage for each depth.
IMAGENET_VARIANTS = {
    "resnet18": {"block": "basic", "blocks_per_stage": (2, 2, 2, 2), "use_bias": False},
    # timm's resnet26: ResNet-50's bottleneck blocks, two per stage.
    "resnet26": {"block": "bottleneck", "blocks_per_stage": (2, 2, 2, 2), "use_bias": False},
    "resnet34": {"block": "basic", "blocks_per_stage": (3, 4, 6, 3), "use_bias": False},
    # Biases in the convolutions only to stay variable-compatible with keras.applications.
    "resnet50": {"block": "bottleneck", "blocks_per_stage": (3, 4, 6, 3), "use_bias": True},
    "resnet101": {"block": "bottleneck", "blocks_per_stage": (3, 4, 23, 3), "use_bias": True},
    "resnet152": {"block": "bottleneck", "blocks_per_stage": (3, 8, 36, 3), "use_bias": True},
}
KERAS_TWINS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
IMAGENET_FILTERS = (64, 128, 256, 512)
# The ResNets whose train step and .keras round trip run only with -m slow (`heavy` on the card).
HEAVY = {"resnet101", "resnet110", "resnet152", "resnet1202"}


def residual_stages(
    x,
    *,
    block,
    stage_filters,
    blocks_per_stage,
    first_stage_strides,
    shortcut,
    preact,
    drop_path_rate,
    use_bias,
    zero_init_residual=True,
    padding="same",
    stride_in_3x3=False,
):
    """Stacks the residual stages: `stage{i}_block{j}` layers, then `post_*` if pre-activation.

    The first block of every stage after the first halves the resolution;
    a block whose shape changes gets the `shortcut` kind, the others identity
    ("none": no block has a shortcut). Stochastic-depth rates rise linearly
    over all blocks (`drop_path_schedule`). `padding` and `stride_in_3x3` go
    to the blocks (`BottleneckBlock` alone takes the latter).
    """
    if shortcut == "none" and drop_path_rate:
        # Checked here, once for the model, before a deep block names its scheduled share.
        raise ValueError(
            f"drop_path_rate={drop_path_rate} needs a shortcut; a plain network "
            "(shortcut='none') would drop whole blocks' output. Pass drop_path_rate=0."
        )
    block_class = BLOCKS[block]
    block_options = {"padding": padding}
    if block_class is BottleneckBlock:
        block_options["stride_in_3x3"] = stride_in_3x3
    rates = drop_path_schedule(drop_path_rate, sum(blocks_per_stage))
    in_channels = x.shape[-1]
    block_index = 0
    for stage, (filters, num_blocks) in enumerate(zip(stage_filters, blocks_per_stage), start=1):
        for block_number in range(1, num_blocks + 1):
            strides = 1
            if block_number == 1:
                strides = first_stage_strides if stage == 1 else 2
            out_channels = filters * block_class.expansion
            changes_shape = strides != 1 or in_channels != out_channels
            x = block_class(
                filters,
                strides=strides,
                shortcut=shortcut if changes_shape or shortcut == "none" else "identity",
                preact=preact,
                drop_path_rate=rates[block_index],
                use_bias=use_bias,
                zero_init_residual=zero_init_residual,
                **block_options,
                name=f"stage{stage}_block{block_number}",
            )(x)
            in_channels = out_channels
            block_index += 1
    if preact:
        x = batch_norm("post_bn")(x)
        x = keras.layers.ReLU(name="post_relu")(x)
    return x


def cifar_resnet(
    depth,
    *,
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    weights=None,
    shortcut="zero_pad",
    preact=False,
    zero_init_residual=True,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="unit",
    name=None,
):
    """Builds the CIFAR-10 ResNet of any depth 6n+2 (He et al. 2015, Sec. 4.2).

    A 3x3 convolution with 16 filters, then three stages of n basic blocks
    with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps, global average
    pooling and the classifier: 6n+2 weighted layers. The paper uses the
    zero-padding shortcut (option A) on CIFAR, our default.

    Args:
        depth: int of the form 6n+2 (20, 32, 44, 56, 110, 1202, ...).
        num_classes: int, classes of the classifier. Defaults to 10.
        input_shape: (height, width, channels). Defaults to (32, 32, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        drop_path_rate: float, stochastic depth of the deepest block. Defaults to 0.0.
        weights: None or the path of a .weights.h5 / .keras file. Defaults to None.
        shortcut: "zero_pad" (option A, alias "A") or "projection" (option B,
            alias "B") for the blocks that change shape, or "none" for the
            paper's plain network of the same depth (no shortcut in any block;
            the plain-20 to plain-56 of Fig. 6). Defaults to "zero_pad".
        preact: bool, pre-activation blocks (He et al. 2016). Defaults to False.
        zero_init_residual: bool, start each block's last BatchNorm at gamma = 0
            so every block starts as the identity (Goyal et al. 2017; timm's
            default). False gives the paper's initialization. Defaults to True.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "unit" ([0, 1]).
        name: model name. Defaults to f"resnet{depth}", or f"plain{depth}"
            without shortcuts.

    Example:

    >>> model = cifar_resnet(depth=20)
    >>> round(model.count_params() / 1e6, 2)
    0.27
    >>> cifar_resnet(depth=20, shortcut="none").name
    'plain20'
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            "cifar_resnet: depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202, ...). "
            f"Received: depth={depth!r}"
        )
    shortcut = resolve_shortcut(shortcut)
    name = name or (f"plain{depth}" if shortcut == "none" else f"resnet{depth}")
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=4,
    )
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    x = keras.layers.Conv2D(
        CIFAR_STAGE_FILTERS[0],
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="stem_conv",
    )(x)
    if not preact:
        x = batch_norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
    num_blocks = (depth - 2) // 6
    x = residual_stages(
        x,
        block="basic",
        stage_filters=CIFAR_STAGE_FILTERS,
        blocks_per_stage=(num_blocks,) * 3,
        first_stage_strides=1,
        shortcut=shortcut,
        preact=preact,
        drop_path_rate=drop_path_rate,
        use_bias=False,
        zero_init_residual=zero_init_residual,
    )
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
    )


def resnet(
    blocks_per_stage,
    *,
    block="bottleneck",
    use_bias=False,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    weights=None,
    shortcut="projection",
    preact=False,
    zero_init_residual=True,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="unit",
    name="resnet",
    keras_twin=None,
    padding="same",
    stride_in_3x3=False,
):
    """Builds an ImageNet ResNet (He et al. 2015, Table 1).

    Stem: 7x7/2 convolution and 3x3/2 max pooling (explicit zero padding, as
    keras.applications); four stages with 64, 128, 256 and 512 base filters,
    the last three starting with a stride-2 block; then the head.

    Args:
        blocks_per_stage: four ints, e.g. (3, 4, 6, 3) for ResNet-50.
        block: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1, x4 channels).
            Defaults to "bottleneck".
        use_bias: bool, biases in the convolutions. Defaults to False.
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 32x32. Defaults to (224, 224, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        drop_path_rate: float, stochastic depth of the deepest block. Defaults to 0.0.
        weights: None, "imagenet" (needs `keras_twin`) or the path of a
            .weights.h5 / .keras file. Defaults to None.
        shortcut: "projection" (option B) or "zero_pad" (option A) for the
            blocks that change shape, or "none" for the plain network of the
            same depth (the paper's plain-18/34, Table 2). Defaults to "projection".
        preact: bool, pre-activation blocks (He et al. 2016). Defaults to False.
        zero_init_residual: bool, start each block's last BatchNorm at gamma = 0
            so every block starts as the identity (Goyal et al. 2017; timm's
            default). False gives the paper's initialization. Defaults to True.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode; the registered
            variants pass their card's ("caffe" for the ImageNet weights).
            Defaults to "unit".
        name: model name. Defaults to "resnet".
        keras_twin: name of the keras.applications function with the same
            variables, used for `weights="imagenet"`. Defaults to None.
        padding: "same" (TensorFlow's, keras.applications') or "symmetric"
            (PyTorch's) for the blocks' strided 3x3 convolutions; the stem
            pads explicitly, as both do. Defaults to "same".
        stride_in_3x3: bool, bottleneck blocks stride in their 3x3
            convolution ("v1.5", torchvision's and timm's) instead of the
            first 1x1 (the paper's and keras.applications'). Defaults to False.

    Example:

    >>> model = resnet((2, 2, 2, 2), block="basic", input_shape=(64, 64, 3), num_classes=5)
    >>> model.output_shape
    (None, 5)
    """
    if block not in BLOCKS:
        raise ValueError(f"{name}: block must be one of {tuple(BLOCKS)}. Received: block={block!r}")
    if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
        raise ValueError(
            f"{name}: blocks_per_stage must be four ints >= 1. "
            f"Received: blocks_per_stage={blocks_per_stage}"
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
    shortcut = resolve_shortcut(shortcut)
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        64, 7, strides=2, use_bias=use_bias, kernel_initializer="he_normal", name="stem_conv"
    )(x)
    if not preact:
        x = batch_norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    x = residual_stages(
        x,
        block=block,
        stage_filters=IMAGENET_FILTERS,
        blocks_per_stage=tuple(blocks_per_stage),
        first_stage_strides=1,
        shortcut=shortcut,
        preact=preact,
        drop_path_rate=drop_path_rate,
        use_bias=use_bias,
        zero_init_residual=zero_init_residual,
        padding=padding,
        stride_in_3x3=stride_in_3x3,
    )
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
    )


def _imagenet_resnet(variant, kwargs):
    return resnet(
        **{
            "name": variant,
            "keras_twin": KERAS_TWINS.get(variant),
            "preprocessing": model_card(variant).preprocessing,
            **IMAGENET_VARIANTS[variant],
            **kwargs,
        }
    )


def _cifar_resnet(depth, kwargs):
    name = f"resnet{depth}"
    return cifar_resnet(depth=depth, **{"preprocessing": model_card(name).preprocessing, **kwargs})


def _register_cifar(name):
    depth = int(name.removeprefix("resnet"))
    blocks = ((depth - 2) // 6,) * 3
    return register_model(
        name,
        family="resnet",
        paper=CIFAR_PAPER,
        default_input_shape=(32, 32, 3),
        min_input_size=4,
        variant={"depth": depth, "block": "basic", "blocks_per_stage": blocks},
        blocks=stage_blocks(blocks),
        feature_taps=tuple(
            FeatureTap(f"stage{stage}_block{count}", filters, 2 ** (stage - 1))
            for stage, (count, filters) in enumerate(zip(blocks, CIFAR_STAGE_FILTERS), start=1)
        ),
        heavy=name in HEAVY,
    )


def _register_imagenet(name):
    variant = IMAGENET_VARIANTS[name]
    blocks = variant["blocks_per_stage"]
    expansion = BLOCKS[variant["block"]].expansion
    pretrained = {}
    if name in KERAS_TWINS:
        pretrained["imagenet"] = PretrainedWeights(KERAS_TWINS[name], "caffe", 224, "resnet")
    return register_model(
        name,
        family="resnet",
        paper=IMAGENET_PAPER,
        default_input_shape=(224, 224, 3),
        min_input_size=32,
        variant=variant,
        pretrained=pretrained,
        blocks=stage_blocks(blocks),
        feature_taps=(FeatureTap("stem_relu", 64, 2),)
        + tuple(
            FeatureTap(f"stage{stage}_block{count}", filters * expansion, 2 ** (stage + 1))
            for stage, (count, filters) in enumerate(zip(blocks, IMAGENET_FILTERS), start=1)
        ),
        heavy=name in HEAVY,
    )


@_register_cifar("resnet20")
def resnet20(**kwargs):
    """ResNet-20 for CIFAR-10: 0.27M parameters, 8.75% error in the paper (Table 6)."""
    return _cifar_resnet(20, kwargs)


@_register_cifar("resnet32")
def resnet32(**kwargs):
    """ResNet-32 for CIFAR-10: 0.46M parameters, 7.51% error in the paper (Table 6)."""
    return _cifar_resnet(32, kwargs)


@_register_cifar("resnet44")
def resnet44(**kwargs):
    """ResNet-44 for CIFAR-10: 0.66M parameters, 7.17% error in the paper (Table 6)."""
    return _cifar_resnet(44, kwargs)


@_register_cifar("resnet56")
def resnet56(**kwargs):
    """ResNet-56 for CIFAR-10: 0.85M parameters, 6.97% error in the paper (Table 6)."""
    return _cifar_resnet(56, kwargs)


@_register_cifar("resnet110")
def resnet110(**kwargs):
    """ResNet-110 for CIFAR-10: 1.7M parameters, 6.43% error in the paper (Table 6)."""
    return _cifar_resnet(110, kwargs)


@_register_cifar("resnet1202")
def resnet1202(**kwargs):
    """ResNet-1202 for CIFAR-10: 19.4M parameters, 7.93% error in the paper (overfits)."""
    return _cifar_resnet(1202, kwargs)


@_register_imagenet("resnet18")
def resnet18(**kwargs):
    """ResNet-18 (basic blocks): 11.7M parameters, 1.8G multiply-adds at 224."""
    return _imagenet_resnet("resnet18", kwargs)


@_register_imagenet("resnet26")
def resnet26(**kwargs):
    """ResNet-26 (bottleneck, 2 per stage): 16.0M parameters, 2.1G multiply-adds at 224.

    timm's resnet26 has the same parameters and 2.4G: its stride sits in the 3x3 convolution.
    """
    return _imagenet_resnet("resnet26", kwargs)


@_register_imagenet("resnet34")
def resnet34(**kwargs):
    """ResNet-34 (basic blocks): 21.8M parameters, 3.6G multiply-adds at 224."""
    return _imagenet_resnet("resnet34", kwargs)


@_register_imagenet("resnet50")
def resnet50(**kwargs):
    """ResNet-50 (bottleneck): 25.6M parameters, 3.8G multiply-adds; ImageNet weights.

    Takes RGB images in [0, 255]; the model applies the weights' "caffe"
    preprocessing itself (`include_preprocessing=False` leaves it out).
    """
    return _imagenet_resnet("resnet50", kwargs)


@_register_imagenet("resnet101")
def resnet101(**kwargs):
    """ResNet-101 (bottleneck): 44.7M parameters, 7.6G multiply-adds; ImageNet weights."""
    return _imagenet_resnet("resnet101", kwargs)


@_register_imagenet("resnet152")
def resnet152(**kwargs):
    """ResNet-152 (bottleneck): 60.4M parameters, 11.3G multiply-adds; ImageNet weights."""
    return _imagenet_resnet("resnet152", kwargs)
