"""timm's ResNets (`resnet18` ... `resnet152`, with their `tv_`, `gluon_`, `a1_` ... tags).

timm's ResNet is torchvision's "v1.5" (Goyal et al. 2017): the stride of a
bottleneck block sits in its 3x3 convolution, and strided convolutions pad
k // 2 on every side (PyTorch), where keras.applications' ResNet50 ("v1")
strides in the first 1x1 and pads as TensorFlow's "same". Our `resnet`
builder has both as options, and no biases in the convolutions, as timm.
"""

from kerasrecipes.timm.convert import Architecture, numbered_blocks

OPTIONS = {"use_bias": False, "padding": "symmetric", "stride_in_3x3": True}
DEPTHS = (18, 26, 34, 50, 101, 152)


def convert(loader, model, architecture):
    """timm keys `conv1`, `bn1`, `layer{s}.{b}.*`, `fc` into our `stem_*`, `stage{s}_block{b}`,
    `head_dense`."""
    loader.conv(loader.layer("stem_conv"), "conv1")
    loader.batch_norm(loader.layer("stem_bn"), "bn1")
    for layer, stage, block in numbered_blocks(model):
        prefix = f"layer{stage}.{block - 1}"
        for index in (1, 2, 3):
            if hasattr(layer, f"conv{index}"):
                loader.conv(getattr(layer, f"conv{index}"), f"{prefix}.conv{index}")
                loader.batch_norm(getattr(layer, f"bn{index}"), f"{prefix}.bn{index}")
        if layer.shortcut_conv is not None:
            loader.conv(layer.shortcut_conv, f"{prefix}.downsample.0")
            loader.batch_norm(layer.shortcut_bn, f"{prefix}.downsample.1")
    loader.head("head_dense", "fc")


ARCHITECTURES = {
    f"resnet{depth}": Architecture(f"resnet{depth}", convert, OPTIONS) for depth in DEPTHS
}

UNSUPPORTED = {
    **{
        f"resnet{depth}{suffix}": f"its {what}; our resnet{depth} has the plain 7x7 stem and "
        f"strided 1x1 projections (timm's plain resnet{depth} weights load into it)"
        for depth in DEPTHS
        for suffix, what in (
            ("c", "deep 3x3 stem"),
            ("d", "deep 3x3 stem and average-pool downsampling (ResNet-D)"),
            ("s", "deep stem with wider channels"),
            ("t", "tiered deep stem and average-pool downsampling"),
        )
    },
}
