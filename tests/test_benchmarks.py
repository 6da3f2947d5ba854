"""benchmarks/vs_timm.py measures timm at its best and refuses a machine that is not quiet."""

import importlib.util
import pathlib
import subprocess
import sys
import time

import pytest

SCRIPT = pathlib.Path(__file__).parent.parent / "benchmarks" / "vs_timm.py"


@pytest.fixture(scope="module")
def vs_timm():
    spec = importlib.util.spec_from_file_location("vs_timm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def busy_child():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)
    yield child
    child.kill()
    child.wait()


def test_the_load_check_finds_a_busy_process(vs_timm, busy_child):
    busy = vs_timm.busy_processes(window=0.5, threshold=0.1)
    assert busy_child.pid in [pid for pid, _, _ in busy]
    share = dict((pid, share) for pid, _, share in busy)[busy_child.pid]
    assert 0.1 < share <= 1.05


def test_a_contended_run_is_refused_before_any_worker_starts(busy_child):
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "resnet50", "--quiet-window", "0.5"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "refused: the machine is not quiet" in done.stderr
    assert f"pid {busy_child.pid} (python" in done.stderr
    assert "--on-busy mark" in done.stderr
    assert "round 1" not in done.stdout  # nothing was timed
    assert time.perf_counter() - started < 30


def test_marking_instead_of_refusing_says_so(vs_timm, busy_child, capsys):
    args = vs_timm.parse_args(["--on-busy", "mark", "--quiet-window", "0.5"])
    assert vs_timm.check_quiet(args) is False
    assert f"pid {busy_child.pid}" in capsys.readouterr().out


def test_timm_runs_in_both_layouts_alternating_with_ours(vs_timm):
    args = vs_timm.parse_args([])
    configs = vs_timm.configurations(args)
    labels = [label for label, _, _ in configs]
    assert [label.split()[0] for label in labels[:4]] == ["ours", "timm", "ours", "timm"]
    assert {"timm bf16 channels_last", "timm bf16 nchw", "timm float32 channels_last"} <= set(
        labels
    )
    for round_index in (0, 2, 4):  # ABBA: each pair of rounds runs every two both ways round
        forth = vs_timm.round_order(configs, round_index)
        back = vs_timm.round_order(configs, round_index + 1)
        assert back == forth[::-1] and sorted(forth) == sorted(configs)
    assert vs_timm.round_order(configs, 2)[0] != vs_timm.round_order(configs, 0)[0]
