"""Vision Transformer layers (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", arXiv:2010.11929).

`PatchEmbedding` turns an image into a token sequence (patches, a class token
and a learned position embedding, resized when the input grid differs from
the one it was made for), `TransformerEncoderBlock` is the pre-norm encoder
block (Eq. 2-3 of the paper) built on `keras.layers.MultiHeadAttention`, and
`ClassTokenPooling` / `PatchTokensToGrid` read the encoder's output as a
vector or as a feature map.
"""

import keras
from keras import ops

from kerasrecipes.layers.activations import gelu
from kerasrecipes.layers.building import build_sequentially, serialize_initializer
from kerasrecipes.layers.layer_scale import LayerScale
from kerasrecipes.layers.normalization import LayerNormalization
from kerasrecipes.layers.regularization import DropPath

# timm's initialization of ViT: truncated normal, standard deviation 0.02.
VIT_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}


def resize_position_embedding(embedding, source_grid, target_grid, num_prefix_tokens=1):
    """Resizes a learned position embedding to another grid of patches, by bicubic interpolation.

    The embedding of the patch tokens is read as a (rows, columns, dim)
    image and resized; the prefix tokens' (the class token's) are kept.
    This is how ViT is fine-tuned at a resolution other than its
    pre-training one (Sec. 3.2 of the paper; timm's `resample_abs_pos_embed`).

    Args:
        embedding: tensor (1, num_prefix_tokens + rows * columns, dim).
        source_grid: (rows, columns) the embedding was made for.
        target_grid: (rows, columns) to resize it to.
        num_prefix_tokens: int, tokens before the patches. Defaults to 1.

    Returns:
        A tensor (1, num_prefix_tokens + target rows * target columns, dim).

    Example:

    >>> embedding = keras.ops.ones((1, 1 + 14 * 14, 8))
    >>> tuple(resize_position_embedding(embedding, (14, 14), (24, 24)).shape)
    (1, 577, 8)
    """
    source_grid, target_grid = tuple(source_grid), tuple(target_grid)
    if source_grid == target_grid:
        return embedding
    dim = embedding.shape[-1]
    prefix = embedding[:, :num_prefix_tokens]
    patches = ops.reshape(embedding[:, num_prefix_tokens:], (1, *source_grid, dim))
    patches = ops.image.resize(patches, target_grid, interpolation="bicubic", antialias=False)
    patches = ops.reshape(patches, (1, target_grid[0] * target_grid[1], dim))
    return ops.concatenate([ops.cast(prefix, patches.dtype), patches], axis=1)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class PatchEmbedding(keras.layers.Layer):
    """Patches, linearly projected, with a class token and a learned position embedding.

    A `patch_size` x `patch_size` convolution with the same stride projects
    each patch to `hidden_dim` (Eq. 1 of the paper); a learned class token
    is put in front and a learned position embedding is added. The position
    embedding is made for `position_grid` patches (by default the grid of the
    input the layer is built on); at another input size it is resized by
    bicubic interpolation at each call (`resize_position_embedding`), so
    weights trained at 224 run, and fine-tune, at 384 without changing shape.

    Why not keras-cv's `PatchingAndEmbedding` (0.9): it resizes the position
    embedding only when each call passes `interpolate=True` with the target
    size, which a functional model's call does not, and resizes with
    `tf.image.resize`, so it runs on TensorFlow only; it has no class token
    of its own either (keras-cv's ViT adds one in the model).

    Args:
        hidden_dim: int, width of the tokens.
        patch_size: int, side of the square patches.
        position_grid: (rows, columns) of patches the position embedding is
            made for, or None for the grid of the input it is built on. Defaults to None.
        kernel_initializer: initializer of the projection. Defaults to a
            truncated normal with standard deviation 0.02.

    Example:

    >>> embed = PatchEmbedding(hidden_dim=32, patch_size=16, position_grid=(2, 2))
    >>> tuple(embed(keras.ops.ones((1, 64, 64, 3))).shape)  # 4x4 patches + class token
    (1, 17, 32)
    """

    def __init__(
        self, hidden_dim, patch_size, position_grid=None, kernel_initializer=None, **kwargs
    ):
        super().__init__(**kwargs)
        if hidden_dim < 1 or patch_size < 1:
            raise ValueError(
                f"PatchEmbedding '{self.name}': hidden_dim and patch_size must be >= 1. "
                f"Received: hidden_dim={hidden_dim}, patch_size={patch_size}"
            )
        self.hidden_dim = hidden_dim
        self.patch_size = patch_size
        self.position_grid = None if position_grid is None else tuple(position_grid)
        self.kernel_initializer = kernel_initializer or VIT_INITIALIZER

    def _grid(self, input_shape):
        height, width = input_shape[1:3]
        if height is None or width is None:
            raise ValueError(
                f"PatchEmbedding '{self.name}' needs a known input height and width to lay "
                f"out the position embedding. Received input shape {tuple(input_shape)}."
            )
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"PatchEmbedding '{self.name}': the input size {height}x{width} is not a "
                f"multiple of the patch size {self.patch_size}. Resize or crop the images."
            )
        return (height // self.patch_size, width // self.patch_size)

    def build(self, input_shape):
        grid = self._grid(input_shape)
        if self.position_grid is None:
            self.position_grid = grid
        self.projection = keras.layers.Conv2D(
            self.hidden_dim,
            self.patch_size,
            strides=self.patch_size,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )
        self.projection.build(input_shape)
        self.class_token = self.add_weight(
            shape=(1, 1, self.hidden_dim), initializer="zeros", name="class_token"
        )
        rows, columns = self.position_grid
        self.position_embedding = self.add_weight(
            shape=(1, 1 + rows * columns, self.hidden_dim),
            initializer=VIT_INITIALIZER,
            name="position_embedding",
        )
        self.built = True

    def call(self, inputs):
        grid = self._grid(inputs.shape)
        patches = self.projection(inputs)
        patches = ops.reshape(patches, (-1, grid[0] * grid[1], self.hidden_dim))
        class_token = ops.broadcast_to(
            ops.cast(self.class_token, patches.dtype), (ops.shape(patches)[0], 1, self.hidden_dim)
        )
        tokens = ops.concatenate([class_token, patches], axis=1)
        position = resize_position_embedding(self.position_embedding, self.position_grid, grid)
        return tokens + ops.cast(position, tokens.dtype)

    def compute_output_shape(self, input_shape):
        rows, columns = self._grid(input_shape)
        return (input_shape[0], 1 + rows * columns, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "patch_size": self.patch_size,
                "position_grid": self.position_grid,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-norm transformer encoder block: x + MSA(LN(x)), then x + MLP(LN(x)).

    Eq. 2-3 of Dosovitskiy et al. 2021: multi-head self-attention
    (`keras.layers.MultiHeadAttention`) and a two-layer GELU MLP, each after
    a LayerNorm and added back to its input, with dropout after the
    attention output and after each MLP layer (Appendix B.1), stochastic depth
    on both residual branches (DeiT, Touvron et al. 2021) and, optionally,
    LayerScale (CaiT, Touvron et al. 2021).

    Why not keras-cv's `TransformerEncoder` (0.9): it makes new `Dropout`
    layers inside `call` without passing `training`, and has neither
    stochastic depth nor LayerScale.

    Args:
        num_heads: int, attention heads; must divide the token width.
        mlp_dim: int, hidden width of the MLP (4x the token width in ViT).
        dropout: float, dropout after the attention and MLP outputs. Defaults to 0.0.
        attention_dropout: float, dropout on the attention weights. Defaults to 0.0.
        drop_path_rate: float, stochastic-depth rate of both branches. Defaults to 0.0.
        layer_scale_init: float initial LayerScale value, or None for no
            LayerScale (ViT's default). Defaults to None.
        norm_epsilon: float, LayerNorm epsilon. Defaults to 1e-6.
        kernel_initializer: initializer of the attention and MLP projections.
            Defaults to a truncated normal with standard deviation 0.02.
        seed: optional int seed for dropout and stochastic depth. Defaults to None.

    Example:

    >>> block = TransformerEncoderBlock(num_heads=4, mlp_dim=128, name="stage1_block1")
    >>> tuple(block(keras.ops.ones((2, 17, 32))).shape)
    (2, 17, 32)
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_scale_init=None,
        norm_epsilon=1e-6,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads < 1 or mlp_dim < 1:
            raise ValueError(
                f"TransformerEncoderBlock '{self.name}': num_heads and mlp_dim must be >= 1. "
                f"Received: num_heads={num_heads}, mlp_dim={mlp_dim}"
            )
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path_rate = drop_path_rate
        self.layer_scale_init = layer_scale_init
        self.norm_epsilon = norm_epsilon
        self.kernel_initializer = kernel_initializer or VIT_INITIALIZER
        self.seed = seed
        self.output_dropout = keras.layers.Dropout(
            dropout, seed=seed, dtype=self.dtype_policy, name="output_dropout"
        )
        self.drop_path = DropPath(
            drop_path_rate, seed=seed, dtype=self.dtype_policy, name="drop_path"
        )

    def build(self, input_shape):
        width = input_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"TransformerEncoderBlock '{self.name}': the token width {width} is not a "
                f"multiple of num_heads={self.num_heads}."
            )
        common = {"dtype": self.dtype_policy}
        self.attention_norm = LayerNormalization(
            epsilon=self.norm_epsilon, name="attention_norm", **common
        )
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads,
            width // self.num_heads,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            seed=self.seed,
            name="attention",
            **common,
        )
        self.mlp_norm = LayerNormalization(epsilon=self.norm_epsilon, name="mlp_norm", **common)
        self.mlp_expand = keras.layers.Dense(
            self.mlp_dim, kernel_initializer=self.kernel_initializer, name="mlp_expand", **common
        )
        self.mlp_project = keras.layers.Dense(
            width, kernel_initializer=self.kernel_initializer, name="mlp_project", **common
        )
        self.attention_scale = self.mlp_scale = None
        if self.layer_scale_init is not None:
            self.attention_scale = LayerScale(
                self.layer_scale_init, name="attention_scale", **common
            )
            self.mlp_scale = LayerScale(self.layer_scale_init, name="mlp_scale", **common)
            self.attention_scale.build(input_shape)
            self.mlp_scale.build(input_shape)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        build_sequentially([self.mlp_norm, self.mlp_expand, self.mlp_project], input_shape)
        self.built = True

    def call(self, inputs, training=False):
        x = self.attention_norm(inputs)
        x = self.attention(x, x, training=training)
        x = self.output_dropout(x, training=training)
        if self.attention_scale is not None:
            x = self.attention_scale(x)
        inputs = inputs + self.drop_path(x, training=training)

        x = gelu(self.mlp_expand(self.mlp_norm(inputs)))
        x = self.mlp_project(self.output_dropout(x, training=training))
        x = self.output_dropout(x, training=training)
        if self.mlp_scale is not None:
            x = self.mlp_scale(x)
        return inputs + self.drop_path(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path_rate": self.drop_path_rate,
                "layer_scale_init": self.layer_scale_init,
                "norm_epsilon": self.norm_epsilon,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ClassTokenPooling(keras.layers.Layer):
    """The class token of a token sequence: (batch, tokens, dim) -> (batch, dim).

    ViT's image representation (Eq. 4 of the paper). Core Keras has no layer
    that takes one position of a sequence, and a `Lambda` would not load in
    Keras' safe mode.

    Example:

    >>> tuple(ClassTokenPooling()(keras.ops.ones((2, 17, 32))).shape)
    (2, 32)
    """

    def call(self, inputs):
        return inputs[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="kerasrecipes")
class PatchTokensToGrid(keras.layers.Layer):
    """The patch tokens laid out as a feature map: (batch, 1 + h*w, dim) -> (batch, h, w, dim).

    The class token is dropped. This gives a ViT the 4D feature output of a
    convolutional backbone (for global pooling, or dense prediction heads).

    Args:
        grid: (rows, columns) of patches.

    Example:

    >>> tuple(PatchTokensToGrid((4, 4))(keras.ops.ones((2, 17, 32))).shape)
    (2, 4, 4, 32)
    """

    def __init__(self, grid, **kwargs):
        super().__init__(**kwargs)
        self.grid = tuple(grid)

    def call(self, inputs):
        return ops.reshape(inputs[:, 1:], (-1, *self.grid, inputs.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.grid, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"grid": self.grid})
        return config
