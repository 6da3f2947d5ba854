"""Vision Transformers ViT-Ti/S/B (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words: Transformers for Image Recognition at Scale", arXiv:2010.11929).

The image is cut into patches, embedded with a class token and a learned
position embedding, and run through a stack of pre-norm transformer encoder
blocks; a final LayerNorm and a linear classifier on the class token follow
(Eq. 1-4 of the paper). ViT-B is the paper's (Table 1); ViT-Ti and ViT-S are
the smaller widths of DeiT (Touvron et al. 2021) and of Steiner et al. 2021,
"How to train your ViT?". Inputs are any size that is a multiple of the
patch size; the position embedding is resized when the input differs from
the size it was made for (`position_embedding_size`). There is no
keras.applications twin, so no ImageNet weights.
"""

import keras

from kerasrecipes.cards import FeatureTap, register_model, stage_blocks
from kerasrecipes.layers import LayerNormalization, drop_path_schedule
from kerasrecipes.layers.vit import (
    VIT_INITIALIZER,
    ClassTokenPooling,
    PatchEmbedding,
    PatchTokensToGrid,
    TransformerEncoderBlock,
)
from kerasrecipes.model_parts import HEAD_PREFIX
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

PAPER = "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words"
# Token width, encoder blocks, attention heads, MLP width.
VARIANTS = {
    "vit_tiny16": (192, 12, 3, 768),
    "vit_small16": (384, 12, 6, 1536),
    "vit_base16": (768, 12, 12, 3072),
}
POOLINGS = (None, "token", "avg", "max")
NORM_EPSILON = 1e-6


def vit(
    hidden_dim,
    depth,
    num_heads,
    mlp_dim,
    *,
    patch_size=16,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    encoder_dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    layer_scale_init=None,
    position_embedding_size=None,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="unit",
    name="vit",
):
    """Builds a Vision Transformer.

    Layer names: `stem_embed` (patches, class token, position embedding),
    `stem_dropout`, the encoder blocks `stage1_block{j}`, `post_norm` (the
    final LayerNorm, over all tokens), then `post_grid` (the patch tokens as
    a feature map) and/or `head_pool`, `head_dropout`, `head_dense`.

    Args:
        hidden_dim: int, token width (768 for ViT-B).
        depth: int, number of encoder blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        mlp_dim: int, hidden width of each block's MLP.
        patch_size: int, side of the square patches. Defaults to 16.
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), height and width multiples
            of `patch_size`. Defaults to (224, 224, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: what represents the image: "token" (the class token, as
            the paper), "avg" or "max" over the patch tokens, or None: with
            the top, the class token; without it, the patch tokens as a
            (rows, columns, hidden_dim) feature map. With the top, "max" is
            not accepted. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        encoder_dropout: float, dropout after the embedding and inside every
            block (Appendix B.1: 0.1 for ImageNet-21k pre-training). Defaults to 0.0.
        attention_dropout: float, dropout on the attention weights. Defaults to 0.0.
        drop_path_rate: float, stochastic depth of the last block, rising
            linearly from 0 (`drop_path_schedule`; DeiT uses 0.1). Defaults to 0.0.
        layer_scale_init: float initial LayerScale value for every block,
            or None for none, as ViT. Defaults to None.
        position_embedding_size: (height, width) of the input the position
            embedding is made for, or None for `input_shape`'s. Set it to the
            size weights were trained at (say 224) to load and fine-tune them
            at another (say 384): the variables keep their shapes and the
            embedding is resized by bicubic interpolation. Defaults to None.
        weights: None or the path of a .weights.h5 / .keras file. Defaults to None.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "unit" ([0, 1]).
        name: model name. Defaults to "vit".

    Example:

    >>> model = vit(64, 2, 4, 128, patch_size=8, input_shape=(32, 32, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=patch_size,
        poolings=POOLINGS,
    )
    if include_top and pooling == "max":
        raise ValueError(
            f"{name}: with include_top=True, pooling must be None or 'token' (the class "
            "token, as the paper) or 'avg' (the mean of the patch tokens). Received: 'max'."
        )
    height, width = input_shape[:2]
    if height is None or width is None or height % patch_size or width % patch_size:
        raise ValueError(
            f"{name}: input_shape={input_shape} must have a height and width that are "
            f"multiples of the patch size {patch_size}. Resize or crop the images, e.g. to "
            f"{max(1, (height or 224) // patch_size) * patch_size} pixels."
        )
    position_grid = None
    if position_embedding_size is not None:
        position_grid = tuple(int(size) // patch_size for size in position_embedding_size)

    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    x = PatchEmbedding(hidden_dim, patch_size, position_grid=position_grid, name="stem_embed")(x)
    if encoder_dropout > 0:
        x = keras.layers.Dropout(encoder_dropout, name="stem_dropout")(x)
    for block, rate in enumerate(drop_path_schedule(drop_path_rate, depth), start=1):
        x = TransformerEncoderBlock(
            num_heads,
            mlp_dim,
            dropout=encoder_dropout,
            attention_dropout=attention_dropout,
            drop_path_rate=rate,
            layer_scale_init=layer_scale_init,
            norm_epsilon=NORM_EPSILON,
            name=f"stage1_block{block}",
        )(x)
    x = LayerNormalization(epsilon=NORM_EPSILON, name="post_norm")(x)

    representation = pooling or ("token" if include_top else None)
    tokens = x
    if representation == "token":
        x = ClassTokenPooling(name=f"{HEAD_PREFIX}pool")(x)
    else:
        x = PatchTokensToGrid((height // patch_size, width // patch_size), name="post_grid")(x)
    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        num_classes=num_classes,
        include_top=include_top,
        pooling=None if representation == "token" else pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        dense_initializer=VIT_INITIALIZER,
        head_from=tokens if representation == "token" else None,
    )


def _variant(name, kwargs):
    hidden_dim, depth, num_heads, mlp_dim = VARIANTS[name]
    return vit(hidden_dim, depth, num_heads, mlp_dim, **{"name": name, **kwargs})


def _register(name):
    hidden_dim, depth, num_heads, mlp_dim = VARIANTS[name]
    return register_model(
        name,
        family="vit",
        bn_momentum=None,
        paper=PAPER,
        default_input_shape=(224, 224, 3),
        min_input_size=16,
        variant={
            "hidden_dim": hidden_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_dim": mlp_dim,
            "patch_size": 16,
        },
        blocks=stage_blocks((depth,)),
        # Every block's tokens, laid out as the 14x14 patch grid at 224.
        feature_taps=tuple(
            FeatureTap(f"stage1_block{block}", hidden_dim, 16) for block in range(1, depth + 1)
        ),
        heavy=name == "vit_base16",
    )


@_register("vit_tiny16")
def vit_tiny16(**kwargs):
    """ViT-Ti/16: 5.7M parameters, 1.3G multiply-adds at 224 (DeiT-Ti, Touvron et al. 2021)."""
    return _variant("vit_tiny16", kwargs)


@_register("vit_small16")
def vit_small16(**kwargs):
    """ViT-S/16: 22.1M parameters, 4.6G multiply-adds at 224 (DeiT-S, Touvron et al. 2021)."""
    return _variant("vit_small16", kwargs)


@_register("vit_base16")
def vit_base16(**kwargs):
    """ViT-B/16: 86.6M parameters, 17.6G multiply-adds at 224 (Table 1 of the paper)."""
    return _variant("vit_base16", kwargs)
