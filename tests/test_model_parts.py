"""The head is what the builder recorded: groups, cutting, unfreezing and rates read the record."""

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.backbones import backbone_of
from kerasrecipes.model_parts import HEAD_PREFIX, head_layers, record_head, recorded_head

ONE_PER_FAMILY = [
    "alexnet",
    "baseline_cnn",
    "convnext_tiny",
    "efficientnet_b0",
    "inception_v3",
    "mobilenet_v2",
    "resnet18",
    "vgg16",
    "vit_small16",
]


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
@pytest.mark.parametrize("include_top", [True, False])
def test_every_family_records_the_head_its_saved_file_splits_at(name, include_top):
    """A model read back from a file has no record and splits by its `head_*` names: the two
    must agree, or a saved run would unfreeze or cut differently from the one that trained."""
    card = kr.model_card(name)
    size = max(card.min_input_size, 32)
    pooling = None if include_top else "avg"
    model = kr.create_model(
        name, include_top=include_top, pooling=pooling, input_shape=(size, size, 3)
    )
    by_name = [layer.name for layer in model.layers if layer.name.startswith(HEAD_PREFIX)]
    assert recorded_head(model) == tuple(by_name)
    assert by_name, "a pooled or classifying model has a head"


def _unnamed_head_model():
    """A backbone and a head whose layers follow no naming rule, as keras-hub names its own."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stage1_block1_conv")(inputs)
    features = keras.layers.Conv2D(4, 3, name="stage2_block1_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return record_head(keras.Model(inputs, outputs, name="unnamed"), features)


def test_groups_cutting_and_unfreezing_follow_the_record_not_the_names():
    model = _unnamed_head_model()
    assert [layer.name for layer in head_layers(model)] == ["pool", "predictions"]
    groups = kr.param_groups(model)
    assert groups[-1].is_head
    assert {v.path.split("/")[0] for v in groups[-1].variables} == {"predictions"}
    backbone = backbone_of(model)
    assert backbone.output_shape == (None, 4, 4, 4)
    assert "predictions" not in [layer.name for layer in backbone.layers]
    unfreeze = kr.callbacks.UnfreezeBackbone()
    unfreeze.set_model(model)
    chosen = {path.split("/")[0] for path, _ in unfreeze._backbone_paths(model)}
    assert chosen == {"stage1_block1_conv", "stage2_block1_conv"}


def test_without_a_record_the_names_decide():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="body")(inputs)
    outputs = keras.layers.Dense(2, name=f"{HEAD_PREFIX}dense")(x)
    model = keras.Model(inputs, outputs)
    assert recorded_head(model) is None
    assert [layer.name for layer in head_layers(model)] == [f"{HEAD_PREFIX}dense"]


def test_group_rates_take_variables_log_by_name_and_round_trip(tmp_path):
    model = _unnamed_head_model()
    groups = kr.param_groups(model)
    head, body = groups[-1], groups[:-1]
    optimizer = kr.optimizers.with_group_rates(
        keras.optimizers.SGD(0.1),
        {"head": (head.variables, 1.0), "backbone": ([v for g in body for v in g.variables], 0.1)},
        model,
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 8, 8, 3)), np.zeros((4,)), epochs=1, verbose=0)
    logs = kr.callbacks.learning_rate_logs(model.optimizer)
    assert logs["lr/head"] == pytest.approx(0.1)
    assert logs["lr/backbone"] == pytest.approx(0.01)
    assert set(logs) == {"learning_rate", "lr/head", "lr/backbone"}
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert kr.callbacks.learning_rate_logs(loaded.optimizer) == pytest.approx(logs)


def test_group_rates_refuse_a_variable_of_another_model():
    model, other = _unnamed_head_model(), _unnamed_head_model()
    with pytest.raises(ValueError, match="not variables of model"):
        kr.optimizers.with_group_rates(
            keras.optimizers.SGD(0.1), {"head": (other.trainable_variables, 1.0)}, model
        )


def test_a_keras_file_means_its_backbone_and_its_head_where_it_fits(tmp_path):
    """`weights="x.keras"` in `create_model` and in `load_backbone` read the same thing."""
    path = str(tmp_path / "saved.keras")
    saved = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    saved.save(path)
    same_head = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3), weights=path)
    other_head = kr.create_model("resnet20", num_classes=3, input_shape=(32, 32, 3), weights=path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(same_head(images), saved(images), atol=1e-6)
    features = backbone_of(saved)(images)
    np.testing.assert_allclose(backbone_of(other_head)(images), features, atol=1e-5)
    loaded = kr.load_backbone("resnet20", weights=path)
    np.testing.assert_allclose(loaded.model(images), features, atol=1e-5)
    with pytest.raises(ValueError, match="saved.keras: its model does not fit"):
        kr.create_model("resnet32", num_classes=3, input_shape=(32, 32, 3), weights=path)
