"""`kr.ablate` and `kerasrecipes ablate`: the grid, the effects, the reports, resuming, shards."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes import ablation, cli

# Tiny runs: 16x16 images, one epoch, a plain CNN or resnet20 from scratch.
BASELINE = dict(ablation.DEMO_BASELINE, image_size=16, finetune_epochs=1, batch_size=16)
CHANGES = {"architecture": {"model": "resnet20"}, "data": {"augment": "basic"}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return kr.data.make_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=40, image_size=16)


@pytest.fixture(autouse=True)
def scan_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))


def test_the_grid_has_baseline_singles_all_and_leave_one_out():
    names = [v.name for v in ablation.variants(ablation.BUCKETS)]
    assert names == [
        "baseline",
        "+architecture",
        "+data",
        "+regularization",
        "+optimization",
        "all",
        "all-architecture",
        "all-data",
        "all-regularization",
        "all-optimization",
    ]
    # With two buckets, all-but-one is the other bucket alone: not run twice.
    assert [v.name for v in ablation.variants(["a", "b"])] == ["baseline", "+a", "+b", "all"]
    merged = ablation.Variant("all", ("data", "regularization")).overrides(ablation.DEMO_CHANGES)
    assert merged == {"augment": "cifar", "weight_decay": 5e-4, "label_smoothing": 0.1}


def test_effects_and_interaction_are_computed_from_the_runs(tmp_path):
    """Reports written by hand: the arithmetic of gains, leave-one-out and interaction."""
    accuracy = {"baseline": 0.5, "+a": 0.6, "+b": 0.7, "+c": 0.55, "all": 0.8}
    accuracy.update({"all-a": 0.75, "all-b": 0.6, "all-c": 0.8})
    for name, value in accuracy.items():
        for seed, jitter in ((0, -0.01), (1, 0.01)):
            run = tmp_path / name / f"seed{seed}"
            run.mkdir(parents=True)
            report = {
                "val_accuracy": value + jitter,
                "phases": {"finetune": {"val_loss": 1 - value}},
            }
            (run / "report.json").write_text(json.dumps(report))
    result = ablation.summarize(tmp_path, {"a": {}, "b": {}, "c": {}}, seeds=[0, 1])
    rows = {row["variant"]: row for row in result.rows}
    assert rows["all"]["val_accuracy"] == pytest.approx(0.8)
    assert rows["all"]["val_accuracy_std"] == pytest.approx(np.std([0.79, 0.81], ddof=1))
    assert result.buckets["a"] == {"alone": pytest.approx(0.1), "left_out": pytest.approx(0.05)}
    assert result.buckets["b"]["left_out"] == pytest.approx(0.2)
    assert result.buckets["c"]["left_out"] == pytest.approx(0.0)
    # Together +0.3, singles +0.1 +0.2 +0.05 = +0.35: they overlap by 0.05.
    assert result.interaction == pytest.approx(-0.05)
    assert "overlap" in "\n".join(result.table()) and not result.missing


def write_reports(folder, cells):
    """Hand-written run reports of a 10-class study: {variant: (val, train)} at two seeds."""
    for name, (value, train) in cells.items():
        for seed, jitter in ((0, -0.01), (1, 0.01)):
            run = folder / name / f"seed{seed}"
            run.mkdir(parents=True)
            phases = {"finetune": {"val_loss": 1 - value, "accuracy": train}}
            data = {"class_names": [str(k) for k in range(10)]}
            report = {"val_accuracy": value + jitter, "phases": phases, "data": data}
            (run / "report.json").write_text(json.dumps(report))


def test_cells_at_chance_are_flagged_and_the_verdict_names_the_driver(tmp_path):
    cells = {"baseline": (0.5, 0.6), "+a": (0.11, 0.95), "+b": (0.8, 0.9), "+c": (0.12, 0.1)}
    cells.update({"all": (0.85, 0.9), "all-a": (0.85, 0.9), "all-b": (0.5, 0.5)})
    cells["all-c"] = (0.85, 0.9)
    write_reports(tmp_path, cells)
    result = ablation.summarize(tmp_path, {"a": {}, "b": {}, "c": {}}, seeds=[0, 1])
    rows = {row["variant"]: row for row in result.rows}
    assert rows["+a"]["flag"].startswith("collapsed") and rows["+a"]["train_accuracy"] == 0.95
    assert rows["+c"]["flag"].startswith("did not learn")
    assert rows["baseline"]["flag"] is None and rows["+b"]["chance"] == pytest.approx(0.1)
    verdict = "\n".join(result.verdict())
    # +b gains 0.3 with a standard error of 0.01: high confidence; +a and +c are left out.
    assert "Verdict: b drives accuracy here: alone it gains +0.300" in verdict
    assert "high confidence (21.2 standard errors" in verdict
    assert (
        "Left out as collapsed or unlearned (validation accuracy within 0.05 of chance): "
        in verdict
    )
    assert "+a, +c." in verdict and "| collapsed: training accuracy high" in "\n".join(
        result.table()
    )


def test_without_a_baseline_that_learned_there_is_no_verdict(tmp_path):
    write_reports(tmp_path / "collapsed", {"baseline": (0.1, 0.1), "+a": (0.9, 0.9)})
    result = ablation.summarize(tmp_path / "collapsed", {"a": {}}, seeds=[0, 1])
    assert result.verdict()[0].startswith("Verdict: none. The baseline did not learn")
    # A gain within the seeds' spread, over a baseline near 1.0, names no driver.
    write_reports(tmp_path / "ceiling", {"baseline": (0.985, 1.0), "+a": (0.99, 1.0)})
    verdict = ablation.summarize(tmp_path / "ceiling", {"a": {}}, seeds=[0, 1]).verdict()[0]
    assert verdict.startswith("Verdict: no bucket clearly drives accuracy here: the largest")
    assert "a +0.005, is within the spread" in verdict and "already reaches 0.985" in verdict


def test_ablate_runs_the_grid_writes_the_reports_and_resumes(folder, tmp_path):
    out = tmp_path / "ablation"
    result = kr.ablate(BASELINE, CHANGES, data=folder, seeds=[1], out_dir=out)
    assert [row["variant"] for row in result.rows] == ["baseline", "+architecture", "+data", "all"]
    assert all(row["seeds"] == 1 and 0 <= row["val_accuracy"] <= 1 for row in result.rows)
    for name in ("ablation.json", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 0
    stored = json.loads((out / "ablation.json").read_text())
    assert stored["changes"] == CHANGES and stored["baseline"]["optimizer"] == "sgd"
    report = json.loads((out / "+architecture" / "seed1" / "report.json").read_text())
    assert report["config"]["model"] == "resnet20" and report["config"]["seed"] == 1
    assert report["config"]["augment"] is None
    # Run again: every run is read back, nothing trains.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/report.json")}
    again = kr.ablate(BASELINE, CHANGES, data=folder, seeds=[1], out_dir=out)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert [row["accuracies"] for row in again.rows] == [row["accuracies"] for row in result.rows]


KILLED_GRID = """
import sys
import kerasrecipes as kr
from kerasrecipes import ablation
baseline = dict(ablation.DEMO_BASELINE, image_size=16, finetune_epochs=1, batch_size=16)
kr.ablate(baseline, {"architecture": {"model": "resnet20"}}, data=sys.argv[1], seeds=2,
          out_dir=sys.argv[2])
"""


def test_a_killed_grid_resumes_without_training_finished_runs_again(folder, tmp_path):
    out = tmp_path / "killed"
    script = tmp_path / "grid.py"
    script.write_text(KILLED_GRID)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = out / "baseline" / "seed0" / "report.json"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert first.exists()
    changes = {"architecture": {"model": "resnet20"}}
    killed = ablation.summarize(out, changes, seeds=[0, 1])
    assert killed.missing  # the grid stopped part-way
    before = first.stat().st_mtime_ns
    result = kr.ablate(dict(BASELINE), changes, data=folder, seeds=2, out_dir=out)
    assert not result.missing and [row["seeds"] for row in result.rows] == [2, 2]
    assert first.stat().st_mtime_ns == before  # the finished run was read back, not retrained


def test_the_command_takes_fields_changes_and_shards(folder, tmp_path, capsys):
    out = tmp_path / "shards"
    arguments = [
        "ablate", "--data", str(folder), "--out", str(out), "--seeds", "1",
        "--set", "image_size=16", "--set", "finetune_epochs=1", "--set", "batch_size=16",
        "--change", "data:augment=basic", "--change", "regularization:weight_decay=5e-4",
        "--change", "regularization:label_smoothing=0.1",
    ]  # fmt: skip
    assert cli.main([*arguments, "--shard", "0/2"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs are not finished yet" in printed
    # A line per finished run, with the time left at this pace.
    lines = [line for line in printed.splitlines() if line.startswith("[")]
    assert re.fullmatch(
        r"\[1/2\] baseline seed 0: validation accuracy \d\.\d{3} \(\d+ s\); 1 run left, "
        r"about \d+ min",
        lines[0],
    ), lines
    assert re.fullmatch(r"\[2/2\] \+regularization seed 0: validation accuracy .* s\)", lines[1])
    assert cli.main([*arguments, "--shard", "0/2"]) == 0  # again: read back, not trained
    again = capsys.readouterr().out
    assert re.search(r"\[1/2\] baseline seed 0: validation accuracy .* \(finished earlier\)", again)
    assert cli.main([*arguments, "--shard", "1/2"]) == 0
    printed = capsys.readouterr().out
    assert "| all | data, regularization |" in printed and "not finished" not in printed
    stored = json.loads((out / "ablation.json").read_text())
    assert stored["changes"]["regularization"] == {"weight_decay": 5e-4, "label_smoothing": 0.1}
    assert cli.main(["ablate", "--change", "data:colour=red"]) == 1
    assert "--change 'colour=red': write FIELD=VALUE" in capsys.readouterr().err
    assert cli.main(["ablate", "--set", "epochs=3"]) == 1
    assert "write FIELD=VALUE with a FineTuneConfig field" in capsys.readouterr().err
    assert cli.main(["ablate", "--shard", "2/2"]) == 1
    assert "0 <= I < N" in capsys.readouterr().err


def test_ctrl_c_says_the_ablation_resumes(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "ablate", interrupted)
    assert cli.main(["ablate", "--seeds", "1"]) == 130
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err
