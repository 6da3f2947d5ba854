"""A new user's first hour with the command (issue 35): `models | head`, the task heads, what
`evaluate --tta` reports, and the paths `predict` prints."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image
from test_cli import run_main

import kerasrecipes as kr
from kerasrecipes.commands import predict as predict_command
from kerasrecipes.tasks import task_names
from kerasrecipes.zoo_table import TASK_HEADS

COMMAND = [sys.executable, "-m", "kerasrecipes"]
SIZE = 16


def test_models_into_head_ends_quietly():
    """`kerasrecipes models | head -1`: head exits after a line, the command's next write
    finds the pipe closed, and that is no error."""
    command = subprocess.Popen(COMMAND + ["models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=command.stdout, stdout=subprocess.PIPE)
    command.stdout.close()  # head holds the only reading end, as in a shell pipeline
    first_line, _ = head.communicate(timeout=60)
    stderr = command.communicate(timeout=60)[1].decode()
    assert first_line.decode().startswith("model ")
    assert command.returncode == 0 and stderr == ""


def test_models_into_a_pipe_closed_before_it_writes_ends_quietly():
    """The same without the race: the reading end is closed before the command starts, so
    its first line already meets a closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            COMMAND + ["models"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0 and result.stderr == ""


def test_models_lists_the_task_heads_and_names_its_cost_column(capsys):
    assert sorted(TASK_HEADS) == kr.list_heads() and set(TASK_HEADS.values()) <= set(task_names())
    code, stdout, _ = run_main(capsys, "models")
    assert code == 0
    header = stdout.splitlines()[0].split()
    assert "GMACs" in header and "GFLOPs" not in header
    heads = stdout[stdout.index("task heads") :].splitlines()[1:]
    assert [line.split() for line in heads] == [
        [name, TASK_HEADS[name]] for name in kr.list_heads()
    ]
    code, stdout, _ = run_main(capsys, "models", "unet")
    assert code == 0 and stdout.startswith("task heads") and "unet" in stdout
    assert "resnet" not in stdout
    code, stdout, _ = run_main(capsys, "models", "resnet2*")
    assert code == 0 and "task heads" not in stdout


def test_models_with_its_heads_imports_no_tensorflow():
    script = (
        "import sys; sys.argv[0] = 'kerasrecipes'; from kerasrecipes.cli import main\n"
        "assert main(['models']) == 0\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "task heads" in result.stdout and result.stdout.splitlines()[-1] == "[]"


def save_corner_classifier(path):
    """A classifier whose TTA changes its answer: "corner" when the top-right pixel is red,
    else "plain". Of the TTA views only the top-right crop keeps that pixel there (the flip
    moves it, the other crops cut it off), so with TTA a corner image is called plain."""
    network = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    kernel = np.zeros((SIZE * SIZE * 3, 2), "float32")
    kernel[(SIZE - 1) * 3, 0] = 0.1  # the red value of pixel (0, SIZE - 1)
    network.layers[-1].set_weights([kernel, np.array([-10.0, 0.0], "float32")])
    kr.ImageClassifier(network, ["corner", "plain"]).save(path)
    return str(path)


def make_photos(folder):
    """`folder/corner/red_corner.png`, `folder/plain/dark.png`, and an empty file."""
    rng = np.random.default_rng(0)
    for name in ("corner", "plain"):
        os.makedirs(folder / name)
        image = rng.integers(0, 40, (SIZE, SIZE, 3), dtype="uint8")
        if name == "corner":
            image[0, SIZE - 1] = (255, 0, 0)
        Image.fromarray(image).save(
            folder / name / ("red_corner.png" if name == "corner" else "dark.png")
        )
    (folder / "plain" / "empty.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def corner(tmp_path_factory):
    """`(model file, photos folder)` in a temporary folder."""
    root = tmp_path_factory.mktemp("first_hour")
    return save_corner_classifier(root / "corner.keras"), make_photos(root / "photos")


def test_the_corner_classifier_changes_its_answer_with_tta(corner):
    model, photos = corner
    classifier = kr.load_classifier(model)
    image = str(photos / "corner" / "red_corner.png")
    assert classifier.predict_images(image).label == "corner"
    assert classifier.predict_images(image, tta=True).label == "plain"
    assert classifier.predict_images(str(photos / "plain" / "dark.png"), tta=True).label == "plain"


def test_evaluate_with_tta_reports_the_tta_predictions_throughout(corner, capsys, tmp_path):
    model, photos = corner
    code, stdout, stderr = run_main(
        capsys, "evaluate", model, "--data", str(photos), "--tta", "--out", str(tmp_path)
    )
    assert code == 0, stderr
    assert stdout.splitlines()[0].endswith("predicted with test-time augmentation")
    assert "accuracy 1.0000, balanced accuracy 1.0000 (without TTA)" in stdout
    assert "accuracy 0.5000, balanced accuracy 0.5000 (with TTA)" in stdout
    corner_row = next(line for line in stdout.splitlines() if line.startswith("corner "))
    assert corner_row.split()[1:] == ["0.000", "0.000", "0.000", "1"]
    assert "most confused: corner taken for plain 1 times" in stdout
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["tta"] and written["tta_metrics"]["confusion_matrix"] == [[0, 1], [0, 1]]
    assert written["metrics"]["confusion_matrix"] == [[1, 0], [0, 1]]  # as before: no TTA
    (loss,) = written["top_losses"]
    tta = kr.load_classifier(model).predict_images(loss["path"], tta=True)
    assert loss["predicted"] == tta.label == "plain"
    assert loss["probability"] == pytest.approx(tta.probability, abs=1e-5)
    assert (tmp_path / "evaluation_top_losses.png").stat().st_size > 0


def test_evaluate_without_tta_says_nothing_of_it(corner, capsys, tmp_path):
    model, photos = corner
    code, stdout, _ = run_main(
        capsys, "evaluate", model, "--data", str(photos), "--out", str(tmp_path)
    )
    assert code == 0 and "test-time" not in stdout and "(with TTA)" not in stdout
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert not written["tta"] and written["tta_metrics"] is None
    assert written["metrics"]["confusion_matrix"] == [[1, 0], [0, 1]]
    assert written["top_losses"] == []


EXPECTED = {
    os.path.join("photos", "corner", "red_corner.png"): "corner",
    os.path.join("photos", "plain", "dark.png"): "plain",
}
EMPTY = os.path.join("photos", "plain", "empty.jpg")


def _printed(stdout):
    """`{path: label}` of the prediction lines, and the skipped paths."""
    lines = stdout.splitlines()
    skipped = [line.split()[1].rstrip(":") for line in lines if line.startswith("  skipped ")]
    predicted = dict(line.split()[:2] for line in lines if not line.startswith(" "))
    return predicted, skipped


@pytest.mark.parametrize("absolute", [False, True])
def test_predict_prints_paths_under_the_current_folder_relative_to_it(
    corner, capsys, monkeypatch, absolute
):
    model, photos = corner
    monkeypatch.chdir(photos.parent)
    folder = str(photos) if absolute else "photos"
    code, stdout, stderr = run_main(capsys, "predict", model, folder)
    assert code == 0, stderr
    assert _printed(stdout) == (EXPECTED, [EMPTY])


def test_predict_writes_the_paths_it_prints(corner, capsys, monkeypatch, tmp_path):
    model, photos = corner
    monkeypatch.chdir(photos.parent)
    table, listing = tmp_path / "preds.csv", tmp_path / "preds.json"
    for output in (table, listing):
        code, _, stderr = run_main(capsys, "predict", model, str(photos), "--output", str(output))
        assert code == 0, stderr
    rows = list(csv.DictReader(table.open()))
    assert {row["path"]: row["label"] for row in rows if row["label"]} == EXPECTED
    assert [row["path"] for row in rows if row["skipped"]] == [EMPTY]
    assert [row["path"] for row in json.loads(listing.read_text())] == [row["path"] for row in rows]


def test_predict_prints_paths_outside_the_current_folder_as_given(corner, capsys, monkeypatch):
    model, photos = corner
    elsewhere = photos.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    given = os.path.join("..", "photos", "corner", "red_corner.png")
    code, stdout, _ = run_main(
        capsys, "predict", model, given, os.path.join("..", "photos", "plain")
    )
    assert code == 0
    up = {os.path.join("..", path): label for path, label in EXPECTED.items()}
    assert _printed(stdout) == (up, [os.path.join("..", EMPTY)])
    code, stdout, _ = run_main(capsys, "predict", model, str(photos / "plain"))
    assert code == 0 and _printed(stdout)[0] == {str(photos / "plain" / "dark.png"): "plain"}


class FakeSegmenter:
    """Stands in for a `kr.ImageSegmenter` (the command goes by the class name): all
    background, with the absolute paths the real one gives."""

    class_names = ["background", "shape"]

    def predict_images(self, images, batch_size=32):
        paths, skipped = _absolute_images(images)
        masks = [np.zeros(Image.open(path).size[::-1], "uint8") for path in paths]
        return kr.inference.MaskPredictions(self.class_names, masks, paths, skipped)


FakeSegmenter.__name__ = "ImageSegmenter"


class FakeDetector:
    """Stands in for a `kr.ObjectDetector`: one box per image."""

    class_names = ["shape"]

    def predict_images(self, images, batch_size=32, confidence_threshold=None):
        paths, skipped = _absolute_images(images)
        found = [
            kr.inference.BoxPrediction(
                np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([0.9]), ["shape"], p
            )
            for p in paths
        ]
        return kr.inference.BoxPredictions(self.class_names, found, skipped)


FakeDetector.__name__ = "ObjectDetector"


def _absolute_images(images):
    """`(paths, skipped)` as `predict_images` gives them: absolute, empty files skipped."""
    files = [images] if isinstance(images, str) else images
    if isinstance(images, str) and os.path.isdir(images):
        files = [os.path.join(top, name) for top, _, names in os.walk(images) for name in names]
    files = sorted(os.path.abspath(path) for path in files)
    paths = [path for path in files if os.path.getsize(path)]
    return paths, [(path, "empty file (0 bytes)") for path in files if path not in paths]


@pytest.mark.parametrize("model", [FakeSegmenter(), FakeDetector()], ids=["masks", "boxes"])
def test_predict_prints_and_writes_relative_paths_for_masks_and_boxes(
    corner, capsys, monkeypatch, model
):
    _, photos = corner
    monkeypatch.chdir(photos.parent)
    monkeypatch.setattr(predict_command, "load_model", lambda path: model)
    code, stdout, stderr = run_main(capsys, "predict", "model.keras", str(photos))
    assert code == 0, stderr
    predicted, skipped = _printed(stdout)
    assert sorted(predicted) == sorted(EXPECTED) and skipped == [EMPTY]
    output = "masks_out" if isinstance(model, FakeSegmenter) else "boxes.csv"
    code, _, stderr = run_main(capsys, "predict", "model.keras", str(photos), "--output", output)
    assert code == 0, stderr
    table = os.path.join(output, "predictions.csv") if output == "masks_out" else output
    rows = list(csv.DictReader(open(table)))
    assert {row["path"] for row in rows} == {*EXPECTED, EMPTY}
    if isinstance(model, FakeDetector):
        code, _, _ = run_main(capsys, "predict", "model.keras", "photos", "--output", "boxes.json")
        images = json.loads(open("boxes.json").read())["images"]
        assert code == 0 and sorted(image["file_name"] for image in images) == sorted(EXPECTED)
