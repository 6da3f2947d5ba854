"""timm's ViT-Ti/S/B/16 (`vit_tiny_patch16_224` ..., `augreg` tags) and DeiT-Ti/S/B.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (arXiv:2010.11929);
the `augreg` checkpoints are Steiner et al. 2021, "How to train your ViT?"
(arXiv:2106.10270); DeiT is Touvron et al. 2021 (arXiv:2012.12877), the same
network trained on ImageNet-1k alone. timm's layout is our `vit` builder's:
`patch_embed.proj` (16x16/16 convolution), `cls_token` and `pos_embed` (class
token included) are our `stem_embed`'s `projection`, `class_token` and
`position_embedding`; a block `blocks.{b}` is our `stage1_block{b+1}`, its
`norm1`, `norm2`, `mlp.fc1` and `mlp.fc2` our `attention_norm`, `mlp_norm`,
`mlp_expand` and `mlp_project`; the final `norm` (over all tokens) and `head`
(on the class token) are our `post_norm` and `head_dense`. Both use
LayerNorm epsilon 1e-6 and the exact GELU, and scale attention logits by
1/sqrt(head width). timm's attention projects queries, keys and values with
one fused `attn.qkv` (rows q, k, v, each head after head); Keras'
`MultiHeadAttention` has one (width, heads, head width) kernel each, so the
matrix is split in three and reshaped; `attn.proj` becomes its output kernel
(heads, head width, width).

A checkpoint trained at 224 pixels (a 14x14 grid of patches) loaded into a
model built at another size gets its position embedding resampled to the
model's grid (`resample_position_embedding`), as timm does when it loads a
checkpoint into a model of another `img_size`: bicubic, antialiased, the
class token's embedding kept.
"""

import math

import numpy as np

from kerasrecipes.timm.convert import Architecture, numbered_blocks

# timm architecture -> our model: the augreg ViTs at 224 and 384, and DeiT (same network).
MODELS = {
    **{
        f"vit_{size}_patch16_{pixels}": f"vit_{size}16"
        for size in ("tiny", "small", "base")
        for pixels in (224, 384)
    },
    "deit_tiny_patch16_224": "vit_tiny16",
    "deit_small_patch16_224": "vit_small16",
    "deit_base_patch16_224": "vit_base16",
    "deit_base_patch16_384": "vit_base16",
}


def _cubic(x, a=-0.5):
    """Keys' cubic convolution kernel; a = -0.5 as PIL and PyTorch's antialiased bicubic."""
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def _resample_matrix(source, target):
    """The (target, source) matrix of PyTorch's `interpolate(mode="bicubic", antialias=True,
    align_corners=False)` along one axis: PIL's resampling, whose cubic widens by the
    downscaling factor and whose weights are renormalized over the taps inside the image."""
    scale = source / target
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    matrix = np.zeros((target, source))
    for row in range(target):
        center = scale * (row + 0.5)
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), source)
        weights = np.array(
            [_cubic((tap - center + 0.5) / filter_scale) for tap in range(low, high)]
        )
        if weights.sum():
            matrix[row, low:high] = weights / weights.sum()
    return matrix


def resample_position_embedding(embedding, target_grid, source_grid=None, num_prefix_tokens=1):
    """A position embedding resampled to another grid of patches, as timm's
    `resample_abs_pos_embed` (bicubic, antialiased, the prefix tokens kept).

    Args:
        embedding: array (1, num_prefix_tokens + rows * columns, dim).
        target_grid: (rows, columns) to resample to.
        source_grid: (rows, columns) of `embedding`, or None for a square grid.
        num_prefix_tokens: tokens before the patches (the class token). Defaults to 1.

    Returns:
        A float32 array (1, num_prefix_tokens + target rows * target columns, dim).
    """
    embedding = np.asarray(embedding)
    patches = embedding.shape[1] - num_prefix_tokens
    if source_grid is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(
                f"A position embedding of {patches} patches is not a square grid; pass "
                "its source_grid (rows, columns)."
            )
        source_grid = (side, side)
    source_grid, target_grid = tuple(source_grid), tuple(target_grid)
    if source_grid == target_grid:
        return embedding.astype("float32")
    grid = embedding[0, num_prefix_tokens:].astype("float64").reshape(*source_grid, -1)
    rows = _resample_matrix(source_grid[0], target_grid[0])
    columns = _resample_matrix(source_grid[1], target_grid[1])
    grid = np.einsum("ph,qw,hwc->pqc", rows, columns, grid).reshape(1, -1, grid.shape[-1])
    prefix = embedding[:, :num_prefix_tokens].astype("float64")
    return np.concatenate([prefix, grid], axis=1).astype("float32")


def _attention(loader, attention, prefix):
    """`MultiHeadAttention` from timm's fused `qkv` (3 * width, width) and `proj`."""
    heads, head_width = attention.num_heads, attention.key_dim
    weight = loader.take(f"{prefix}.qkv.weight")
    bias = loader.take(f"{prefix}.qkv.bias")
    width = weight.shape[1]
    if weight.shape[0] != 3 * heads * head_width:
        raise ValueError(
            f"{loader.name}: {prefix}.qkv.weight has shape {weight.shape}, but "
            f"{attention.path} has {heads} heads of width {head_width}. The model was built "
            "with other options than the checkpoint's; build it with "
            "kr.create_model(name, weights='timm:...')."
        )
    denses = (attention.query_dense, attention.key_dense, attention.value_dense)
    for index, dense in enumerate(denses):
        rows = slice(index * heads * head_width, (index + 1) * heads * head_width)
        key = f"{prefix}.qkv.weight"
        loader.assign(dense.kernel, weight[rows].T.reshape(width, heads, head_width), key)
        loader.assign(dense.bias, bias[rows].reshape(heads, head_width), f"{prefix}.qkv.bias")
    output = attention.output_dense
    loader.variable(
        output.kernel, f"{prefix}.proj.weight", lambda w: w.T.reshape(heads, head_width, -1)
    )
    loader.variable(output.bias, f"{prefix}.proj.bias")


def convert(loader, model, architecture):
    """timm keys `patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{b}.*`, `norm`, `head`
    into `stem_embed`, `stage1_block{b+1}`, `post_norm`, `head_dense`; the position embedding
    resampled to the model's grid of patches when it differs from the checkpoint's."""
    embed = loader.layer("stem_embed")
    loader.conv(embed.projection, "patch_embed.proj")
    loader.variable(embed.class_token, "cls_token")
    loader.variable(
        embed.position_embedding,
        "pos_embed",
        lambda value: resample_position_embedding(value, embed.position_grid),
    )
    for layer, _, block in numbered_blocks(model):  # one stage
        prefix = f"blocks.{block - 1}"
        loader.layer_norm(layer.attention_norm, f"{prefix}.norm1")
        _attention(loader, layer.attention, f"{prefix}.attn")
        loader.layer_norm(layer.mlp_norm, f"{prefix}.norm2")
        loader.dense(layer.mlp_expand, f"{prefix}.mlp.fc1")
        loader.dense(layer.mlp_project, f"{prefix}.mlp.fc2")
        for scale, key in ((layer.attention_scale, "ls1"), (layer.mlp_scale, "ls2")):
            if scale is not None:
                loader.variable(scale.gamma, f"{prefix}.{key}.gamma")
    loader.layer_norm(loader.layer("post_norm"), "norm")
    loader.head("head_dense", "head")


ARCHITECTURES = {timm_name: Architecture(ours, convert) for timm_name, ours in MODELS.items()}

_OURS = (
    "our ViTs are ViT-Ti/S/B with 16x16 patches (timm's vit_*_patch16_224 weights load into them)"
)
_NO_CLASS_TOKEN = "no class token: it pools the patch tokens"

UNSUPPORTED = {
    "vit_base_patch16_224_miil": "no biases in its query, key and value projections "
    "(qkv_bias=False); our ViT's attention has them",
    **{
        f"vit_{size}_patch32_{pixels}": f"32x32 patches; {_OURS}"
        for size in ("small", "base", "large")
        for pixels in (224, 384)
    },
    **{f"vit_{size}_patch8_224": f"8x8 patches; {_OURS}" for size in ("small", "base")},
    **{
        f"vit_large_patch16_{pixels}": f"ViT-L (width 1024, 24 blocks); {_OURS}"
        for pixels in (224, 384)
    },
    **{
        name: f"the CLIP image tower: a LayerNorm before the encoder and epsilon 1e-5; {_OURS}"
        for name in (
            "vit_base_patch16_clip_224",
            "vit_base_patch16_clip_384",
            "vit_base_patch16_clip_quickgelu_224",
        )
    },
    "vit_base_patch16_gap_224": f"{_NO_CLASS_TOKEN} (global average pooling)",
    **{
        f"vit_base_patch16_siglip_{pixels}": f"{_NO_CLASS_TOKEN} (SigLIP's attention pooling)"
        for pixels in (224, 256, 384, 512)
    },
    **{
        f"vit_{size}_patch16_rope_224": "rotary position embeddings in its attention"
        for size in ("small", "base")
    },
    **{
        name: "a distillation token and a second classifier on it (DeiT's distilled "
        "models); timm's deit_*_patch16_224 weights load into our ViTs"
        for name in (
            "deit_tiny_distilled_patch16_224",
            "deit_small_distilled_patch16_224",
            "deit_base_distilled_patch16_224",
            "deit_base_distilled_patch16_384",
        )
    },
    **{
        f"deit3_{size}_patch16_{pixels}": "DeiT III: LayerScale in every block and no position "
        "embedding on the class token; our ViT adds one to it"
        for size in ("small", "medium", "base", "large")
        for pixels in (224, 384)
        if (size, pixels) != ("medium", 384)
    },
}
