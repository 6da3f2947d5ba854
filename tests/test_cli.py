"""The kerasrecipes command: outputs, error lines, kill-and-resume, the model list."""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import _compat
from kerasrecipes.cli import main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """80 demo images of two classes, plus the 4 unreadable files."""
    path = tmp_path_factory.mktemp("shapes")
    return kr.data.make_demo_dataset(path, num_images=80, bad_files=True)


def save_backbone(path, size=16, model="tiny"):
    keras.utils.set_random_seed(0)
    if model == "tiny":
        inputs = keras.Input((size, size, 3))
        x = kr.layers.ImagePreprocessing("unit")(inputs)
        x = keras.layers.Conv2D(8, 3, name="stage1_block1_conv")(x)
        x = keras.layers.BatchNormalization(name="stage1_block1_bn")(x)
        backbone = keras.Model(inputs, x, name="tiny")
    else:
        backbone = kr.create_model(model, include_top=False, input_shape=(size, size, 3))
    backbone.save(path)
    return str(path)


def run_main(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_finetune_writes_the_run_folder(shapes, tmp_path, capsys):
    weights = save_backbone(tmp_path / "tiny.keras")
    out = tmp_path / "run"
    code, stdout, stderr = run_main(
        capsys,
        "finetune",
        "--data",
        str(shapes),
        "--weights",
        weights,
        "--out",
        str(out),
        "--head-epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "16",
    )
    assert code == 0, stderr
    for name in ("report.json", "curves.png", "confusion.png", "model.keras"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["phases"]["head"]["epochs"] == 2 and report["phases"]["finetune"]["epochs"] == 1
    assert report["phases"]["finetune"]["first_epoch"] == 3
    assert 0.0 <= report["phases"]["finetune"]["val_accuracy"] <= 1.0
    assert len(report["data"]["skipped"]) == 4
    assert sum(map(sum, report["confusion_matrix"])) == sum(report["data"]["val_counts"].values())
    assert report["config"]["weights"] == weights and report["phases"]["head"]["seconds"] > 0
    assert report["status"] == "finished"
    assert "Phase head (backbone frozen): epochs 1-2" in stdout
    assert "4 files skipped" in stdout
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 2)


def test_weights_none_trains_the_whole_network_without_a_head_phase(shapes, tmp_path, capsys):
    out = tmp_path / "scratch"
    code, stdout, stderr = run_main(
        capsys,
        "finetune",
        "--data",
        str(shapes),
        "--model",
        "baseline_cnn",
        "--weights",
        "none",
        "--image-size",
        "16",
        "--finetune-epochs",
        "1",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert list(report["phases"]) == ["finetune"]
    assert "random initialization" in report["backbone"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "no/such/folder"], "--data no/such/folder: no such folder"),
        (["--model", "resnet5O", "--weights", "none"], "Unknown model name: 'resnet5O'"),
        (["--unfreeze", "0"], "unfreeze must be 'all', a number of top blocks >= 1"),
        (["--head-lr", "-1"], "head_lr must be a number >= 0 or 'auto'"),
        (["--model", "resnet20", "--weights", "imagenet"], "No ImageNet weights for 'resnet20'"),
        (["--weights", "missing.weights.h5", "--model", "resnet20"], "Weights file not found"),
    ],
)
def test_errors_are_one_line_without_traceback(shapes, capsys, argv, message):
    if "--data" not in argv:
        argv = ["--data", str(shapes)] + argv
    code, _, stderr = run_main(capsys, "finetune", *argv)
    assert code == 1
    assert stderr.startswith("kerasrecipes: error: ") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_imagenet_without_network_is_one_line(shapes, capsys, monkeypatch):
    file_utils = _compat.keras_file_utils()

    def offline(*args, **kwargs):
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(file_utils, "get_file", offline)
    code, _, stderr = run_main(
        capsys, "finetune", "--data", str(shapes), "--model", "mobilenet_v2", "--image-size", "32"
    )
    assert code == 1 and stderr.count("\n") == 1
    assert "Could not download the ImageNet weights of 'mobilenet_v2'" in stderr
    assert "--weights" in stderr or "weights 'demo'" in stderr


def test_models_lists_the_zoo_with_parameters(capsys):
    code, stdout, _ = run_main(capsys, "models", "resnet2*")
    assert code == 0
    row = [line for line in stdout.splitlines() if line.startswith("resnet20 ")]
    params = kr.model_info(kr.create_model("resnet20")).params
    assert row and f"{params:,}" in row[0] and "0.04" in row[0]
    code, exact, _ = run_main(capsys, "models", "resnet2*", "--exact")
    assert code == 0 and exact == stdout
    code, _, stderr = run_main(capsys, "models", "nothing*")
    assert code == 1 and "No registered model matches" in stderr


def test_the_zoo_table_is_the_cards_and_the_builds():
    from kerasrecipes.zoo_table import read_table, table_row

    rows = read_table()
    assert [row["name"] for row in rows] == kr.list_models()
    for row in rows:  # what the cards say, nothing built
        assert {k: row[k] for k in ("name", "family", "input", "pretrained")} == table_row(
            row["name"], build=False
        ), "run: python -m kerasrecipes.zoo_table"
    for name in ("baseline_cnn", "resnet56", "alexnet"):
        assert {k: row[k] for row in rows if row["name"] == name for k in row} == table_row(name)


def test_help_and_models_do_not_import_tensorflow():
    script = (
        "import sys; sys.argv[0] = 'kerasrecipes'; from kerasrecipes.cli import main\n"
        "assert main(['models', 'resnet5*']) == 0\n"
        "assert main(['models', 'resnet5*', '--weights']) == 0\n"
        "try:\n    main(['finetune', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]" and "resnet50" in result.stdout
    assert "timm:resnet50.a1_in1k" in result.stdout
    assert "--head-epochs" in result.stdout


def test_a_killed_run_resumes_in_phase_two_and_finishes(tmp_path, capsys):
    data = kr.data.make_demo_dataset(tmp_path / "data", num_images=240)
    weights = save_backbone(tmp_path / "cnn.keras", size=32, model="baseline_cnn")
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "kerasrecipes",
        "finetune",
        "--data",
        str(data),
        "--weights",
        weights,
        "--out",
        str(out),
        "--head-epochs",
        "1",
        "--finetune-epochs",
        "4",
        "--patience",
        "10",
        "--batch-size",
        "16",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "history.csv"
    deadline = time.monotonic() + 240
    while first.poll() is None and time.monotonic() < deadline:
        if log.exists() and ",finetune," in log.read_text():  # one epoch of phase 2
            first.kill()
            break
        time.sleep(0.05)
    first.wait()
    assert first.returncode == -9, first.stderr.read().decode()[-2000:]
    assert not (out / "report.json").exists()
    done_before = log.read_text().count(",finetune,")
    assert 1 <= done_before < 4

    # The rerun, as the same command in this process (a fresh one costs 10 s of imports).
    code, _, stderr = run_main(capsys, *command[3:])
    assert code == 0, stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["phases"]["head"]["epochs"] == 1
    assert report["phases"]["finetune"]["epochs"] == 4
    assert not report["phases"]["head"]["trained_in_this_call"]
    assert report["phases"]["finetune"]["trained_in_this_call"]
    epochs = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2, 3, 4]
    assert np.isfinite(report["val_accuracy"])
