"""timm's EfficientNet-B0 to B7: `tf_efficientnet_b*` and `efficientnet_b*`, with their tags.

Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks" (arXiv:1905.11946). timm has two sets of B0..B7 weights:
`tf_efficientnet_b*` are the reference TensorFlow weights (`in1k`, AutoAugment
`aa_`, AdvProp `ap_`, Noisy Student `ns_jft_`) ported to PyTorch with
TensorFlow's "same" padding and BatchNorm epsilon 1e-3: that is
keras.applications' network and our `efficientnet_b*` builders' default.
`efficientnet_b*` are timm's own PyTorch-trained weights (`ra_`, `ra4_`, ...),
whose strided convolutions pad k // 2 on every side and whose BatchNorm
epsilon is 1e-5: our builders' `padding="symmetric"` and `bn_epsilon=1e-5`.
Both use the paper's width and depth coefficients and the same rounding of
channels (multiples of 8) and blocks (rounded up) as keras.applications. The
one other difference is the input: keras.applications' model normalizes it
inside with ImageNet's mean and std, where a timm checkpoint states its own
(ImageNet's, or [-1, 1] for the AdvProp and some Noisy Student weights),
given to our builders' `preprocessing`. The keys are those of timm's
MobileNetV2 (the same `EfficientNet` class; `kerasrecipes.timm.mobilenet_v2`).
"""

from kerasrecipes.timm import mobilenet_v2
from kerasrecipes.timm.convert import Architecture

VARIANTS = range(8)
# The reference TensorFlow network (our builders' defaults, stated so a conflicting argument
# is an error), and timm's PyTorch one.
TF_OPTIONS = {"padding": "same", "bn_epsilon": 1e-3}
TORCH_OPTIONS = {"padding": "symmetric", "bn_epsilon": 1e-5}


def convert(loader, model, architecture):
    """timm keys `conv_stem`, `bn1`, `blocks.{s}.{b}.*`, `conv_head`, `bn2`, `classifier` into
    `stem_*`, `stage{s+1}_block{b+1}`, `post_*`, `head_dense` (as timm's MobileNetV2)."""
    mobilenet_v2.convert(loader, model, architecture)


ARCHITECTURES = {
    **{
        f"tf_efficientnet_b{index}": Architecture(f"efficientnet_b{index}", convert, TF_OPTIONS)
        for index in VARIANTS
    },
    **{
        f"efficientnet_b{index}": Architecture(f"efficientnet_b{index}", convert, TORCH_OPTIONS)
        for index in VARIANTS
    },
}

_NO_B8 = (
    "our EfficientNets are B0..B7 (keras.applications'); {name} (width {width}, depth "
    "{depth}, {size} px) has no registered model"
)
_OTHER = {
    "pruned": "its channel counts were pruned per layer, which no width coefficient gives",
    "gn": "it uses GroupNorm where our EfficientNet has BatchNorm",
    "g8_gn": "its depthwise convolutions are grouped (8 channels a group), its norms GroupNorm",
    "g16_evos": "its depthwise convolutions are grouped (16 channels a group), its norms EvoNorm",
    "blur": "it downsamples with anti-aliasing (blur) pooling",
    "cc": "its convolutions are CondConv mixtures of experts",
    "lite": "EfficientNet-Lite drops squeeze-and-excitation, uses ReLU6 and keeps the stem and "
    "head unscaled",
    "edge": "EfficientNet-EdgeTPU has fused (full kxk) convolutions and ReLU",
    "x": "EfficientNet-X/H has fused (full kxk) convolutions with ReLU in its second and "
    "third stages",
}

UNSUPPORTED = {
    **{
        f"{prefix}efficientnet_{name}": _NO_B8.format(
            name=name.upper(), width=width, depth=depth, size=size
        )
        for prefix in ("", "tf_")
        for name, width, depth, size in (("b8", 2.2, 3.6, 672), ("l2", 4.3, 5.3, 800))
    },
    **{f"efficientnet_b{i}_pruned": _OTHER["pruned"] for i in (1, 2, 3)},
    **{"efficientnet_es_pruned": _OTHER["pruned"], "efficientnet_el_pruned": _OTHER["pruned"]},
    "efficientnet_b0_gn": _OTHER["gn"],
    "efficientnet_b3_gn": _OTHER["gn"],
    "efficientnet_b0_g8_gn": _OTHER["g8_gn"],
    "efficientnet_b3_g8_gn": _OTHER["g8_gn"],
    "efficientnet_b0_g16_evos": _OTHER["g16_evos"],
    "efficientnet_blur_b0": _OTHER["blur"],
    **{
        f"{prefix}efficientnet_cc_{name}": _OTHER["cc"]
        for prefix in ("", "tf_")
        for name in ("b0_4e", "b0_8e", "b1_8e")
    },
    **{f"{prefix}efficientnet_lite{i}": _OTHER["lite"] for prefix in ("", "tf_") for i in range(5)},
    **{
        f"{prefix}efficientnet_{size}": _OTHER["edge"]
        for prefix in ("", "tf_")
        for size in ("es", "em", "el")
    },
    **{
        name: _OTHER["x"]
        for name in ("efficientnet_x_b3", "efficientnet_x_b5", "efficientnet_h_b5")
    },
}
