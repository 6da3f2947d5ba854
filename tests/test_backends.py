"""The zoo and the training toolkit on whichever Keras backend runs the suite.

`make test` runs this file three times: in the main run (TensorFlow), then
under `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`. The other test files
check every model and tool in depth on TensorFlow; this one checks that
one model per family, the dense heads, the per-layer-rate optimizer and
`fine_tune` work on each backend, with the data still coming from
`tf.data`, which Keras feeds to every backend.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.optimizers import with_lr_multipliers

BACKEND = keras.backend.backend()


def family_representatives():
    """The first light model of each family, in registry order."""
    chosen = {}
    for name in kr.list_models():
        card = kr.model_card(name)
        if not card.heavy:
            chosen.setdefault(card.family, name)
    return sorted(chosen.values())


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def random_images(size, batch_size=2):
    return np.random.default_rng(0).uniform(0, 1, (batch_size, size, size, 3)).astype("float32")


def round_trip(model, path):
    model.save(path)
    return keras.saving.load_model(path)


def test_one_model_per_family_is_chosen():
    families = {kr.model_card(name).family for name in family_representatives()}
    expected = {"resnet", "mobilenet_v2", "efficientnet", "convnext", "vgg", "alexnet"}
    assert expected | {"inception", "vit"} <= families


@pytest.mark.parametrize("name", family_representatives())
def test_forward_train_step_and_round_trip(name, tmp_path):
    size = max(16, kr.model_card(name).min_input_size)
    keras.utils.set_random_seed(0)
    model = kr.create_model(name, input_shape=(size, size, 3), num_classes=3)
    images = random_images(size)
    # predict, not model(images): on JAX a compiled forward pass is seconds faster than the
    # eager one, which compiles each operation on its own.
    outputs = model.predict(images, verbose=0)
    assert outputs.shape == (2, 3)
    np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, rtol=1e-5)

    loaded = round_trip(model, tmp_path / f"{name}.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), outputs, atol=1e-6)

    head = model.get_layer("head_dense").kernel
    before = numpy(head).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(images, np.array([0, 2]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, numpy(head))


def head_targets(head):
    if head == "unet":
        return np.random.default_rng(0).integers(0, 3, (2, 64, 64)).astype("int32")
    boxes = np.array([[[4, 4, 30, 30], [-1, -1, -1, -1]]] * 2, "float32")
    return {"boxes": boxes, "labels": np.array([[1, -1]] * 2, "float32")}


# On JAX the two heads take a minute to compile on 2 cores (they pass there too): -m slow.
DENSE_HEADS = [
    pytest.param(head, marks=pytest.mark.slow) if BACKEND == "jax" else head
    for head in ("unet", "retinanet")
]


@pytest.mark.parametrize("head", DENSE_HEADS)
def test_dense_heads_train_predict_and_round_trip(head, tmp_path):
    keras.utils.set_random_seed(0)
    model = kr.create_model(head, backbone="resnet18", num_classes=3, input_shape=(64, 64, 3))
    images = random_images(64)
    # The U-Net with our loss: Keras 3.15's own sparse cross-entropy fails in the PyTorch
    # backward pass on (batch, height, width, classes) outputs ("grad_input must be contiguous").
    loss = kr.losses.SparseCategoricalCrossentropy() if head == "unet" else None
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    history = model.fit(images, head_targets(head), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    loaded = round_trip(model, tmp_path / f"{head}.keras")
    expected, actual = model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    if head == "unet":
        assert expected.shape == (2, 64, 64, 3)
        np.testing.assert_allclose(actual, expected, atol=1e-5)
    else:
        assert set(expected) >= {"boxes", "confidence", "labels", "num_detections"}
        np.testing.assert_allclose(actual["boxes"], expected["boxes"], atol=1e-3)


def two_layer_regressor():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, use_bias=False, name="body")(inputs)
    outputs = keras.layers.Dense(1, use_bias=False, name="head")(hidden)
    return keras.Model(inputs, outputs)


def one_step(model, optimizer):
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    y = np.ones((8, 1), "float32")
    before = {w.path: numpy(w).copy() for w in model.weights}
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return {w.path: numpy(w) - before[w.path] for w in model.weights}


def test_per_layer_rates_scale_each_step_and_skip_frozen_layers():
    plain = one_step(two_layer_regressor(), keras.optimizers.SGD(0.1))
    model = two_layer_regressor()
    scaled = one_step(model, with_lr_multipliers(keras.optimizers.SGD(0.1), {"body": 0.25}, model))
    np.testing.assert_allclose(scaled["body/kernel"], 0.25 * plain["body/kernel"], rtol=1e-5)
    np.testing.assert_allclose(scaled["head/kernel"], plain["head/kernel"], rtol=1e-5)

    # Built on every variable that can train (so unfreezing later finds its state), while
    # the train step updates only what trains now: the JAX trainer's case.
    model = two_layer_regressor()
    model.get_layer("body").trainable = False
    optimizer = with_lr_multipliers(keras.optimizers.AdamW(0.1), {"body": 0.25}, model)
    frozen = one_step(model, optimizer)
    assert len(optimizer.paths) == 2
    assert not frozen["body/kernel"].any()
    assert np.abs(frozen["head/kernel"]).min() > 0.01


def colour_data(num_images, seed):
    """Noise images tinted red (class 1) or green (class 0)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 155, (num_images, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 2, num_images).astype("int32")
    images[labels == 1, :, :, 0] += 100
    images[labels == 0, :, :, 1] += 100
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)


def test_fine_tune_learns_in_both_phases_at_per_layer_rates(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = kr.create_model("baseline_cnn", input_shape=(16, 16, 3), include_top=False)
    config = kr.FineTuneConfig(
        head_epochs=2, finetune_epochs=4, head_lr=1e-2, precision="float32", out_dir=tmp_path
    )
    model, history = kr.fine_tune(
        backbone, colour_data(256, seed=0), colour_data(128, seed=1), num_classes=2, config=config
    )
    accuracy = history.history["val_accuracy"]
    assert len(accuracy) == 6
    assert accuracy[-1] >= 0.9, f"{BACKEND}: validation accuracy by epoch {accuracy}"
    head_rates = np.array(history.history["lr/head"][2:])
    backbone_rates = np.array(history.history["lr/backbone"][2:])
    np.testing.assert_allclose(backbone_rates, 0.1 * head_rates, rtol=1e-6)


def test_fine_tune_on_the_demo_folder_writes_the_run_folder(tmp_path):
    folder = kr.data.make_demo_dataset(tmp_path / "target", num_images=96, bad_files=True)
    train, val, info = kr.data.image_folder(
        folder, image_size=(32, 32), batch_size=16, validation_split=0.25
    )
    assert len(info.skipped) == 4
    backbone = kr.create_model("baseline_cnn", input_shape=(32, 32, 3), include_top=False)
    config = kr.FineTuneConfig(head_epochs=1, finetune_epochs=1, out_dir=tmp_path / "run")
    model, history = kr.fine_tune(backbone, train, val, config=config, info=info)
    assert len(history.history["val_accuracy"]) == 2
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(report["phases"]) == ["head", "finetune"]
    reloaded = keras.saving.load_model(tmp_path / "run" / "model.keras")
    images = next(iter(val))[0]
    np.testing.assert_allclose(numpy(reloaded(images)), numpy(model(images)), atol=1e-5)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the TensorFlow backend takes strategies")
def test_a_tf_distribute_strategy_off_tensorflow_is_a_clear_error():
    with pytest.raises(ValueError, match=f"TensorFlow backend only.*{BACKEND}"):
        kr.fine_tune(
            kr.create_model("baseline_cnn", input_shape=(16, 16, 3), include_top=False),
            colour_data(16, seed=0),
            num_classes=2,
            strategy=tf.distribute.get_strategy(),
        )


@pytest.mark.skipif(BACKEND != "torch", reason="the import-order hazard is PyTorch's")
def test_the_finetune_command_runs_the_demo(tmp_path):
    """`kerasrecipes finetune` on the built-in demo (its data made afresh), one epoch from
    scratch, in a process of its own: the command's own import order, with the PyTorch that
    `make test` installs through the backends extra. With PyTorch's CUDA builds, Keras' torch
    backend imports triton (through torch._dynamo); loaded after TensorFlow's LLVM, it killed
    the command with a segmentation fault at start-up until
    `kerasrecipes._startup.load_triton_before_tensorflow`. (The TensorFlow run tests the
    command in depth: tests/test_cli.py.)"""
    run = tmp_path / "run"
    flags = ["--model", "baseline_cnn", "--image-size", "32", "--weights", "none"]
    result = subprocess.run(
        [sys.executable, "-m", "kerasrecipes", "finetune", *flags, "--finetune-epochs", "1"]
        + ["--out", str(run)],
        env={
            **os.environ,
            "KERASRECIPES_CACHE": str(tmp_path / "cache"),
            "PYTHONFAULTHANDLER": "1",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{BACKEND}: exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Final validation accuracy" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert list(report["phases"]) == ["finetune"]
    assert 0.0 <= report["phases"]["finetune"]["val_accuracy"] <= 1.0
