"""After training: the classifier that knows its classes, predict, evaluate, TTA and export."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image
from test_cli import run_main, save_backbone

import kerasrecipes as kr
from kerasrecipes.cli import main
from kerasrecipes.data.folder import read_image
from kerasrecipes.inference.evaluation import classification_metrics, most_confused


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished `kerasrecipes finetune` run on a two-class folder made here, and its data."""
    root = tmp_path_factory.mktemp("inference")
    data = kr.data.make_demo_dataset(root / "shapes", num_images=60, bad_files=True)
    weights = save_backbone(root / "tiny.keras")
    out = root / "run"
    argv = ["finetune", "--data", str(data), "--weights", weights, "--out", str(out)]
    argv += ["--head-epochs", "1", "--finetune-epochs", "1", "--batch-size", "16"]
    assert main(argv) == 0
    return out, data


@pytest.fixture(scope="module")
def classifier(run):
    return kr.load_classifier(run[0])


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory):
    return kr.data.make_demo_dataset(
        tmp_path_factory.mktemp("test") / "shapes", num_images=24, seed=5, bad_files=True
    )


def test_the_saved_model_knows_its_classes_size_preprocessing_and_origin(run, classifier):
    out, _ = run
    assert isinstance(classifier, kr.ImageClassifier)
    assert classifier.class_names == ["ellipse", "pentagon"]
    assert classifier.image_size == (16, 16) and classifier.preprocessing == "unit"
    assert classifier.source["weights"].endswith("tiny.keras")
    plain = keras.saving.load_model(out / "model.keras")
    assert type(plain) is kr.ImageClassifier and plain.class_names == classifier.class_names
    assert kr.load_classifier(out / "model.keras").image_size == (16, 16)


def test_an_image_classifier_round_trips_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = kr.layers.ImagePreprocessing("caffe")(inputs)
    x = keras.layers.Dropout(0.5)(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    )
    network = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    classifier = kr.ImageClassifier(
        network, ["a", "b", "c"], preprocessing="caffe", source={"x": 1}
    )
    classifier.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    own = lambda config: {key: value for key, value in config.items() if key != "network"}
    assert own(loaded.get_config()) == own(classifier.get_config())
    assert loaded.get_config()["image_size"] == [12, 12]
    images = np.random.default_rng(0).uniform(0, 255, (2, 30, 20, 3)).astype("float32")
    # Called without `training`, as `Model.export` calls it: no dropout, identical outputs.
    np.testing.assert_array_equal(loaded(images), classifier(images))
    with pytest.raises(ValueError, match="2 class_names for a network with 3 outputs"):
        kr.ImageClassifier(network, ["a", "b"])


def test_the_classifier_resizes_any_input_as_training_does(classifier, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (37, 23, 3), dtype="uint8")
    path = tmp_path / "odd.png"
    Image.fromarray(image).save(path)
    resized = keras.ops.convert_to_numpy(read_image(str(path), (16, 16)))
    expected = classifier.network.predict_on_batch(resized[None])
    np.testing.assert_allclose(
        classifier.predict_on_batch(image[None].astype("float32")), expected, atol=1e-6
    )
    prediction = classifier.predict_images(str(path))
    assert prediction.label == classifier.class_names[int(expected.argmax())]
    assert prediction.path == str(path) and prediction.probability == pytest.approx(
        float(expected.max()), abs=1e-6
    )


def test_predict_images_takes_files_folders_arrays_and_pil_images(run, classifier):
    out, data = run
    folder = classifier.predict_images(data, top_k=2)
    report = json.loads((out / "report.json").read_text())
    assert sorted(folder.skipped) == sorted(map(tuple, report["data"]["skipped"]))
    images = sum(report["data"]["train_counts"].values()) + sum(
        report["data"]["val_counts"].values()
    )
    assert len(folder) == images and all(len(p.top_k) == 2 for p in folder)
    assert set(folder.labels) <= {"ellipse", "pentagon"}
    first = folder[0]
    one = classifier.predict_images(first.path)
    assert one.label == first.label and one.probability == pytest.approx(first.probability, 1e-5)
    files = classifier.predict_images([p.path for p in folder][:3])
    assert files.labels == folder.labels[:3]
    images = [Image.open(p.path) for p in folder][:3]
    from_pil = classifier.predict_images(images)
    arrays = np.stack([np.asarray(image.convert("RGB")) for image in images])
    from_numpy = classifier.predict_images(arrays)
    np.testing.assert_allclose(from_pil.probabilities, from_numpy.probabilities, atol=1e-6)
    # PIL's JPEG decoder upsamples chroma unlike TensorFlow's: close, not equal, to the files'.
    np.testing.assert_allclose(from_pil.probabilities, files.probabilities, atol=0.05)
    assert classifier.predict_images(images[0]).label == files.labels[0]
    with pytest.raises(ValueError, match="shape \\(4, 4\\)"):
        classifier.predict_images(np.zeros((4, 4)))


def test_tta_averages_the_plain_prediction_with_flips_and_crops(classifier):
    images = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    views = kr.inference.tta_views(images)
    assert len(views) == len(kr.inference.TTA_VIEWS) == 5
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(views[0]), images[:, :, ::-1])
    plain = classifier.predict_on_batch(images)
    augmented = np.mean([classifier.predict_on_batch(v) for v in views], axis=0)
    tta = classifier.predict_images(images, tta=True).probabilities
    np.testing.assert_allclose(tta, 0.25 * plain + 0.75 * augmented, atol=1e-6)
    assert not np.allclose(tta, plain, atol=1e-7)


def test_classification_metrics_follow_the_definitions():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 0, 1])
    metrics = classification_metrics(labels, predictions, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["per_class"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert most_confused(labels, predictions, ["a", "b", "c"]) == [
        ("a", "b", 1),
        ("b", "a", 1),
        ("c", "b", 1),
    ]


def test_evaluate_reports_with_and_without_tta_and_the_top_losses(
    classifier, test_folder, tmp_path
):
    evaluation = kr.evaluate(classifier, test_folder, tta=True, out_dir=tmp_path, top_losses=4)
    images = len(kr.data.verify_images(test_folder, cache=False).valid)
    assert evaluation.metrics["images"] == images and len(evaluation.skipped) == 4
    assert evaluation.tta_metrics is not None and 0 <= evaluation.tta_metrics["accuracy"] <= 1
    wrong = images - round(evaluation.accuracy * images)
    assert len(evaluation.top_losses) == min(4, wrong)
    losses = [item["loss"] for item in evaluation.top_losses]
    assert losses == sorted(losses, reverse=True)
    assert all(item["true"] != item["predicted"] for item in evaluation.top_losses)
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["metrics"]["accuracy"] == evaluation.accuracy
    assert sorted(os.listdir(tmp_path)) == sorted(evaluation.files)
    assert ("evaluation_top_losses.png" in evaluation.files) == bool(wrong)


def test_evaluate_refuses_a_class_the_model_does_not_know(classifier, tmp_path):
    kr.data.make_demo_dataset(tmp_path / "data", task="source", num_images=20)
    with pytest.raises(ValueError, match="are not classes of this model, which knows"):
        kr.evaluate(classifier, tmp_path / "data")


def test_predict_command_prints_and_writes_csv_and_json(run, capsys, tmp_path):
    out, data = run
    ellipses = os.path.join(data, "ellipse")
    scan = kr.data.verify_images(ellipses, cache=False)
    code, stdout, stderr = run_main(capsys, "predict", str(out), ellipses, "--top-k", "2")
    assert code == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith(ellipses)]
    assert len(lines) == len(scan.valid) and all("ellipse" in l and "pentagon" in l for l in lines)
    assert f"skipped {scan.skipped[0][0]}: {scan.skipped[0][1]}" in stdout
    table = tmp_path / "preds.csv"
    code, stdout, _ = run_main(capsys, "predict", str(out), str(data), "--output", str(table))
    readable = len(kr.data.verify_images(data, cache=False).valid)
    assert code == 0 and f"{readable} images classified" in stdout
    rows = list(csv.DictReader(table.open()))
    assert sum(1 for row in rows if row["label"]) == readable
    assert sum(1 for row in rows if row["skipped"]) == 4
    code, _, _ = run_main(
        capsys, "predict", str(out), ellipses, "--output", str(tmp_path / "p.json")
    )
    written = json.loads((tmp_path / "p.json").read_text())
    assert code == 0 and len(written) == len(scan.valid) + len(scan.skipped)


def test_the_command_loads_a_run_as_a_user_runs_it(run):
    out, data = run
    image = os.path.join(data, "ellipse", "ellipse_00000.jpg")
    command = [sys.executable, "-m", "kerasrecipes", "predict", str(out), image, "--top-k", "2"]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"{image}  ") and "ellipse" in result.stdout
    assert result.stderr == ""


def test_evaluate_command_writes_into_the_run_folder(run, test_folder, capsys, tmp_path):
    out, _ = run
    code, stdout, stderr = run_main(
        capsys, "evaluate", str(out), "--data", str(test_folder), "--tta"
    )
    assert code == 0, stderr
    assert "(without TTA)" in stdout and "(with TTA)" in stdout and "precision" in stdout
    written = json.loads((out / "evaluation.json").read_text())
    assert written["tta_metrics"]["images"] == written["metrics"]["images"] > 20
    assert (out / "evaluation_confusion.png").stat().st_size > 0
    (tmp_path / "triangle").mkdir()
    code, _, stderr = run_main(capsys, "evaluate", str(out), "--data", str(tmp_path))
    assert (
        code == 1 and "folder(s) ['triangle']" in stderr and "not classes of this model" in stderr
    )
    code, _, stderr = run_main(capsys, "evaluate", str(out), "--data", str(out))
    assert code == 1 and "is inside the test folder" in stderr


RUN_WITHOUT_KERASRECIPES = textwrap.dedent(
    """
    import sys
    sys.modules["kerasrecipes"] = None  # importing it fails: the artifacts must stand alone
    import numpy as np
    images = np.load(sys.argv[2])
    kind, path = sys.argv[1], sys.argv[3]
    if kind == "saved_model":
        import tensorflow as tf
        loaded = tf.saved_model.load(path)
        outputs = loaded.serve(tf.constant(images)).numpy()
    elif kind == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {session.get_inputs()[0].name: images})[0]
    else:
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        outputs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.save(sys.argv[4], outputs)
    """
)


@pytest.mark.parametrize(
    "kind, artifact",
    [("saved_model", "saved_model"), ("onnx", "model.onnx"), ("litert", "model.tflite")],
)
def test_export_command_writes_artifacts_that_run_without_kerasrecipes(
    run, classifier, capsys, tmp_path, kind, artifact
):
    out, _ = run
    target = tmp_path / "export"
    code, stdout, stderr = run_main(
        capsys, "export", str(out), "--format", kind, "--out", str(target)
    )
    assert code == 0, stderr
    assert f"Exported {kind} to {target / artifact}" in stdout and "relative" in stdout
    images = np.random.default_rng(2).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "run_artifact.py").write_text(RUN_WITHOUT_KERASRECIPES)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        str(tmp_path / "run_artifact.py"),
        kind,
        str(tmp_path / "images.npy"),
    ]
    command += [str(target / artifact), str(tmp_path / "outputs.npy")]
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = np.load(tmp_path / "outputs.npy")
    # The artifact computes in float32 even where the run trained in mixed_bfloat16 (AMX CPUs).
    in_float32 = kr.inference.exporting.computing_in_float32(classifier)
    np.testing.assert_allclose(outputs, in_float32.predict_on_batch(images), rtol=1e-4, atol=1e-5)
    code, _, stderr = run_main(capsys, "export", str(out), "--format", kind, "--out", str(target))
    assert code == 1 and "exists already" in stderr and "--overwrite" in stderr


def test_an_export_that_disagrees_is_removed(classifier, tmp_path, monkeypatch):
    from kerasrecipes.inference import exporting

    monkeypatch.setattr(exporting, "run_exported", lambda path, kind, images: np.zeros((8, 2)))
    with pytest.raises(kr.inference.ExportError, match="disagrees with the Keras model"):
        kr.export(classifier, tmp_path, "saved_model")
    assert os.listdir(tmp_path) == []


def test_a_missing_exporter_names_the_extra(classifier, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    with pytest.raises(kr.inference.ExportError, match=r"kerasrecipes\[export\]"):
        kr.export(classifier, tmp_path, "onnx")


def test_a_mixed_precision_classifier_exports_computing_in_float32(classifier, tmp_path):
    from kerasrecipes._compat import sublayers
    from kerasrecipes.finetune.training import rebuilt
    from kerasrecipes.inference.exporting import computing_in_float32

    mixed = rebuilt(classifier, "mixed_bfloat16")  # as precision="auto" trains on AMX CPUs
    plain = computing_in_float32(mixed)
    assert isinstance(plain, kr.ImageClassifier) and plain.class_names == classifier.class_names
    assert {layer.dtype_policy.name for layer in sublayers(plain, recursive=True)} == {"float32"}
    images = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    reference = computing_in_float32(classifier).predict_on_batch(images)
    np.testing.assert_allclose(plain.predict_on_batch(images), reference, atol=1e-6)
    result = kr.export(mixed, tmp_path, "onnx")
    assert result.relative_difference < 1e-4
