"""fine_tune: the two phases, frozen BatchNorm, per-layer rates, resuming, weights, replicas."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import single_trace
import tensorflow as tf
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

import kerasrecipes as kr
from kerasrecipes import _compat


def tiny_backbone(name="tiny", size=16):
    """Two conv-BN-ReLU blocks named as our models name blocks."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for stage, filters in ((1, 8), (2, 16)):
        prefix = f"stage{stage}_block1"
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    return keras.Model(inputs, x, name=name)


# These tests read the given backbone's variables after training. float32 trains that backbone
# in place; mixed precision (what precision="auto" picks on AMX CPUs) trains a rebuilt copy,
# which the returned model holds.
IN_PLACE = "float32"


def toy_data(num_images=64, size=16, batch_size=16, seed=0):
    """Images whose class is whether the red channel is brighter than the green one."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (num_images, size, size, 3)).astype("float32")
    labels = (images[..., 0].mean((1, 2)) > images[..., 1].mean((1, 2))).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    return data.batch(batch_size)


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def batch_norm_statistics(model):
    return [v for v in model.weights if "moving" in v.path]


def kernels(model):
    return [v for v in model.weights if v.path.endswith("kernel")]


def test_both_phases_keep_every_batch_norm_statistic_of_a_keras_applications_backbone():
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    statistics = batch_norm_statistics(backbone)
    before, kernels_before = values(statistics), values(kernels(backbone))
    assert len(statistics) == 2 * 52
    data = toy_data(num_images=32, size=32)
    model, history = kr.fine_tune(
        backbone,
        data,
        data,
        num_classes=2,
        head_epochs=1,
        finetune_epochs=1,
        precision=IN_PLACE,
        verbose=0,
    )
    for old, new in zip(before, values(statistics)):
        np.testing.assert_array_equal(old, new)
    moved = [not np.array_equal(a, b) for a, b in zip(kernels_before, values(kernels(backbone)))]
    # Phase 2 trains the backbone. A few kernels get no gradient at all: with random weights
    # and frozen (initial) statistics some ReLU6 units are saturated for every image.
    assert sum(moved) >= 0.8 * len(moved), f"{sum(moved)} of {len(moved)} kernels moved"
    assert history.phases == {"head": 0, "finetune": 1}
    assert history.epoch == [0, 1] and len(history.history["val_accuracy"]) == 2
    assert kr.callbacks.phase_marks(model) == {0: "head (backbone frozen)", 1: "unfreeze backbone"}


def test_train_bn_lets_the_statistics_move_and_head_only_keeps_the_backbone():
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    statistics = batch_norm_statistics(backbone)
    before, kernels_before = values(statistics), values(kernels(backbone))
    data = toy_data()
    model, history = kr.fine_tune(
        backbone,
        data,
        None,
        num_classes=2,
        head_epochs=2,
        finetune_epochs=0,
        precision=IN_PLACE,
        verbose=0,
    )
    assert history.phases == {"head": 0} and len(history.epoch) == 2
    for old, new in zip(before + kernels_before, values(statistics + kernels(backbone))):
        np.testing.assert_array_equal(old, new)

    kr.fine_tune(
        backbone,
        data,
        None,
        num_classes=2,
        head_epochs=0,
        finetune_epochs=1,
        train_bn=True,
        precision=IN_PLACE,
        verbose=0,
    )
    changed = [not np.array_equal(a, b) for a, b in zip(before, values(statistics))]
    assert all(changed)


def test_per_layer_rates_top_blocks_and_layer_decay():
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    first_before, top_before = values(kernels(backbone))
    data = toy_data()
    model, history = kr.fine_tune(
        backbone,
        data,
        data,
        num_classes=2,
        head_epochs=1,
        head_lr=1e-2,
        finetune_epochs=2,
        backbone_lr_mult=0.25,
        unfreeze=1,
        precision=IN_PLACE,
        verbose=0,
    )
    # The top block trained, the one below stayed frozen.
    first_after, top_after = values(kernels(backbone))
    np.testing.assert_array_equal(first_before, first_after)
    assert not np.array_equal(top_before, top_after)
    # The backbone's rate is a quarter of the head's, under the cosine schedule.
    head_rates = np.array(history.history["lr/head"][1:])
    backbone_rates = np.array(history.history["lr/backbone"][1:])
    assert np.isnan(history.history["lr/backbone"][0])  # frozen in phase 1: no rate logged
    np.testing.assert_allclose(backbone_rates, 0.25 * head_rates, rtol=1e-6)
    assert history.history["learning_rate"][0] == pytest.approx(1e-2)

    model, _ = kr.fine_tune(
        tiny_backbone("decayed"),
        data,
        None,
        num_classes=2,
        head_epochs=0,
        finetune_epochs=1,
        backbone_lr_mult=0.1,
        layer_decay=0.5,
        precision=IN_PLACE,
        verbose=0,
    )
    multipliers = model.optimizer.multiplier_values()
    assert multipliers["head_dense/kernel"] == 1.0
    assert multipliers["decayed/stage2_block1_conv/kernel"] == pytest.approx(0.1 * 0.5)
    assert multipliers["decayed/stage1_block1_conv/kernel"] == pytest.approx(0.1 * 0.25)


def test_progressive_unfreezing_and_bad_arguments():
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    first_before, top_before = values(kernels(backbone))
    data = toy_data(num_images=32)
    # No early stopping: it would restore the best epoch's weights, which may be epoch 0's,
    # from before the first block was unfrozen.
    model, _ = kr.fine_tune(
        backbone,
        data,
        None,
        num_classes=2,
        head_epochs=0,
        finetune_epochs=2,
        unfreeze={0: 1, 1: "all"},
        early_stopping_patience=None,
        precision=IN_PLACE,
        verbose=0,
    )
    assert kr.callbacks.phase_marks(model) == {0: "unfreeze top 1 blocks", 1: "unfreeze backbone"}
    first_after, top_after = values(kernels(backbone))
    assert not np.array_equal(first_before, first_after)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        kr.fine_tune(backbone, data, num_classes=1)
    with pytest.raises(ValueError, match="unfreeze must be 'all'"):
        kr.fine_tune(backbone, data, num_classes=2, unfreeze=0)
    with pytest.raises(ValueError, match="must not both be 0"):
        kr.fine_tune(backbone, data, num_classes=2, head_epochs=0, finetune_epochs=0)


def test_out_dir_resumes_a_finished_phase_and_saves_the_model(tmp_path):
    keras.utils.set_random_seed(0)
    data = toy_data(num_images=32)
    arguments = dict(num_classes=2, head_epochs=2, finetune_epochs=2, verbose=0, seed=0)
    model, history = kr.fine_tune(tiny_backbone(), data, data, out_dir=tmp_path, **arguments)
    for name in ("model.keras", "curves.png", "confusion.png", "history.csv", "report.json"):
        assert (tmp_path / name).exists(), name
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    images = next(iter(data))[0]
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-6)

    # The run is recorded as finished: a second call trains nothing, says so, and gives the
    # stored model and history.
    with pytest.warns(UserWarning, match="finished earlier"):
        again, resumed = kr.fine_tune(tiny_backbone(), data, data, out_dir=tmp_path, **arguments)
    assert resumed.finished_earlier and not history.finished_earlier
    assert resumed.timings == {} and resumed.phases == history.phases
    np.testing.assert_allclose(resumed.history["val_loss"], history.history["val_loss"])
    np.testing.assert_allclose(again(images), model(images), rtol=1e-5, atol=1e-6)


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_oversampling_class_weights_and_augmentation_on_request():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    labels = np.array([0] * 56 + [1] * 8, dtype="int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    # With the rate at 0 nothing trains: the same model scores each epoch, so the losses differ
    # only by which images are drawn (oversampling) or how they are weighted (class weights).
    arguments = dict(
        num_classes=2,
        head_epochs=1,
        finetune_epochs=0,
        head_lr=0.0,
        seed=0,
        verbose=0,
        preprocessing="unit",
        dropout=0.0,
    )
    _, plain = kr.fine_tune(tiny_backbone(), data, None, **arguments)
    _, weighted = kr.fine_tune(
        tiny_backbone(), data, None, balance="class_weight", class_counts=[56, 8], **arguments
    )
    _, oversampled = kr.fine_tune(tiny_backbone(), data, None, balance="oversample", **arguments)
    assert weighted.history["loss"][0] != pytest.approx(plain.history["loss"][0], rel=1e-3)
    assert oversampled.history["loss"][0] != pytest.approx(plain.history["loss"][0], rel=1e-3)

    counter = CountBatches()
    _, augmented = kr.fine_tune(
        tiny_backbone(),
        data,
        None,
        num_classes=2,
        head_epochs=1,
        finetune_epochs=0,
        augment="basic",
        callbacks=[counter],
        seed=0,
        verbose=0,
    )
    assert counter.batches == 4 and len(augmented.epoch) == 1


def test_backbones_from_weights_files(tmp_path):
    keras.utils.set_random_seed(0)
    net = kr.create_model("baseline_cnn", include_top=False, input_shape=(16, 16, 3))
    net.save_weights(tmp_path / "cnn.weights.h5")
    loaded = kr.load_backbone("baseline_cnn", str(tmp_path / "cnn.weights.h5"), image_size=16)
    # The model scales its input itself, with its card's preprocessing.
    assert loaded.preprocessing is None
    assert loaded.model.get_layer("stem_preprocess").mode == "unit"
    for ours, theirs in zip(loaded.model.weights, net.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), theirs.numpy())

    data = toy_data(num_images=16)
    model, _ = kr.fine_tune(
        net, data, None, num_classes=2, head_epochs=1, finetune_epochs=0, verbose=0
    )
    model.save(tmp_path / "finetuned.keras")
    cut = kr.load_backbone(None, str(tmp_path / "finetuned.keras"))
    assert cut.preprocessing is None and cut.model.name == "baseline_cnn"
    assert cut.model.output_shape == net.output_shape
    with pytest.raises(FileNotFoundError, match="Weights file not found"):
        kr.load_backbone(None, str(tmp_path / "missing.keras"))


def test_imagenet_weights_load_through_keras_applications(tmp_path, monkeypatch):
    """The download is replaced by a file made here; the rest of the path is the real one."""
    file_utils = _compat.keras_file_utils()

    keras.utils.set_random_seed(1)
    twin = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None
    )
    path = tmp_path / "mobilenet_v2.weights.h5"
    twin.save_weights(path)
    requested = []

    def local_get_file(fname=None, origin=None, **kwargs):
        requested.append(origin)
        return str(path)

    monkeypatch.setattr(file_utils, "get_file", local_get_file)
    loaded = kr.load_backbone("mobilenet_v2", "imagenet", image_size=96, alpha=0.35)
    assert requested and requested[0].startswith("https://")
    assert loaded.preprocessing is None and "ImageNet" in loaded.description
    assert loaded.model.get_layer("stem_preprocess").mode == "tf"
    raw = kr.load_backbone("mobilenet_v2", "imagenet", 96, preprocessing="tf", alpha=0.35)
    assert raw.preprocessing == "tf" and "stem_preprocess" not in [x.name for x in raw.model.layers]
    for ours, theirs in zip(loaded.model.weights, twin.weights):
        np.testing.assert_array_equal(
            np.reshape(keras.ops.convert_to_numpy(ours), -1),
            np.reshape(keras.ops.convert_to_numpy(theirs), -1),
        )

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(kr.backbones.WeightsUnavailableError, match="Without network"):
        kr.load_backbone("mobilenet_v2", "imagenet", image_size=96, alpha=0.35)
    with pytest.raises(ValueError, match="No ImageNet weights for 'resnet20'"):
        kr.load_backbone("resnet20", "imagenet")


def test_image_preprocessing_matches_keras_applications_and_round_trips(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    for mode in ("caffe", "tf", "torch"):
        expected = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
        layer = kr.layers.ImagePreprocessing(mode)
        np.testing.assert_allclose(layer(images), expected, rtol=1e-5, atol=1e-4)
    model = keras.Sequential([keras.Input((4, 4, 3)), kr.layers.ImagePreprocessing("caffe")])
    model.save(tmp_path / "p.keras")
    np.testing.assert_array_equal(
        keras.saving.load_model(tmp_path / "p.keras")(images), model(images)
    )


def test_one_replica_and_two_give_the_same_loss_curve(two_device_strategy):
    """Both phases under MirroredStrategy over two logical CPUs, against one device.

    With the global batch and the rate held equal (`linear_scaling=False`), two replicas
    average two half-batch gradients, which equals the full-batch gradient up to float32
    summation order (~1e-7 relative per step). BatchNorm is frozen, so no statistic depends on
    the per-replica batch, and dropout is off (its masks are drawn per replica). Over 6 epochs
    of 4 steps the losses agree to 1e-4 relative.
    """
    data = toy_data(num_images=64)
    arguments = dict(
        num_classes=2,
        head_epochs=3,
        head_lr=1e-2,
        finetune_epochs=3,
        verbose=0,
        linear_scaling=False,
        early_stopping_patience=None,
        dropout=0.0,
        seed=0,
        preprocessing="unit",
    )
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    weights = backbone.get_weights()
    keras.utils.set_random_seed(0)
    _, single = kr.fine_tune(backbone, data, data, **arguments)
    backbone = tiny_backbone()
    backbone.set_weights(weights)
    keras.utils.set_random_seed(0)
    model, mirrored = kr.fine_tune(backbone, data, data, strategy=two_device_strategy, **arguments)
    assert model.distribute_strategy is two_device_strategy
    print("largest relative difference of the losses:", relative_difference(mirrored, single))
    np.testing.assert_allclose(mirrored.history["loss"], single.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(mirrored.history["val_loss"], single.history["val_loss"], rtol=1e-4)
    assert single.history["loss"][-1] < single.history["loss"][0]


def relative_difference(a, b):
    return max(
        float(np.max(np.abs(np.subtract(a.history[k], b.history[k])) / np.abs(b.history[k])))
        for k in ("loss", "val_loss")
    )


def test_two_replicas_double_the_batch_and_the_rate(two_device_strategy):
    counter = CountBatches()
    _, history = kr.fine_tune(
        tiny_backbone(),
        toy_data(num_images=64, batch_size=16),
        None,
        num_classes=2,
        head_epochs=1,
        head_lr=1e-3,
        finetune_epochs=0,
        strategy=two_device_strategy,
        callbacks=[counter],
        verbose=0,
    )
    assert counter.batches == 2  # 64 images in global batches of 2 x 16
    assert history.history["learning_rate"][0] == pytest.approx(2e-3)


def test_default_strategy_mirrors_over_two_gpus_or_more(monkeypatch):
    class FakeMirrored:
        pass

    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: ["GPU:0", "GPU:1"])
    assert isinstance(kr.distribute.default_strategy(), FakeMirrored)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: ["GPU:0"])
    assert kr.distribute.default_strategy() is tf.distribute.get_strategy()


def test_linear_scaling_rule():
    data = toy_data(num_images=40, batch_size=8)
    scaled, rate = kr.distribute.scale_for_replicas(data, 1e-3, 4)
    assert rate == pytest.approx(4e-3)
    assert [int(x.shape[0]) for x, _ in scaled] == [32, 8]
    assert kr.distribute.scale_for_replicas(data, 1e-3, 1) == (data, 1e-3)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = textwrap.dedent(
    """
    import json, os, sys
    result, out_dir = sys.argv[1], sys.argv[2]
    inside = os.path.realpath(out_dir) + os.sep
    writes = []

    def audit(event, args):  # what this process writes, moves or removes in out_dir
        if event == "open":
            path, mode, flags = args
            writing = (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if not (mode and set(mode) & set("wax+")) and not writing:
                return
        elif event not in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.link",
                           "os.symlink", "shutil.rmtree", "os.chmod", "os.truncate"):
            return
        for path in args[:2]:
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.realpath(os.fsdecode(path))
                if (path + os.sep).startswith(inside):
                    writes.append(f"{event} {path}")

    sys.addaudithook(audit)
    import numpy as np, tensorflow as tf, keras
    import kerasrecipes as kr
    from kerasrecipes.finetune.run_folder import RunFolderError
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    labels = (images[..., 0].mean((1, 2)) > images[..., 1].mean((1, 2))).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)

    def backbone():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, name="stage1_block1_conv")(inputs)
        x = keras.layers.BatchNormalization(name="stage1_block1_bn")(x)
        return keras.Model(inputs, x, name="tiny")

    try:
        model, history = kr.fine_tune(backbone, data, num_classes=2, head_epochs=1,
                                      finetune_epochs=1, strategy=strategy, seed=0, verbose=0,
                                      preprocessing="unit", out_dir=out_dir)
        outcome = {"loss": history.history["loss"],
                   "kernel": float(np.sum(model.get_layer("head_dense").kernel))}
    except RunFolderError as error:
        outcome = {"error": str(error)}
    json.dump({"replicas": strategy.num_replicas_in_sync, "writes": writes, **outcome},
              open(result, "w"))
    """
)


def run_two_workers(tmp_path, out_dirs):
    """Runs WORKER as worker 0 (the chief) and worker 1 on localhost; returns their results."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index, out_dir in enumerate(out_dirs):
        env = {
            **os.environ,
            "TF_CONFIG": kr.distribute.tf_config(workers, index),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
            "TMPDIR": str(scratch),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path / f"result{index}.json"), out_dir],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [process.communicate(timeout=240)[0].decode() for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert not list(scratch.glob("kerasrecipes-worker-*"))  # the other worker's copy is gone
    return [json.loads((tmp_path / f"result{i}.json").read_text()) for i in range(2)]


def test_two_workers_on_localhost_train_to_the_end_and_only_the_chief_writes(tmp_path):
    out_dir = str(tmp_path / "run")
    results = run_two_workers(tmp_path, [out_dir, out_dir])
    assert [r["replicas"] for r in results] == [2, 2]
    assert len(results[0]["loss"]) == 2
    # The workers hold one mirrored model: the same weights at the end.
    assert results[0]["kernel"] == pytest.approx(results[1]["kernel"], rel=1e-6)
    assert results[0]["writes"] and results[1]["writes"] == []  # only the chief wrote out_dir
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "finished"
    assert not (tmp_path / "run" / "run.lock").exists()
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow  # two more worker processes (20 s); the shared-folder case above runs by default
def test_a_worker_that_sees_another_folder_than_the_chief_stops_with_it(tmp_path):
    # No shared file system: the chief finishes its run, then the worker finds another.
    out_dir = str(tmp_path / "run")
    run_two_workers(tmp_path, [out_dir, out_dir])
    results = run_two_workers(tmp_path, [out_dir, str(tmp_path / "elsewhere")])
    assert "the workers found different runs" in results[0]["error"]
    assert (
        "(the chief: finished, 2 epochs recorded; this worker: not finished, 0 epochs recorded)"
        in results[1]["error"]
    )
    assert results[1]["writes"] == [] and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("prebuilt", [True, False], ids=["ours", "keras_alone"])
def test_each_phase_traces_its_train_step_once(prebuilt, monkeypatch):
    # Keras' TensorFlow trainer, without a strategy, builds the optimizer's slots and the
    # metrics inside the first trace, and tf.function then traces the step again;
    # `fine_tune` builds them first (`_compat.build_before_fit`). Without it: two traces (when
    # that case fails, Keras builds first itself, and the shim can go).
    if not prebuilt:
        monkeypatch.setattr(kr._compat, "build_before_fit", lambda model, dataset: None)
        # and without the tests' own build before every fit (tests/single_trace.py)
        monkeypatch.setattr(
            TensorFlowTrainer, "_maybe_symbolic_build", single_trace.KERAS_MAYBE_SYMBOLIC_BUILD
        )
    traces = []
    train_step = keras.Model.train_step

    def counted(self, data):
        traces.append(self.name)  # Python runs only while tf.function traces
        return train_step(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counted)
    data = toy_data(num_images=32)
    kr.fine_tune(
        tiny_backbone(), data, data, num_classes=2, head_epochs=1, finetune_epochs=1, verbose=0
    )
    assert len(traces) == (2 if prebuilt else 4)  # two phases, each compiled anew
