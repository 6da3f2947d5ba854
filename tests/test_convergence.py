"""Training that converges by default: PreciseBN, step budgets, the image size from the data."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.finetune.config import BUDGETS, FineTuneConfig, resolve_budget


def conv_bn_model(momentum=0.9):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = kr.layers.BatchNormalization(momentum=momentum, name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=momentum, name="frozen_bn")(x)
    return keras.Model(inputs, x)


def test_precise_bn_sets_the_population_statistics_and_leaves_frozen_layers_alone():
    keras.utils.set_random_seed(0)
    model = conv_bn_model()
    model.get_layer("frozen_bn").trainable = False
    frozen_before = keras.ops.convert_to_numpy(model.get_layer("frozen_bn").moving_mean).copy()
    rng = np.random.default_rng(0)
    # Batches from shifted distributions, and a short last one: the population variance
    # includes the spread of the batch means, and batches weigh by their size.
    images = np.concatenate([rng.normal(shift, 1 + shift, (10, 8, 8, 3)) for shift in (0, 2, 5)])
    data = tf.data.Dataset.from_tensor_slices(images.astype("float32")).batch(8)
    callback = kr.callbacks.PreciseBN(data, num_batches=100)
    assert callback.recompute(model) == 1
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    features = keras.ops.convert_to_numpy(conv(images)).reshape(-1, 4).astype("float64")
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean, features.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, features.var(0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9  # restored after the pass
    assert callback.images_read == 30
    np.testing.assert_array_equal(model.get_layer("frozen_bn").moving_mean, frozen_before)


def test_precise_bn_reads_at_most_num_batches_and_round_trips():
    keras.utils.set_random_seed(0)
    model = conv_bn_model()
    images = np.random.default_rng(1).normal(size=(40, 8, 8, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.zeros(40))).batch(10)
    callback = kr.callbacks.PreciseBN(data, num_batches=2, every_epoch=True)
    callback.recompute(model)
    assert callback.images_read == 20
    config = keras.saving.serialize_keras_object(callback)
    copy = keras.saving.deserialize_keras_object(config)
    assert (copy.num_batches, copy.every_epoch, copy.data) == (2, True, None)
    with pytest.raises(ValueError, match="PreciseBN: no data"):
        copy.on_train_begin()
    with pytest.raises(ValueError, match="num_batches"):
        kr.callbacks.PreciseBN(data, num_batches=0)


def stripes(num_images, classes=(2, 5), seed=7):
    images, labels = kr.data.demo_images(num_images=num_images * 5, num_classes=10, seed=seed)
    keep = np.isin(labels, classes)
    return images[keep][:num_images].astype("float32"), (labels[keep][:num_images] == classes[1])


def batch_statistics_accuracy(model, images, labels):
    """Accuracy with each batch of 32 normalized by its own statistics; the weights restored."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.weights]
    order = np.random.default_rng(0).permutation(len(labels))
    hits = 0
    for start in range(0, len(labels), 32):
        batch = order[start : start + 32]
        predicted = keras.ops.convert_to_numpy(model(images[batch], training=True)).argmax(-1)
        hits += int((predicted == labels[batch]).sum())
    for variable, value in zip(model.weights, saved):
        variable.assign(value)
    return hits / len(labels)


def test_a_short_run_saves_a_model_that_scores_as_the_network_it_trained(tmp_path):
    """42 steps from scratch at Keras' default momentum 0.99: the moving averages still hold
    58% of their start. Measured: inference accuracy 0.519 against 1.000 with batch
    statistics without PreciseBN, 1.000 with it (docs/regularization.md)."""
    images, labels = stripes(272)
    train = tf.data.Dataset.from_tensor_slices((images[:218], labels[:218])).batch(32)
    val_images, val_labels = images[218:], labels[218:].astype("int64")
    val = tf.data.Dataset.from_tensor_slices((val_images, val_labels)).batch(32)
    backbone = kr.load_backbone("resnet20", "none", image_size=32, verbose=0)
    _, history = kr.fine_tune(
        backbone,
        train,
        val,
        num_classes=2,
        weights="none",
        finetune_epochs=6,
        bn_momentum=0.99,
        out_dir=str(tmp_path / "run"),
        verbose=0,
    )
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    inference = float((saved.predict(val_images, verbose=0).argmax(-1) == val_labels).mean())
    network = batch_statistics_accuracy(saved.network, val_images, val_labels)
    assert network >= 0.9, history.history
    assert abs(inference - network) <= 0.02


@pytest.mark.parametrize(
    ("images", "scratch", "expected"),
    [(218, True, 60), (2400, True, 14), (20000, True, 8), (323, False, 14), (20000, False, 3)],
)
def test_default_budgets_scale_with_the_data(images, scratch, expected):
    steps_per_epoch = -(-images // 32)
    config = FineTuneConfig(weights="none" if scratch else "imagenet")
    resolved = resolve_budget(config, steps_per_epoch)
    assert resolved.finetune_epochs == expected
    budget = BUDGETS["scratch" if scratch else "finetune"]
    assert resolved.finetune_epochs * steps_per_epoch >= min(
        budget.steps, budget.most * steps_per_epoch
    )


def test_epoch_flags_and_step_budgets_win_over_the_default():
    resolved = resolve_budget(FineTuneConfig(head_epochs=4, finetune_epochs=6), 11)
    assert (resolved.head_epochs, resolved.finetune_epochs) == (4, 6)
    resolved = resolve_budget(FineTuneConfig(head_steps=0, finetune_steps=100), 11)
    assert (resolved.head_epochs, resolved.finetune_epochs) == (0, 10)
    with pytest.raises(ValueError, match="finetune_steps"):
        resolve_budget(FineTuneConfig(finetune_steps=-1), 11)
    phases = kr.plan_phases(kr.resolve_config(demo=True), steps_per_epoch=11)
    assert [(phase.name, phase.epochs) for phase in phases] == [("head", 6), ("finetune", 14)]


def test_the_weight_average_warms_up_its_decay():
    """Step t averages at min(0.99, (1 + t) / (10 + t)): after 5 steps of -1 the average is
    -4.5 (at Keras' fixed 0.99 it would still be about -1.1)."""
    from kerasrecipes import _compat

    variable = keras.Variable(np.zeros(1, "float32"))
    optimizer = _compat.warm_up_ema(keras.optimizers.SGD(1.0, use_ema=True, ema_momentum=0.99))
    optimizer.build([variable])
    average, expected = [], 0.0
    for step in range(5):
        optimizer.apply([np.ones(1, "float32")], [variable])
        decay = 0.0 if step == 0 else min(0.99, (1 + step) / (10 + step))
        expected = decay * expected - (1 - decay) * (step + 1.0)
        average.append(keras.ops.convert_to_numpy(optimizer._model_variables_moving_average[0]))
        np.testing.assert_allclose(average[-1], [expected], rtol=1e-6)
    assert float(average[-1][0]) < -4.4


def test_the_image_size_comes_from_the_data_without_pretrained_weights(tmp_path):
    from PIL import Image

    for index, (height, width) in enumerate([(30, 34), (32, 32), (40, 24), (500, 500)]):
        folder = tmp_path / "data" / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height)).save(folder / f"{index}.png")
    (tmp_path / "data" / "class0" / "broken.png").write_bytes(b"not an image")
    data = str(tmp_path / "data")
    # Median side 32 of (32, 32, 32, 500): 32 px, not the card's 224.
    config = kr.resolve_config(model="efficientnet_b0", weights="none", demo=False, data=data)
    assert config.image_size == 32
    # A size set, or pretrained weights, win over the data.
    assert (
        kr.resolve_config(model="resnet18", weights="none", image_size=64, data=data).image_size
        == 64
    )
    assert kr.resolve_config(model="resnet18", weights="imagenet", data=data).image_size == 224
    # Rounded to RetinaNet's stride for detection, and never below the card's smallest input.
    assert kr.finetune.config.data_image_size(data, "resnet18", "detection") == 32
    assert kr.finetune.config.data_image_size(data, "inception_v3") == 75
    (tmp_path / "empty").mkdir()
    assert kr.finetune.config.data_image_size(tmp_path / "empty", "resnet18") == 224  # the card's


def test_bn_momentum_is_a_builder_argument_on_the_card_and_round_trips(tmp_path):
    from kerasrecipes.layers.normalization import BN_MOMENTUM

    assert kr.model_card("resnet20").bn_momentum == BN_MOMENTUM == 0.9
    assert kr.model_card("vit_tiny16").bn_momentum is None
    model = kr.create_model("resnet20", input_shape=(32, 32, 3), bn_momentum=0.97)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and {layer.momentum for layer in norms} == {0.97}
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.get_layer(norms[0].name).momentum == 0.97
    with pytest.raises(ValueError, match="vit_tiny16 has no BatchNorm layers"):
        kr.create_model("vit_tiny16", bn_momentum=0.9)


def test_lr_auto_runs_the_range_test_before_the_phase_and_reports_it(tmp_path):
    from test_finetune import tiny_backbone, toy_data

    from kerasrecipes.cli import build_parser

    data = toy_data(num_images=64)
    _, history = kr.fine_tune(
        tiny_backbone(),
        data,
        data,
        num_classes=2,
        head_lr="auto",
        head_epochs=1,
        finetune_epochs=0,
        out_dir=str(tmp_path / "run"),
        verbose=0,
    )
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    found = report["lr_find"]["head"]
    curve = json.loads((tmp_path / "run" / found["curve"]).read_text())
    assert found["suggested_lr"] == curve["suggested_lr"] > 0
    assert len(curve["learning_rates"]) == len(curve["losses"]) > 10
    assert (tmp_path / "run" / "lr_find" / "head.png").exists()
    # The phase trained at the rate found (the head phase's rate is constant).
    assert history.history["learning_rate"][0] == pytest.approx(found["suggested_lr"], rel=1e-5)
    assert report["phase_plan"][0]["learning_rate"] == "auto"
    args = build_parser().parse_args(["finetune", "--lr", "auto"])
    assert args.head_lr == "auto"
    with pytest.raises(ValueError, match="head_lr must be a number >= 0 or 'auto'"):
        kr.resolve_config(head_lr="fast")


def test_a_demo_backbone_far_from_converged_is_named_never_used_silently(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path))
    folder = tmp_path / "demo" / "backbones"
    folder.mkdir(parents=True)
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)).save(
        folder / "mobilenet_v2_32px_6ep.keras"
    )
    report = {"model": "mobilenet_v2", "image_size": 32, "epochs": 6, "val_accuracy": 0.213}
    (folder / "mobilenet_v2_32px_6ep.json").write_text(json.dumps(report))
    with pytest.warns(UserWarning, match="far from converged"):
        loaded = kr.load_backbone("mobilenet_v2", "demo")
    assert "(validation accuracy 0.213)" in loaded.description
    assert "WARNING: its pre-training ended far from converged" in loaded.description
