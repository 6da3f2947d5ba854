"""LRFinder, UnfreezeBackbone, TrainingCurves, LogLearningRates, default_callbacks, end to end."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import kerasrecipes as kr
from kerasrecipes.callbacks import LRFinder, TrainingCurves, UnfreezeBackbone
from kerasrecipes.optimizers import with_lr_multipliers


def blobs(n=256, seed=0, classes=3):
    """Separable Gaussian blobs in 8 dimensions: a tiny classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, 8))
    labels = rng.integers(0, classes, size=n)
    x = centers[labels] + rng.normal(size=(n, 8))
    return x.astype("float32"), labels


def mlp(seed=0, classes=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="body"),
            keras.layers.Dense(classes, name="head"),
        ]
    )


def snapshot(model):
    return [ops.convert_to_numpy(v).copy() for v in model.weights]


# -- LRFinder ------------------------------------------------------------------------------------


def test_lr_finder_sweeps_suggests_and_restores_everything(tmp_path):
    model = mlp()
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = blobs()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # some optimizer state to keep
    weights = snapshot(model)
    state = [ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]
    finder = LRFinder(start_lr=1e-4, end_lr=100.0, num_steps=60, plot_path=str(tmp_path / "lr.png"))
    model.fit(x, y, batch_size=32, epochs=20, callbacks=[finder], verbose=0)
    assert 10 < len(finder.learning_rates) <= 60
    rates = np.array(finder.learning_rates)
    np.testing.assert_allclose(rates[1:] / rates[:-1], (1e6) ** (1 / 59), rtol=1e-6)
    # It stopped because the loss blew up at the top of the range, or ran the full sweep.
    assert len(rates) == 60 or finder.smoothed_losses[-1] > 4 * min(finder.smoothed_losses)
    assert 1e-4 < finder.suggested_lr < finder.min_loss_lr <= rates[-1]
    for before, after in zip(weights, snapshot(model)):
        np.testing.assert_array_equal(before, after)
    for before, variable in zip(state, model.optimizer.variables):
        np.testing.assert_array_equal(before, ops.convert_to_numpy(variable))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert (tmp_path / "lr.png").stat().st_size > 5000
    # And training continues as before the sweep.
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_lr_finder_sweeps_the_base_rate_with_the_multipliers_in_place():
    model = mlp()
    schedule = kr.schedules.WarmupCosine(0.1, total_steps=1000, warmup_steps=100)
    optimizer = with_lr_multipliers(keras.optimizers.SGD(schedule), {"body": 0.1})
    model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(optimizer.group_learning_rates())
    )
    finder = LRFinder(start_lr=1e-3, end_lr=1.0, num_steps=20)
    x, y = blobs()
    model.fit(x, y, batch_size=16, epochs=5, callbacks=[finder, probe], verbose=0)
    assert len(seen) == 20
    np.testing.assert_allclose([s["default"] for s in seen], finder.learning_rates, rtol=1e-5)
    np.testing.assert_allclose(
        [s["body"] for s in seen], 0.1 * np.array(finder.learning_rates), rtol=1e-5
    )
    # The schedule is back, at the step where the optimizer was.
    assert optimizer.inner_optimizer._learning_rate is schedule
    assert int(optimizer.iterations) == 0


def test_lr_finder_under_mirrored_strategy(two_device_strategy):
    strategy = two_device_strategy
    with strategy.scope():
        model = mlp()
        model.compile(
            with_lr_multipliers(keras.optimizers.SGD(0.01), {"body": 0.5}),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    weights = snapshot(model)
    x, y = blobs()
    finder = LRFinder(start_lr=1e-3, end_lr=1.0, num_steps=16)
    model.fit(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
        epochs=4,
        callbacks=[finder],
        verbose=0,
    )
    assert len(finder.losses) == 16 and np.all(np.isfinite(finder.losses))
    for before, after in zip(weights, snapshot(model)):
        np.testing.assert_array_equal(before, after)


# -- UnfreezeBackbone ----------------------------------------------------------------------------


def backbone_model(seed=0):
    """A nested conv backbone (three blocks with BatchNorm) and a dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for block in (1, 2, 3):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"block{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = keras.layers.ReLU(name=f"block{block}_relu")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    outer = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone(outer))
    model = keras.Model(outer, keras.layers.Dense(2, name="head_dense")(pooled))
    return model, backbone


def images(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int32")
    return x, y


def compile_for_finetuning(model, lr=0.01):
    optimizer = with_lr_multipliers(keras.optimizers.Adam(lr), {"backbone": 0.1}, model=model)
    model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return optimizer


def weights_of(layer):
    return [ops.convert_to_numpy(v).copy() for v in layer.weights]


class RecordEachEpoch(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.before = layer, []

    def on_epoch_begin(self, epoch, logs=None):
        self.before.append(weights_of(self.layer))


def test_unfreeze_backbone_at_an_epoch_keeps_batchnorm_and_optimizer_state():
    model, backbone = backbone_model()
    optimizer = compile_for_finetuning(model)
    x, y = images()
    conv = backbone.get_layer("block1_conv")
    record = RecordEachEpoch(conv)
    bn_before = weights_of(backbone.get_layer("block2_bn"))
    unfreeze = UnfreezeBackbone(backbone, epoch=1)
    model.fit(x, y, batch_size=16, epochs=3, callbacks=[record, unfreeze], verbose=0)
    conv_after_0, conv_after_1 = record.before[1], record.before[2]
    for a, b in zip(record.before[0], conv_after_0):
        np.testing.assert_array_equal(a, b)  # frozen in epoch 0
    assert not np.allclose(conv_after_0[0], conv_after_1[0])  # trained from epoch 1
    for a, b in zip(bn_before, weights_of(backbone.get_layer("block2_bn"))):
        np.testing.assert_array_equal(a, b)  # gamma, beta, moving mean and variance
    assert optimizer is model.optimizer and int(optimizer.iterations) == 12
    assert not backbone.get_layer("block2_bn").trainable and conv.trainable
    assert kr.callbacks.phase_marks(model) == {1: "unfreeze backbone"}


def test_unfreeze_top_blocks_and_train_bn():
    model, backbone = backbone_model()
    compile_for_finetuning(model)
    x, y = images()
    first = weights_of(backbone.get_layer("block1_conv"))
    last_bn = weights_of(backbone.get_layer("block3_bn"))
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[UnfreezeBackbone(backbone, epoch=1, blocks=1, train_bn=True)],
    )
    for a, b in zip(first, weights_of(backbone.get_layer("block1_conv"))):
        np.testing.assert_array_equal(a, b)  # below the top block: still frozen
    assert not backbone.get_layer("block2_conv").trainable
    assert backbone.get_layer("block3_conv").trainable
    moving_mean = 2
    assert not np.allclose(last_bn[moving_mean], weights_of(backbone.get_layer("block3_bn"))[2])


def test_progressive_schedule_and_lr_multiplier():
    model, backbone = backbone_model()
    optimizer = compile_for_finetuning(model)
    x, y = images()
    seen = {}
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.update(
            {epoch: [layer.trainable for layer in backbone.layers if layer.weights]}
        )
    )
    unfreeze = UnfreezeBackbone(backbone, schedule={1: 1, 2: None}, lr_multiplier=0.5)
    model.fit(x, y, batch_size=32, epochs=3, callbacks=[unfreeze, probe], verbose=0)
    # Layers with weights: conv, bn for each of three blocks; BN stays frozen.
    assert seen[0] == [False] * 6
    assert seen[1] == [False, False, False, False, True, False]
    assert seen[2] == [True, False, True, False, True, False]
    values = optimizer.multiplier_values()
    assert values["backbone/block1_conv/kernel"] == pytest.approx(0.5)
    assert values["backbone/block1_bn/gamma"] == pytest.approx(0.1)  # never unfrozen


def test_unfreeze_works_with_a_plain_optimizer_compiled_on_the_frozen_model():
    model, backbone = backbone_model()
    backbone.trainable = False
    model.compile(
        keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = images()
    conv = backbone.get_layer("block1_conv")
    start = weights_of(conv)
    model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, callbacks=[UnfreezeBackbone(backbone, epoch=1)]
    )
    assert not np.allclose(start[0], weights_of(conv)[0])


def run_with_backup(backup_dir, epochs, stop_at=None):
    model, backbone = backbone_model()
    compile_for_finetuning(model)
    x, y = images()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        UnfreezeBackbone(backbone, epoch=1),
    ]
    if stop_at is not None:

        def interrupt(epoch, logs):
            if epoch == stop_at:
                raise KeyboardInterrupt

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=interrupt))
    try:
        model.fit(x, y, batch_size=16, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False)
    except KeyboardInterrupt:
        pass
    return model, backbone, callbacks[1]


def test_resuming_after_the_unfreeze_epoch_does_not_freeze_again(tmp_path):
    straight, _, _ = run_with_backup(tmp_path / "a", epochs=3)
    run_with_backup(tmp_path / "b", epochs=3, stop_at=2)  # killed after two epochs
    resumed, backbone, unfreeze = run_with_backup(tmp_path / "b", epochs=3)
    assert unfreeze.state is None and backbone.get_layer("block1_conv").trainable
    assert int(resumed.optimizer.iterations) == 12
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6)


def test_unfreeze_backbone_under_mirrored_strategy(two_device_strategy):
    strategy = two_device_strategy
    with strategy.scope():
        model, backbone = backbone_model()
        backbone.trainable = False  # the optimizer is built on the head alone, then rebuilt
        compile_for_finetuning(model)
    x, y = images()
    conv = backbone.get_layer("block1_conv")
    start = weights_of(conv)
    bn = weights_of(backbone.get_layer("block1_bn"))
    model.fit(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
        epochs=2,
        verbose=0,
        callbacks=[UnfreezeBackbone(backbone, epoch=1)],
    )
    assert not np.allclose(start[0], weights_of(conv)[0])
    for a, b in zip(bn, weights_of(backbone.get_layer("block1_bn"))):
        np.testing.assert_array_equal(a, b)


def test_unfreeze_backbone_errors_name_the_problem():
    model, _ = backbone_model()
    model.compile(keras.optimizers.Adam(), loss="mse")
    with pytest.raises(ValueError, match="backbone='trunk'"):
        UnfreezeBackbone("trunk").set_model(model)
    with pytest.raises(ValueError, match="blocks None or >= 1"):
        UnfreezeBackbone(blocks=0)


# -- TrainingCurves, LogLearningRates, default_callbacks -----------------------------------------


def test_training_curves_follow_several_fits_and_mark_phases(tmp_path):
    model = mlp()
    model.compile(
        "adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = blobs()
    curves = TrainingCurves(tmp_path / "curves.png")
    model.fit(x, y, validation_split=0.25, epochs=2, verbose=0, callbacks=[curves])
    kr.callbacks.mark_phase(model, 2, "fine-tune")
    model.fit(x, y, validation_split=0.25, initial_epoch=2, epochs=4, verbose=0, callbacks=[curves])
    assert sorted(curves.epochs) == [0, 1, 2, 3]
    assert curves.quantities() == ["loss", "accuracy"]
    assert "val_accuracy" in curves.epochs[3]
    assert (tmp_path / "curves.png").stat().st_size > 10000


def test_default_callbacks_assemble_keras_builtins(tmp_path):
    callbacks = kr.callbacks.default_callbacks(tmp_path, patience=3, ema=True)
    names = [type(c).__name__ for c in callbacks]
    assert names == [
        "EarlyStopping",
        "TerminateOnNaN",
        "LogLearningRates",
        "SwapEMAWeights",
        "AtomicBackupAndRestore",
        "ModelCheckpoint",
        "CSVLogger",
        "TrainingCurves",
    ]
    assert callbacks[0].restore_best_weights and callbacks[0].patience == 3
    with pytest.warns(UserWarning, match="patience"):
        kr.callbacks.default_callbacks(patience=1)


def test_atomic_backup_moves_finished_files_into_place_and_restores(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    backup = kr.callbacks.AtomicBackupAndRestore(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(4)
    assert sorted(os.listdir(tmp_path / "backup")) == [
        "latest.weights.h5",
        "training_metadata.json",
    ]
    saved = model.get_weights()
    model.set_weights([np.zeros_like(w) for w in saved])
    restored = kr.callbacks.AtomicBackupAndRestore(str(tmp_path / "backup"))
    restored.set_model(model)
    restored.on_train_begin()
    for old, new in zip(saved, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert model._initial_epoch == 5
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(backup))
    assert again.get_config() == backup.get_config()


def test_end_to_end_layer_decay_warmup_cosine_plateau_and_early_stopping():
    """Layer decay + warmup-cosine + ReduceLROnPlateau + EarlyStopping on a tiny problem.

    Converges, and the per-group rates logged each epoch equal schedule x plateau factor x
    multiplier, with the plateau reductions replayed here from the logged validation loss.
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu", name="stem_dense"),
            keras.layers.Dense(32, activation="relu", name="stage1_block1_dense"),
            keras.layers.Dense(32, activation="relu", name="stage1_block2_dense"),
            keras.layers.Dense(3, name="head_dense"),
        ]
    )
    multipliers = kr.optimizers.layer_decay_multipliers(model, rate=0.5)
    assert list(multipliers.values()) == [0.125, 0.25, 0.5, 1.0]
    steps_per_epoch, epochs = 12, 30
    schedule = kr.schedules.WarmupCosine(
        0.01, total_steps=steps_per_epoch * epochs, warmup_steps=steps_per_epoch
    )
    optimizer = kr.optimizers.exclude_from_decay(
        with_lr_multipliers(
            keras.optimizers.AdamW(schedule, weight_decay=1e-4), multipliers, model=model
        ),
        model,
    )
    model.compile(
        optimizer,
        loss=kr.losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.05),
        metrics=["accuracy"],
    )
    x, y = blobs(n=480, seed=1)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=1, min_delta=1e-3, min_lr=0.0
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
    history = model.fit(
        x[:384],
        y[:384],
        validation_data=(x[384:], y[384:]),
        batch_size=32,
        epochs=epochs,
        verbose=0,
        callbacks=[
            plateau,
            stop,
            kr.callbacks.LogLearningRates(),
        ],
    ).history
    assert max(history["val_accuracy"]) >= 0.95

    # Replay ReduceLROnPlateau from the logged validation losses.
    factor, best, wait, scale, expected = 1.0, np.inf, 0, 1.0, []
    for epoch, val_loss in enumerate(history["val_loss"]):
        if val_loss < best - 1e-3:
            best, wait = val_loss, 0
        else:
            wait += 1
            if wait >= 1:
                scale, wait = scale * 0.5, 0
        expected.append(float(schedule((epoch + 1) * steps_per_epoch)) * scale * factor)
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)
    for pattern, multiplier in multipliers.items():
        label = kr.callbacks.group_label(pattern)
        np.testing.assert_allclose(
            history[f"lr/{label}"], multiplier * np.array(expected), rtol=1e-5
        )
    assert scale < 1.0, "the plateau callback never fired; the test would not check it"


def test_unfreeze_top_blocks_of_one_of_our_models_by_default_names():
    model = kr.create_model("resnet20", num_classes=2, input_shape=(16, 16, 3))
    model.compile(
        with_lr_multipliers(keras.optimizers.SGD(0.01), {"stage": 0.1}, model=model),
        loss="sparse_categorical_crossentropy",
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16, 16, 3)).astype("float32"), rng.integers(0, 2, 8)
    seen = {}
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.update(
            {epoch: sorted({v.path.split("/")[0] for v in model.trainable_variables})}
        )
    )
    # backbone=None: everything but the head_* layers; the top 2 of 9 blocks unfreeze.
    model.fit(x, y, epochs=2, verbose=0, callbacks=[UnfreezeBackbone(epoch=1, blocks=2), probe])
    assert seen[0] == ["head_dense"]
    assert seen[1] == ["head_dense", "stage3_block2", "stage3_block3"]


def _early_stopping_run(callback, model, losses, first=0, stop_at=None):
    """Feeds `losses` as val_loss from epoch `first` on, changing the weights each epoch, as
    `fit` would call the callback; returns the epoch it stopped at (or None)."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch in range(first, len(losses)):
        if stop_at is not None and epoch == stop_at:
            return "killed"
        callback.on_epoch_begin(epoch)
        model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, float(epoch)))
        callback.on_epoch_end(epoch, {"val_loss": losses[epoch]})
        if model.stop_training:
            callback.on_train_end()
            return epoch
    callback.on_train_end()
    return None


@pytest.mark.parametrize("killed_after", [1, 2, 3, 4])
def test_early_stopping_resumed_after_a_kill_stops_where_the_whole_run_stops(
    tmp_path, killed_after
):
    losses = [1.0, 0.5, 0.6, 0.7, 0.4, 0.8, 0.9, 0.95, 0.99]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    options = dict(monitor="val_loss", patience=3, restore_best_weights=True)
    whole = kr.callbacks.ResumableEarlyStopping(state_dir=tmp_path / "whole", **options)
    stopped = _early_stopping_run(whole, model, losses)
    expected_weights = [np.array(w) for w in model.get_weights()]
    assert stopped == 7 and whole.best_epoch == 4

    state = tmp_path / "killed"
    first = kr.callbacks.ResumableEarlyStopping(state_dir=state, **options)
    assert _early_stopping_run(first, model, losses, stop_at=killed_after + 1) == "killed"
    fresh = kr.callbacks.ResumableEarlyStopping(state_dir=state, **options)  # a new process
    assert _early_stopping_run(fresh, model, losses, first=killed_after + 1) == 7
    assert fresh.best_epoch == 4
    for got, want in zip(model.get_weights(), expected_weights):
        np.testing.assert_array_equal(got, want)
    assert len(os.listdir(state)) <= 4  # two epochs' states and their best weights


def test_keras_early_stopping_would_stop_later_after_the_same_kill(tmp_path):
    """What the resumable one fixes: Keras' own waits its patience anew after a resume."""
    losses = [1.0, 0.5, 0.6, 0.7, 0.4, 0.8, 0.9, 0.95, 0.99]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)
    assert _early_stopping_run(plain, model, losses, first=6) is None  # no stop by epoch 8


def test_resumable_early_stopping_round_trips_through_its_config(tmp_path):
    callback = kr.callbacks.ResumableEarlyStopping(
        state_dir=tmp_path, monitor="val_accuracy", mode="max", patience=4, start_from_epoch=2
    )
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert type(again) is type(callback) and again.get_config() == callback.get_config()
