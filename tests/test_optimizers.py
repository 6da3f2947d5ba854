"""Per-layer learning rates, weight decay exclusions, L2 in the loss, the audit, LARS."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import kerasrecipes as kr
from kerasrecipes.optimizers import (
    LARS,
    LRMultiplierOptimizer,
    add_l2,
    audit,
    decay_exclusions,
    exclude_from_decay,
    layer_decay_multipliers,
    with_lr_multipliers,
)
from tests.conftest import classifier_on_keras_mobilenet_v2, tiny_model


def three_layer_model(seed=0):
    """x -> body (Dense 4) -> neck (Dense 4) -> head (Dense 1): a linear regression."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="body"),
            keras.layers.Dense(4, name="neck"),
            keras.layers.Dense(1, name="head"),
        ],
        name="regressor",
    )


def regression_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")


def values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


def gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = ops.mean(ops.square(model(x) - y))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


MULTIPLIERS = {"head": 1.0, "neck": 0.25, "body": 0.0}
MULT_BY_LAYER = {"head": 1.0, "neck": 0.25, "body": 0.0}


def test_sgd_moves_each_variable_its_multiple_of_the_base_step():
    model = three_layer_model()
    x, y = regression_data()
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.1), MULTIPLIERS)
    model.compile(optimizer, loss="mse")
    before = values(model.trainable_variables)
    grads = gradients(model, x, y)
    model.train_on_batch(x, y)
    after = values(model.trainable_variables)
    for variable, w0, w1, g in zip(model.trainable_variables, before, after, grads):
        m = MULT_BY_LAYER[variable.path.split("/")[-2]]
        np.testing.assert_allclose(w0 - w1, 0.1 * m * g, rtol=1e-5, atol=1e-7)
        if m == 0:
            np.testing.assert_array_equal(w0, w1)
    # The step of multiplier 0.25 is a quarter of what a multiplier of 1 would take.
    neck = model.get_layer("neck").kernel
    index = [v is neck for v in model.trainable_variables].index(True)
    np.testing.assert_allclose(
        before[index] - after[index], 0.25 * 0.1 * grads[index], rtol=1e-5, atol=1e-7
    )


def test_decoupled_weight_decay_is_scaled_by_the_multiplier_and_skips_excluded():
    model = three_layer_model()
    optimizer = with_lr_multipliers(
        keras.optimizers.SGD(0.1, weight_decay=0.5),
        {"head": 1.0, "neck": 0.5, "body": 0.0},
        model=model,
    )
    exclude_from_decay(optimizer, model)
    variables = model.trainable_variables
    before = values(variables)
    # Zero gradients: whatever moves is weight decay, w <- w - lr * m * wd * w.
    optimizer.apply([ops.zeros_like(v) for v in variables], variables)
    for variable, w0, w1 in zip(variables, before, values(variables)):
        layer, name = variable.path.split("/")[-2:]
        m = {"head": 1.0, "neck": 0.5, "body": 0.0}[layer]
        expected = w0 if name == "bias" else w0 - 0.1 * m * 0.5 * w0
        np.testing.assert_allclose(w1, expected, rtol=1e-6)


SCHEDULES = {
    "ExponentialDecay": lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5),
    "PiecewiseConstantDecay": lambda: keras.optimizers.schedules.PiecewiseConstantDecay(
        [1, 2], [0.1, 0.05, 0.01]
    ),
    "PolynomialDecay": lambda: keras.optimizers.schedules.PolynomialDecay(0.1, 4, 0.01),
    "InverseTimeDecay": lambda: keras.optimizers.schedules.InverseTimeDecay(0.1, 1, 0.5),
    "CosineDecay": lambda: keras.optimizers.schedules.CosineDecay(0.1, 4),
    "CosineDecayRestarts": lambda: keras.optimizers.schedules.CosineDecayRestarts(0.1, 2),
    "WarmupCosine": lambda: kr.schedules.WarmupCosine(0.1, total_steps=6, warmup_steps=2),
    "WarmupStepDecay": lambda: kr.schedules.WarmupStepDecay(0.1, [2], warmup_steps=1),
    "OneCycle": lambda: kr.schedules.OneCycle(0.1, total_steps=6),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_works_with_every_schedule(name):
    schedule = SCHEDULES[name]()
    fast = keras.Variable(np.zeros(2, "float32"), name="fast")
    slow = keras.Variable(np.zeros(2, "float32"), name="slow")
    optimizer = with_lr_multipliers(keras.optimizers.SGD(schedule), {"slow": 0.5})
    for step in range(4):
        rate = float(schedule(step))
        assert float(optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
        f0, s0 = values([fast, slow])
        optimizer.apply([ops.ones(2), ops.ones(2)], [fast, slow])
        f1, s1 = values([fast, slow])
        np.testing.assert_allclose(f0 - f1, rate, rtol=1e-5)
        np.testing.assert_allclose(s0 - s1, 0.5 * rate, rtol=1e-5)


def fit_with(callbacks, optimizer, epochs=3):
    model = three_layer_model()
    x, y = regression_data(32)
    model.compile(optimizer, loss="mse")
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        verbose=0,
        callbacks=[*callbacks, kr.callbacks.LogLearningRates()],
    )
    return model, history.history


def test_reduce_lr_on_plateau_scales_every_group_and_keeps_ratios():
    never_improves = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9, min_lr=0.0
    )
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.01), {"neck": 0.1})
    _, history = fit_with([never_improves], optimizer)
    # First epoch sets the best; each later one reduces.
    np.testing.assert_allclose(history["learning_rate"], [0.01, 0.005, 0.0025], rtol=1e-6)
    np.testing.assert_allclose(history["lr/neck"], [0.001, 0.0005, 0.00025], rtol=1e-6)
    np.testing.assert_allclose(history["lr/default"], history["learning_rate"], rtol=1e-6)


def test_reduce_lr_on_plateau_rescales_a_schedule_instead_of_raising():
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=100)
    never_improves = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9, min_lr=0.0
    )
    optimizer = with_lr_multipliers(keras.optimizers.SGD(schedule), {"neck": 0.1})
    _, history = fit_with([never_improves], optimizer)
    steps = np.array([4, 8, 12])
    expected = np.array([float(schedule(s)) for s in steps]) * np.array([1, 0.5, 0.25])
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)
    np.testing.assert_allclose(history["lr/neck"], 0.1 * expected, rtol=1e-5)


def test_learning_rate_scheduler_keeps_the_ratios():
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch)
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.01), {"neck": 0.1, "head": 2.0})
    _, history = fit_with([scheduler], optimizer)
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(history["lr/neck"], [0.01, 0.005, 0.0025], rtol=1e-6)
    np.testing.assert_allclose(history["lr/head"], [0.2, 0.1, 0.05], rtol=1e-6)


def test_multiplier_zero_freezes_under_adamw():
    optimizer = with_lr_multipliers(keras.optimizers.AdamW(0.01, weight_decay=0.1), {"body": 0.0})
    model = three_layer_model()
    body = values(model.get_layer("body").weights)
    head = values(model.get_layer("head").weights)
    x, y = regression_data(32)
    model.compile(optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for w0, w1 in zip(body, values(model.get_layer("body").weights)):
        np.testing.assert_array_equal(w0, w1)
    assert not np.allclose(head[0], values(model.get_layer("head").weights)[0])


def nested_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="block1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.Conv2D(4, 3, name="block2_conv")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    outer_inputs = keras.Input((8, 8, 3))
    features = backbone(outer_inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    outputs = keras.layers.Dense(2, name="head_dense")(pooled)
    return keras.Model(outer_inputs, outputs, name="classifier"), backbone


def test_patterns_see_nested_model_names_when_given_the_model():
    model, _ = nested_model()
    optimizer = with_lr_multipliers(
        keras.optimizers.SGD(0.1), {"backbone/block2": 0.5, "backbone": 0.1}, model=model
    )
    optimizer.build(model.trainable_variables)
    found = optimizer.multiplier_values()
    assert found["backbone/block1_conv/kernel"] == pytest.approx(0.1)
    assert found["backbone/block1_bn/gamma"] == pytest.approx(0.1)
    assert found["backbone/block2_conv/bias"] == pytest.approx(0.5)
    assert found["head_dense/kernel"] == 1.0


def test_a_pattern_that_matches_nothing_is_an_error_naming_it():
    model, _ = nested_model()
    with pytest.raises(ValueError, match=r"'stage9'.*match no variable"):
        with_lr_multipliers(keras.optimizers.SGD(0.1), {"stage9": 0.1}, model=model)
    # Without the model, Keras' variable paths do not name the nested model: an error that
    # says so, not a silent fallback to the default rate.
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.1), {"backbone": 0.1})
    model.compile(optimizer, loss="mse")
    with pytest.raises(ValueError, match="pass `model=`"):
        optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match=">= 0"):
        with_lr_multipliers(keras.optimizers.SGD(0.1), {"head": -1.0})
    with pytest.raises(ValueError, match="regular expression"):
        with_lr_multipliers(keras.optimizers.SGD(0.1), {"head[": 1.0})


def test_keras_file_round_trip_keeps_multipliers_and_slots(tmp_path):
    model, _ = nested_model()
    inner = keras.optimizers.AdamW(0.01, weight_decay=0.05)
    optimizer = exclude_from_decay(
        with_lr_multipliers(inner, {"backbone": 0.1}, model=model), model
    )
    model.compile(
        optimizer,
        loss=kr.losses.SparseCategoricalCrossentropy(label_smoothing=0.1, from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 2, size=16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    optimizer.set_multiplier("backbone/block2", 0.3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, LRMultiplierOptimizer)
    assert loaded.optimizer.get_config() == optimizer.get_config()
    assert len(loaded.optimizer.variables) == len(optimizer.variables)
    for saved, restored in zip(optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(saved), ops.convert_to_numpy(restored))
    assert loaded.optimizer.multiplier_values()["block2_conv/kernel"] == pytest.approx(0.3)
    # Both continue identically.
    model.train_on_batch(x[:8], y[:8])
    loaded.train_on_batch(x[:8], y[:8])
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6)


def test_mixed_precision_with_loss_scale_optimizer():
    keras.utils.set_random_seed(0)
    policy = keras.mixed_precision.DTypePolicy("mixed_float16")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, name="body", dtype=policy),
            keras.layers.Dense(1, name="head", dtype="float32"),
        ]
    )
    optimizer = keras.optimizers.LossScaleOptimizer(
        with_lr_multipliers(keras.optimizers.SGD(0.05), {"body": 0.0})
    )
    model.compile(optimizer, loss="mse")
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    body = values(model.get_layer("body").weights)
    x, y = regression_data(32)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert model.get_layer("body").compute_dtype == "float16"
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    for w0, w1 in zip(body, values(model.get_layer("body").weights)):
        np.testing.assert_array_equal(w0, w1)
    optimizer.learning_rate = 0.01
    assert float(optimizer.inner_optimizer.inner_optimizer.learning_rate) == pytest.approx(0.01)


def mirrored_run(strategy, multipliers):
    with strategy.scope():
        model = three_layer_model()
        optimizer = with_lr_multipliers(
            keras.optimizers.SGD(0.05, momentum=0.9), multipliers, model=model
        )
        model.compile(optimizer, loss="mse")
    x, y = regression_data(64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model.fit(dataset, epochs=2, verbose=0)
    return model


def test_trains_inside_mirrored_strategy_on_two_devices_like_one(two_device_strategy):
    two = mirrored_run(two_device_strategy, {"body": 0.0, "neck": 0.3})
    one = mirrored_run(tf.distribute.get_strategy(), {"body": 0.0, "neck": 0.3})
    start = three_layer_model()
    assert two.distribute_strategy.num_replicas_in_sync == 2
    for a, b, w0 in zip(two.weights, one.weights, start.weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-5)
        if "body/" in a.path:
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(w0))


def test_decay_exclusions_for_resnet_and_convnext():
    resnet = tiny_model("resnet20")
    skipped = decay_exclusions(resnet)
    paths = [p for p, _ in kr.optimizers.variable_paths(resnet)]
    decayed = [p for p in paths if p not in skipped]
    assert decayed and all(p.endswith("/kernel") for p in decayed)
    assert {skipped[p] for p in paths if p.endswith(("/gamma", "/beta"))} == {"normalization"}
    assert skipped["head_dense/bias"] == "bias or 1-D"

    convnext = tiny_model("convnext_tiny")
    skipped = decay_exclusions(convnext)
    paths = [p for p, _ in kr.optimizers.variable_paths(convnext)]
    layer_scale = [p for p in paths if skipped.get(p) == "layer scale"]
    norms = [p for p in paths if skipped.get(p) == "normalization"]
    assert len(layer_scale) == 18  # one gamma per block: 3 + 3 + 9 + 3
    assert len(norms) == 2 * (18 + 1 + 3 + 1)  # block norms, stem, downsamples, head norm
    decayed = [p for p in paths if p not in skipped]
    assert all(p.endswith(("kernel", "depthwise_kernel")) for p in decayed)

    optimizer = exclude_from_decay(keras.optimizers.AdamW(1e-3, weight_decay=0.05), convnext)
    rows = audit(optimizer, convnext, print_fn=None)
    assert sorted(r["path"] for r in rows if r["decay"]) == sorted(decayed)


def test_vit_embeddings_are_not_decayed():
    skipped = decay_exclusions(tiny_model("vit_tiny16"))
    embedding = sorted(p for p, why in skipped.items() if why == "embedding")
    assert [p.split("/")[-1] for p in embedding] == ["class_token", "position_embedding"]


def test_add_l2_adds_a_loss_on_a_built_model_and_the_gradient_gains_delta_w():
    model = three_layer_model()
    assert model.losses == []
    # What Keras offers does nothing on a built layer:
    model.get_layer("body").kernel_regularizer = keras.regularizers.L2(0.1)
    assert model.losses == []
    penalized = add_l2(model, 0.1)
    assert penalized == ["body/kernel", "neck/kernel", "head/kernel"]
    assert len(model.losses) == 3
    kernel = model.get_layer("neck").kernel
    with tf.GradientTape() as tape:
        penalty = ops.sum(ops.stack(model.losses))
    gradient = tape.gradient(penalty, kernel.value)
    np.testing.assert_allclose(gradient.numpy(), 0.1 * ops.convert_to_numpy(kernel), rtol=1e-6)
    with pytest.raises(ValueError, match="delta"):
        add_l2(model, 0.0)


def test_warns_when_weights_get_l2_and_decoupled_decay():
    model = three_layer_model()
    add_l2(model, 1e-4)
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.05)
    with pytest.warns(UserWarning, match="regularized twice"):
        exclude_from_decay(optimizer, model)
    plain = three_layer_model()
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    with pytest.warns(UserWarning, match="regularized twice"):
        plain.compile(keras.optimizers.AdamW(1e-3, weight_decay=0.05), loss="mse")
        add_l2(plain, 1e-4)


def test_audit_prints_and_returns_the_table(capsys):
    model, _ = nested_model()
    optimizer = with_lr_multipliers(
        keras.optimizers.AdamW(1e-2, weight_decay=0.05), {"backbone": 0.1}, model=model
    )
    exclude_from_decay(optimizer, model)
    rows = audit(optimizer, model)
    printed = capsys.readouterr().out
    assert "backbone/block1_conv/kernel" in printed and "head_dense/bias" in printed
    by_path = {row["path"]: row for row in rows}
    assert by_path["backbone/block1_conv/kernel"]["multiplier"] == pytest.approx(0.1)
    assert by_path["backbone/block1_conv/kernel"]["rate"] == pytest.approx(1e-3)
    assert by_path["backbone/block1_conv/kernel"]["decay"] is True
    assert by_path["backbone/block1_bn/gamma"]["decay"] is False
    assert by_path["head_dense/kernel"]["multiplier"] == 1.0
    assert "6 with weight decay" not in printed and "3 with weight decay" in printed


def test_layer_decay_multipliers_follow_depth():
    model = tiny_model("resnet20")
    mults = layer_decay_multipliers(model, rate=0.5)
    # 9 blocks: head 1, last block 0.5, first block 0.5**9, stem 0.5**10.
    assert mults["head_dense/"] == 1.0
    assert mults["stage3_block3[_/]"] == 0.5
    assert mults["stage1_block1[_/]"] == 0.5**9
    assert mults["stem_conv/"] == 0.5**10
    optimizer = with_lr_multipliers(keras.optimizers.SGD(1.0), mults, model=model)
    optimizer.build(model.trainable_variables)
    found = optimizer.multiplier_values()
    assert found["stage2_block1/conv1/kernel"] == pytest.approx(0.5**6)
    with pytest.raises(ValueError, match="rate"):
        layer_decay_multipliers(model, rate=1.5)


def test_layer_decay_on_a_nested_keras_applications_backbone():
    model, backbone = classifier_on_keras_mobilenet_v2()
    mults = layer_decay_multipliers(model, rate=0.9)
    name = re.escape(backbone.name)
    # MobileNetV2 names its blocks block_1 .. block_16; the stem (Conv1, expanded_conv) comes
    # before them, and Conv_1 after them goes with the last block (kr.param_groups' rule).
    assert mults[f"{name}/block_16[_/]"] == pytest.approx(0.9)
    assert mults[f"{name}/block_1[_/]"] == pytest.approx(0.9**16)
    assert mults[f"{name}/Conv1/"] == pytest.approx(0.9**17)
    assert mults[f"{name}/Conv_1/"] == pytest.approx(0.9)
    assert mults["head_dense/"] == 1.0
    optimizer = with_lr_multipliers(keras.optimizers.SGD(1.0), mults, model=model)
    assert len(optimizer.multiplier_values()) == len(kr.optimizers.variable_paths(model))


def test_lars_trust_ratio_follows_the_paper():
    w = keras.Variable(np.array([3.0, 4.0], "float32"), name="kernel")  # ||w|| = 5
    b = keras.Variable(np.array([1.0], "float32"), name="bias")
    optimizer = LARS(learning_rate=1.0, momentum=0.0, weight_decay=0.1, trust_coefficient=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    g = np.array([0.6, 0.8], "float32")  # ||g|| = 1
    optimizer.apply([ops.convert_to_tensor(g), ops.ones(1)], [w, b])
    trust = 0.01 * 5.0 / (1.0 + 0.1 * 5.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(w), [3.0, 4.0] - trust * (g + 0.1 * np.array([3.0, 4.0])), rtol=1e-6
    )
    np.testing.assert_allclose(ops.convert_to_numpy(b), [0.0], atol=1e-7)  # plain SGD step
    config = keras.optimizers.serialize(optimizer)
    assert keras.optimizers.deserialize(config).get_config() == optimizer.get_config()


def test_lars_under_multipliers_decays_once():
    w = keras.Variable(np.array([3.0, 4.0], "float32"), name="kernel")
    wrapped = with_lr_multipliers(
        LARS(learning_rate=1.0, momentum=0.0, weight_decay=0.1, trust_coefficient=0.01),
        {"kernel": 0.5},
    )
    g = np.array([0.6, 0.8], "float32")
    wrapped.apply([ops.convert_to_tensor(g)], [w])
    trust = 0.01 * 5.0 / (1.0 + 0.1 * 5.0)
    expected = np.array([3.0, 4.0]) - 0.5 * trust * (g + 0.1 * np.array([3.0, 4.0]))
    np.testing.assert_allclose(ops.convert_to_numpy(w), expected, rtol=1e-6)


def test_sparse_cross_entropy_with_label_smoothing_matches_the_one_hot_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 5, size=6)
    ours = kr.losses.SparseCategoricalCrossentropy(label_smoothing=0.2, from_logits=True)
    keras_one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=0.2, from_logits=True)
    np.testing.assert_allclose(
        float(ours(labels, logits)), float(keras_one_hot(np.eye(5)[labels], logits)), rtol=1e-6
    )
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(
        float(kr.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)),
        float(plain(labels, logits)),
        rtol=1e-6,
    )
    ignoring = kr.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=labels[0])
    kept = labels != labels[0]
    expected = plain(labels[kept], logits[kept]) * kept.sum() / len(labels)
    np.testing.assert_allclose(float(ignoring(labels, logits)), float(expected), rtol=1e-5)
    restored = keras.losses.deserialize(keras.losses.serialize(ours))
    assert restored.get_config() == ours.get_config()
    with pytest.raises(ValueError, match="label_smoothing"):
        kr.losses.SparseCategoricalCrossentropy(label_smoothing=1.0)
