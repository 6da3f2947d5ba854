"""`kerasrecipes lr-find`: the suggestion printed, the curve written, no run trained."""

import json
import re

import kerasrecipes as kr
from kerasrecipes.cli import main


def test_lr_find_prints_a_rate_and_writes_its_curve(tmp_path, monkeypatch, capsys):
    data = kr.data.make_demo_dataset(tmp_path / "shapes", num_images=24)
    monkeypatch.chdir(tmp_path)
    argv = ["lr-find", "--data", str(data), "--model", "baseline_cnn", "--weights", "none"]
    assert main([*argv, "--batch-size", "8", "--out", "run"]) == 0
    out = capsys.readouterr().out
    suggested = re.search(r"Suggested learning rate for phase finetune: (\S+) ", out)
    assert suggested, out
    record = json.loads((tmp_path / "run" / "lr_find" / "command-finetune.json").read_text())
    assert f"{record['suggested_lr']:.2g}" == suggested.group(1)
    assert len(record["learning_rates"]) == len(record["losses"]) > 10
    assert (tmp_path / "run" / "lr_find" / "command-finetune.png").stat().st_size > 0
    assert not (tmp_path / "run" / "report.json").exists()  # nothing was trained
    assert "--lr " in out
