"""timm's Inception-v3 (`inception_v3`, tags `tv_in1k`, `tf_in1k`, `tf_adv_in1k`, `gluon_in1k`).

Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision" (arXiv:1512.00567). timm's network is torchvision's `Inception3`:
the same stem, modules and branch order as keras.applications' and ours
(`Conv2d_1a_3x3` ... `Conv2d_4a_3x3` are our `stem_conv1` ... `stem_conv5`;
`Mixed_5b` ... `Mixed_7c` our `stage{s}_block{b}`, the torchvision module
types A-E being ours of the same letters), with two differences our builder
has as options: every BatchNorm learns a scale (`bn_scale=True`), and the
branch average pools count their zero padding (`count_include_pad=True`:
PyTorch's `avg_pool2d(3, 1, padding=1)`). BatchNorm epsilon is 1e-3 in both.
The auxiliary classifier (`AuxLogits.*`, in the `tv_in1k` checkpoint) has no
counterpart in our network (it only helps training) and is left out.
"""

from kerasrecipes.timm.convert import Architecture

OPTIONS = {"bn_scale": True, "count_include_pad": True}

STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
# Our module `stage{s}_block{b}` -> timm's, per stage.
MODULES = (
    ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
# torchvision's names of each module type's convolutions, per branch and step as in
# `kerasrecipes.layers.inception` (None: a pooling step; a pair: side-by-side convolutions).
_A = (
    ("branch1x1",),
    ("branch5x5_1", "branch5x5_2"),
    ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    (None, "branch_pool"),
)
_B = (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), (None,))
_C = (
    ("branch1x1",),
    ("branch7x7_1", "branch7x7_2", "branch7x7_3"),
    tuple(f"branch7x7dbl_{k}" for k in range(1, 6)),
    (None, "branch_pool"),
)
_D = (
    ("branch3x3_1", "branch3x3_2"),
    tuple(f"branch7x7x3_{k}" for k in range(1, 5)),
    (None,),
)
_E = (
    ("branch1x1",),
    ("branch3x3_1", ("branch3x3_2a", "branch3x3_2b")),
    ("branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")),
    (None, "branch_pool"),
)
BRANCHES = {"5": _A, "6a": _B, "6": _C, "7a": _D, "7": _E}


def _branches(timm_module):
    """The table of torchvision names of `timm_module` (e.g. "Mixed_6a")."""
    suffix = timm_module.removeprefix("Mixed_")
    return BRANCHES.get(suffix) or BRANCHES[suffix[0]]


def _units(module, timm_module):
    """(our conv, our BatchNorm, timm prefix) for every unit of our `module`."""
    layers = {layer.name: layer for layer in module.unit_layers}
    for b, steps in enumerate(_branches(timm_module), start=1):
        for s, step in enumerate(steps, start=1):
            if step is None:
                continue
            pair = step if isinstance(step, tuple) else (step,)
            for p, timm_name in enumerate(pair):
                ours = f"branch{b}_step{s}{'ab'[p] if len(pair) > 1 else ''}"
                yield layers[f"{ours}_conv"], layers[f"{ours}_bn"], f"{timm_module}.{timm_name}"


def convert(loader, model, architecture):
    """timm keys `Conv2d_*`, `Mixed_*.branch*` (`.conv`, `.bn`) and `fc` into `stem_conv{k}`,
    `stem_bn{k}`, `stage{s}_block{b}` and `head_dense`."""
    for index, timm_name in enumerate(STEM, start=1):
        loader.conv(loader.layer(f"stem_conv{index}"), f"{timm_name}.conv")
        loader.batch_norm(loader.layer(f"stem_bn{index}"), f"{timm_name}.bn")
    for stage, modules in enumerate(MODULES, start=1):
        for block, timm_module in enumerate(modules, start=1):
            module = loader.layer(f"stage{stage}_block{block}")
            for conv, norm, prefix in _units(module, timm_module):
                loader.conv(conv, f"{prefix}.conv")
                loader.batch_norm(norm, f"{prefix}.bn")
    loader.head("head_dense", "fc")


ARCHITECTURES = {
    "inception_v3": Architecture(
        "inception_v3", convert, OPTIONS, ignored_prefixes=("AuxLogits.",)
    ),
}

UNSUPPORTED = {
    "inception_v4": "Inception-v4 (Szegedy et al. 2017) is another network; our builder is "
    "Inception-v3",
    "inception_resnet_v2": "Inception-ResNet-v2 (Szegedy et al. 2017) is another network; our "
    "builder is Inception-v3",
    **{
        f"inception_next_{size}": "InceptionNeXt (Yu et al. 2024) is a ConvNeXt with Inception "
        "depthwise convolutions, not an Inception-v3"
        for size in ("atto", "tiny", "small", "base")
    },
}
