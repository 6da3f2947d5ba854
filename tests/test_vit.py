"""ViT-Ti/S/B: the papers' figures, the position embedding at other sizes, pooling, the blocks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_model

import kerasrecipes as kr
from kerasrecipes.layers import (
    PatchEmbedding,
    TransformerEncoderBlock,
    resize_position_embedding,
)

# Parameters (millions) with the 1000-class head and multiply-adds (billions) at 224:
# ViT-B/16 from Dosovitskiy et al. 2021 (Table 1) and timm; Ti, S from DeiT (Touvron et al. 2021).
PAPER = {"vit_tiny16": (5.7, 1.3), "vit_small16": (22.1, 4.6), "vit_base16": (86.6, 17.6)}


@pytest.mark.parametrize("name", list(PAPER))
def test_parameters_and_flops_match_the_papers(name):
    info = kr.model_info(kr.create_model(name))
    params, flops = PAPER[name]
    assert round(info.params / 1e6, 1) == params
    assert abs(info.flops / (flops * 1e9) - 1) < 0.05
    assert not info.uncounted_layers


def test_base_parameters_add_up():
    model = tiny_model("vit_base16")
    info = kr.model_info(kr.create_model("vit_base16"))
    # Patch projection, class token, 197 positions, 12 blocks, final norm, classifier.
    block = 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    assert info.params == 768 * 768 + 768 + 768 + 197 * 768 + 12 * block + 2 * 768 + 769_000
    # The tiny model's embedding holds one position for its single patch.
    assert model.get_layer("stem_embed").position_embedding.shape == (1, 2, 768)


def test_attention_multiply_adds_are_counted():
    model = kr.create_model("vit_tiny16", input_shape=(32, 32, 3), num_classes=10)
    tokens, dim, mlp = 5, 192, 768
    block = tokens * (4 * dim * dim + 2 * dim * mlp) + 2 * tokens * tokens * dim
    expected = 4 * 16 * 16 * 3 * dim + 12 * block + dim * 10
    assert kr.model_info(model).flops == expected


def test_two_input_sizes_share_the_weights_and_resize_the_position_embedding(rng):
    native = kr.create_model("vit_tiny16", input_shape=(32, 32, 3), num_classes=3)
    larger = kr.create_model(
        "vit_tiny16", input_shape=(64, 64, 3), num_classes=3, position_embedding_size=(32, 32)
    )
    assert [w.shape for w in native.weights] == [w.shape for w in larger.weights]
    for weight in native.weights:
        weight.assign(weight.numpy() + rng.normal(0, 0.02, weight.shape).astype("float32"))
    larger.set_weights(native.get_weights())

    x = rng.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    embed = larger.get_layer("stem_embed")
    tokens = keras.ops.convert_to_numpy(embed(x))
    assert tokens.shape == (2, 1 + 16, 192)
    # The 2x2 grid of position embeddings, resized bicubically to 4x4 (TensorFlow as reference).
    position = embed.position_embedding.numpy()
    grid = tf.image.resize(position[:, 1:].reshape(1, 2, 2, 192), (4, 4), method="bicubic")
    expected_position = np.concatenate([position[:, :1], grid.numpy().reshape(1, 16, 192)], 1)
    patches = keras.ops.convert_to_numpy(embed.projection(x)).reshape(2, 16, 192)
    class_token = np.broadcast_to(embed.class_token.numpy(), (2, 1, 192))
    expected = np.concatenate([class_token, patches], axis=1) + expected_position
    np.testing.assert_allclose(tokens, expected, atol=1e-5)
    # At the size it was made for, the embedding is used as it is.
    small = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(embed(small)),
        keras.ops.convert_to_numpy(native.get_layer("stem_embed")(small)),
        atol=1e-6,
    )
    # Made for its own size by default: a 4x4 grid at 64.
    own = kr.create_model("vit_tiny16", input_shape=(64, 64, 3))
    assert own.get_layer("stem_embed").position_embedding.shape == (1, 17, 192)


def test_resize_keeps_the_class_token_and_is_identity_at_the_same_grid(rng):
    embedding = rng.normal(size=(1, 1 + 14 * 14, 8)).astype("float32")
    same = resize_position_embedding(embedding, (14, 14), (14, 14))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same), embedding)
    resized = keras.ops.convert_to_numpy(resize_position_embedding(embedding, (14, 14), (24, 20)))
    assert resized.shape == (1, 1 + 24 * 20, 8)
    np.testing.assert_array_equal(resized[:, 0], embedding[:, 0])


def test_patch_size_and_input_size_checks():
    model = kr.create_model("vit_tiny16", patch_size=8, input_shape=(32, 48, 3))
    assert model.get_layer("stem_embed").output.shape == (None, 1 + 4 * 6, 192)
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        kr.create_model("vit_tiny16", input_shape=(40, 40, 3))
    with pytest.raises(ValueError, match="with include_top=True, pooling must be"):
        kr.create_model("vit_tiny16", input_shape=(32, 32, 3), pooling="max")
    with pytest.raises(ValueError, match="pooling must be one of"):
        kr.create_model("vit_tiny16", input_shape=(32, 32, 3), pooling="mean")


def test_pooling_choices(rng):
    shape = (32, 32, 3)
    x = rng.uniform(0, 1, (2, *shape)).astype("float32")
    token = kr.create_model("vit_tiny16", input_shape=shape, include_top=False, pooling="token")
    tokens = keras.Model(token.input, token.get_layer("post_norm").output)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(token(x)),
        keras.ops.convert_to_numpy(tokens(x))[:, 0],
        atol=1e-6,
    )
    grid = kr.create_model("vit_tiny16", input_shape=shape, include_top=False)
    grid.set_weights(token.get_weights())
    feature_map = keras.ops.convert_to_numpy(grid(x))
    assert feature_map.shape == (2, 2, 2, 192)
    np.testing.assert_allclose(
        feature_map.reshape(2, 4, 192), keras.ops.convert_to_numpy(tokens(x))[:, 1:], atol=1e-6
    )
    average_top = kr.create_model("vit_tiny16", input_shape=shape, pooling="avg")
    assert isinstance(average_top.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    assert tiny_model("vit_tiny16").get_layer("head_pool").__class__.__name__ == (
        "ClassTokenPooling"
    )


def test_stochastic_depth_and_layer_scale_options():
    model = kr.create_model(
        "vit_small16", input_shape=(32, 32, 3), drop_path_rate=0.1, layer_scale_init=1e-5
    )
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerEncoderBlock)]
    np.testing.assert_allclose([b.drop_path_rate for b in blocks], np.linspace(0, 0.1, 12))
    np.testing.assert_allclose(blocks[0].attention_scale.gamma.numpy(), np.full(384, 1e-5))
    plain = kr.create_model("vit_small16", input_shape=(32, 32, 3))
    assert model.count_params() - plain.count_params() == 12 * 2 * 384


def test_encoder_block_is_pre_norm_residual(rng):
    block = TransformerEncoderBlock(num_heads=2, mlp_dim=16, name="block")
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    block(x)
    # With both branch outputs zeroed, the block passes its input through.
    for dense in (block.attention.output_dense, block.mlp_project):
        for weight in dense.weights:
            weight.assign(np.zeros(weight.shape, "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), x, atol=1e-6)
    # Scaling the input does not change the branches' view of it (LayerNorm first).
    block.mlp_project.kernel.assign(rng.normal(size=(16, 8)).astype("float32"))
    branch = keras.ops.convert_to_numpy(block(x)) - x
    scaled = keras.ops.convert_to_numpy(block(3 * x)) - 3 * x
    np.testing.assert_allclose(branch, scaled, atol=1e-4)
    with pytest.raises(ValueError, match="not a multiple of num_heads=3"):
        TransformerEncoderBlock(num_heads=3, mlp_dim=16)(x)


def test_patch_embedding_errors():
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        PatchEmbedding(8, 16)(keras.ops.ones((1, 20, 32, 3)))
    with pytest.raises(ValueError, match="hidden_dim and patch_size must be >= 1"):
        PatchEmbedding(0, 16)


def test_resized_model_round_trips_through_a_keras_file(tmp_path, rng):
    model = kr.create_model(
        "vit_tiny16", input_shape=(48, 48, 3), num_classes=3, position_embedding_size=(32, 32)
    )
    x = rng.uniform(0, 1, (2, 48, 48, 3)).astype("float32")
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("stem_embed").position_grid == (2, 2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
