"""`kerasrecipes lr-find` and `show-batch`: what they print and the PNGs they write."""

import json
import re

import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.cli import main


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    """The options that point a command at a small demo folder, from scratch, run in tmp_path."""
    data = kr.data.make_demo_dataset(tmp_path / "shapes", num_images=24)
    monkeypatch.chdir(tmp_path)
    return ["--data", str(data), "--model", "baseline_cnn", "--weights", "none"]


def test_lr_find_prints_a_rate_and_writes_its_curve(shapes, tmp_path, capsys):
    assert main(["lr-find", *shapes, "--batch-size", "8", "--out", "run"]) == 0
    out = capsys.readouterr().out
    suggested = re.search(r"Suggested learning rate for phase finetune: (\S+) ", out)
    assert suggested, out
    record = json.loads((tmp_path / "run" / "lr_find" / "command-finetune.json").read_text())
    assert f"{record['suggested_lr']:.2g}" == suggested.group(1)
    assert len(record["learning_rates"]) == len(record["losses"]) > 10
    assert (tmp_path / "run" / "lr_find" / "command-finetune.png").stat().st_size > 0
    assert not (tmp_path / "run" / "report.json").exists()  # nothing was trained
    assert "--lr " in out


def test_show_batch_writes_the_training_images_with_their_labels(shapes, tmp_path, capsys):
    assert main(["show-batch", *shapes, "--augment", "mixup", "--out", "run"]) == 0
    out = capsys.readouterr().out
    assert "Wrote run/batch.png: 16 training images, augmentation mixup" in out
    assert (tmp_path / "run" / "batch.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["batch.png"]


def test_show_batch_draws_masks_and_boxes(tmp_path):
    from kerasrecipes.tasks import get_task

    images = np.full((2, 16, 16, 3), 100, "uint8")
    masks = np.zeros((2, 16, 16), "int32")
    masks[0, 4:8, 4:8] = 1
    get_task("segmentation").plot_batch(images, masks, ["background", "disc"], tmp_path / "m.png")
    targets = {"boxes": np.array([[[1, 1, 8, 8], [0, 0, 0, 0]]] * 2), "labels": [[0, -1]] * 2}
    get_task("detection").plot_batch(images, targets, ["disc"], tmp_path / "b.png")
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0
