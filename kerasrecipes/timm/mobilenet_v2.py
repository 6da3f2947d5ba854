"""timm's MobileNetV2s (`mobilenetv2_035` ... `mobilenetv2_140`, with their `ra_`, `lamb_` tags).

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
(arXiv:1801.04381). timm builds the paper's network (Table 2) with its
generic `EfficientNet` class: the same stages, the same width multiplier and
rounding of channels (to multiples of 8, the last 1x1 convolution only
growing) as keras.applications' MobileNetV2 and our `mobilenet_v2` builder,
whose `alpha` is timm's multiplier (`mobilenetv2_050` is alpha 0.5). What
differs is PyTorch's: strided convolutions pad k // 2 on every side where
keras.applications pads as TensorFlow's "same" (one more at the bottom and
right), BatchNorm's epsilon is 1e-5 where keras.applications uses 1e-3, and
the checkpoints take ImageNet's mean and std ("torch") where
keras.applications' weights take [-1, 1] ("tf"). Our builder's `padding`,
`bn_epsilon` and `preprocessing` arguments make the first network the second.

The key mapping, shared with timm's EfficientNets (`kerasrecipes.timm.efficientnet`):
`conv_stem`, `bn1` are our `stem_conv`, `stem_bn`; block `blocks.{s}.{b}` is
our `stage{s+1}_block{b+1}`, its `conv_pw`, `bn1` (expansion), `conv_dw`,
`bn2` (depthwise), `se.conv_reduce`, `se.conv_expand` and `conv_pwl`, `bn3`
(projection) our `expand_conv`, `expand_bn`, `depthwise_conv`,
`depthwise_bn`, `se`, `project_conv`, `project_bn`; a block without
expansion (timm's `DepthwiseSeparableConv`) names its depthwise pair
`conv_dw`, `bn1` and its projection `conv_pw`, `bn2`; `conv_head`, `bn2` and
`classifier` are our `post_conv`, `post_bn` and `head_dense`.
"""

from kerasrecipes.timm.convert import Architecture, numbered_blocks

# timm's suffix -> our `alpha` (every width timm has; weights: 0.5, 1.0 and 1.4).
ALPHAS = {"035": 0.35, "050": 0.5, "075": 0.75, "100": 1.0, "140": 1.4}
# PyTorch's padding and BatchNorm epsilon.
OPTIONS = {"padding": "symmetric", "bn_epsilon": 1e-5}


def convert_block(loader, block, prefix):
    """One `InvertedResidual` (or `MBConv`) from timm's block `prefix` (`blocks.{s}.{b}`)."""
    if block.expand_conv is None:  # timm's DepthwiseSeparableConv
        depthwise, project = ("conv_dw", "bn1"), ("conv_pw", "bn2")
    else:
        loader.conv(block.expand_conv, f"{prefix}.conv_pw")
        loader.batch_norm(block.expand_bn, f"{prefix}.bn1")
        depthwise, project = ("conv_dw", "bn2"), ("conv_pwl", "bn3")
    loader.depthwise(block.depthwise_conv, f"{prefix}.{depthwise[0]}")
    loader.batch_norm(block.depthwise_bn, f"{prefix}.{depthwise[1]}")
    if block.se is not None:
        loader.conv(block.se.reduce_conv, f"{prefix}.se.conv_reduce")
        loader.conv(block.se.expand_conv, f"{prefix}.se.conv_expand")
    loader.conv(block.project_conv, f"{prefix}.{project[0]}")
    loader.batch_norm(block.project_bn, f"{prefix}.{project[1]}")


def convert(loader, model, architecture):
    """timm keys `conv_stem`, `bn1`, `blocks.{s}.{b}.*`, `conv_head`, `bn2`, `classifier` into
    `stem_*`, `stage{s+1}_block{b+1}`, `post_*`, `head_dense`."""
    loader.conv(loader.layer("stem_conv"), "conv_stem")
    loader.batch_norm(loader.layer("stem_bn"), "bn1")
    for layer, stage, block in numbered_blocks(model):
        convert_block(loader, layer, f"blocks.{stage - 1}.{block - 1}")
    loader.conv(loader.layer("post_conv"), "conv_head")
    loader.batch_norm(loader.layer("post_bn"), "bn2")
    loader.head("head_dense", "classifier")


ARCHITECTURES = {
    f"mobilenetv2_{suffix}": Architecture("mobilenet_v2", convert, {"alpha": alpha, **OPTIONS})
    for suffix, alpha in ALPHAS.items()
}

UNSUPPORTED = {
    f"mobilenetv2_{suffix}": (
        f"it is timm's deeper variant (width {width}, depth {depth}: {depth}x the blocks of "
        "every stage but the first and last, a stem and last convolution kept at 32 and 1280 "
        "channels); our mobilenet_v2 has the paper's depth at every alpha (timm's "
        "mobilenetv2_050, _100 and _140 weights load into it)"
    )
    for suffix, width, depth in (("110d", 1.1, 1.2), ("120d", 1.2, 1.4))
}
