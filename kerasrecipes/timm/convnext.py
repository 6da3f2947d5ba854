"""timm's ConvNeXts (`convnext_tiny` ... `convnext_xlarge`, with their `fb_`, `in12k` ... tags).

Liu et al. 2022, "A ConvNet for the 2020s" (arXiv:2201.03545). timm's
ConvNeXt-T/S/B/L/XL are the paper's networks, layer for layer as our
`convnext` builder: the patchify stem `stem.0` (4x4/4 convolution) and
`stem.1` (LayerNorm) are our `stem_conv` and `stem_norm`; each stage after
the first opens with `stages.{s}.downsample.0` (LayerNorm) and `.1` (2x2/2
convolution), our `stage{s+1}_downsample_norm` and `_downsample_conv`; a
block `stages.{s}.blocks.{b}` is our `stage{s+1}_block{b+1}`, its `conv_dw`,
`norm`, `mlp.fc1`, `mlp.fc2` and LayerScale `gamma` our `depthwise_conv`,
`norm`, `pointwise_expand`, `pointwise_project` and `layer_scale`; the head's
`head.norm` (LayerNorm after the global pooling) and `head.fc` are our
`post_norm` and `head_dense`. Both use LayerNorm epsilon 1e-6 and the exact
GELU. Only the input scaling differs: our model normalizes its input as
keras.applications does, so the checkpoint's mean and std come through the
builder's `preprocessing` argument.
"""

from kerasrecipes.timm.convert import Architecture, numbered_blocks

# timm architecture -> our model.
MODELS = {
    f"convnext_{size}": f"convnext_{size}" for size in ("tiny", "small", "base", "large", "xlarge")
}


def convert(loader, model, architecture):
    """timm keys `stem.*`, `stages.{s}.*`, `head.*` into `stem_*`, `stage{s+1}_*`, `post_norm`,
    `head_dense`."""
    loader.conv(loader.layer("stem_conv"), "stem.0")
    loader.layer_norm(loader.layer("stem_norm"), "stem.1")
    for layer, stage, block in numbered_blocks(model):
        timm_stage = f"stages.{stage - 1}"
        if block == 1 and stage > 1:  # the stage opens with its downsampling
            norm = loader.layer(f"stage{stage}_downsample_norm")
            loader.layer_norm(norm, f"{timm_stage}.downsample.0")
            loader.conv(loader.layer(f"stage{stage}_downsample_conv"), f"{timm_stage}.downsample.1")
        prefix = f"{timm_stage}.blocks.{block - 1}"
        loader.depthwise(layer.depthwise_conv, f"{prefix}.conv_dw")
        loader.layer_norm(layer.norm, f"{prefix}.norm")
        loader.dense(layer.pointwise_expand, f"{prefix}.mlp.fc1")
        loader.dense(layer.pointwise_project, f"{prefix}.mlp.fc2")
        if layer.layer_scale is not None:
            loader.variable(layer.layer_scale.gamma, f"{prefix}.gamma")
    loader.layer_norm(loader.layer("post_norm"), "head.norm")
    loader.head("head_dense", "head.fc")


ARCHITECTURES = {timm_name: Architecture(ours, convert) for timm_name, ours in MODELS.items()}

_SMALLER = (
    "a smaller width and depth than the paper's T/S/B/L/XL, which are our ConvNeXts "
    "(timm's convnext_tiny ... convnext_xlarge weights load into them)"
)

UNSUPPORTED = {
    **{f"convnext_{size}": _SMALLER for size in ("atto", "femto", "pico", "nano")},
    **{
        f"convnext_{size}_ols": f"{_SMALLER}; and an overlapping tiered stem"
        for size in ("atto", "femto", "pico", "nano")
    },
    "convnext_atto_rms": f"{_SMALLER}; and RMSNorm in place of LayerNorm",
    "convnext_zepto_rms": f"{_SMALLER}; and a simplified RMS norm in place of LayerNorm",
    "convnext_zepto_rms_ols": f"{_SMALLER}; and a simplified RMS norm in place of LayerNorm",
    "convnext_tiny_hnf": "its head normalizes the feature map before the pooling "
    "(head_norm_first); our ConvNeXt pools first, as the paper (timm's convnext_tiny weights "
    "load into it)",
    "convnext_large_mlp": "a hidden fully connected layer in its head (the CLIP image tower); our "
    "ConvNeXt-L has the paper's linear classifier (timm's convnext_large weights load into it)",
    "convnext_xxlarge": "ConvNeXt-XXL (depths 3-4-30-3, widths 384 to 3072, LayerNorm epsilon "
    "1e-5); our largest ConvNeXt is the paper's XL",
    **{
        f"convnextv2_{size}": "ConvNeXt V2 (Woo et al. 2023): global response normalization in "
        "every block and no LayerScale; our ConvNeXt is V1"
        for size in ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large", "huge")
    },
}
