"""What `make demo` installs: the runtime alone, without the test stack; and how `make` runs.

`make demo` runs `pip install -e .` (no extras); `make test` adds `.[dev]`. The
runtime's closure is read from the metadata of what is installed here (every
requirement of kerasrecipes without an extra, and theirs, recursively), so a
test-only package that slips into `dependencies` fails this test.
"""

import os
import pathlib
import re
import subprocess
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_STACK = {"pytest", "pytest-xdist", "jax", "jaxlib", "torch", "tf2onnx", "import-linter"}


def runtime_closure(name="kerasrecipes"):
    """The installed distributions that `pip install NAME` (no extras) brings, by name."""
    seen, todo = set(), [canonicalize_name(name)]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            requires = metadata.distribution(current).requires or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform, so not installed here either
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra, or another platform's
            todo.append(canonicalize_name(requirement.name))
    return seen


def test_the_runtime_brings_no_test_stack():
    closure = runtime_closure()
    assert {"keras", "tensorflow", "keras-hub", "pycocotools"} <= closure
    assert closure & TEST_STACK == set()


def test_make_demo_installs_the_runtime_only():
    makefile = (ROOT / "Makefile").read_text()
    demo_needs = re.search(r"^demo: (\S+)$", makefile, re.M).group(1)
    assert demo_needs == "$(RUNTIME)"
    recipe = re.search(r"^\$\(RUNTIME\):.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    installs = re.findall(r"pip install --quiet (.+)", recipe)
    assert installs == ["--upgrade pip", "--no-compile -e ."]  # no extras, no torch


def test_make_lets_python_keep_the_bytecode_it_compiles(tmp_path):
    """pip installs with --no-compile, so each module is compiled when a run first imports it;
    with PYTHONDONTWRITEBYTECODE exported, every process of the suite would compile it again."""
    probe = tmp_path / "probe.mk"
    probe.write_text(
        f'include {ROOT / "Makefile"}\nprobe:\n\t@echo "[$$PYTHONDONTWRITEBYTECODE]"\n'
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    shown = subprocess.run(
        ["make", "-s", "-f", str(probe), "probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.strip() == "[]"


def test_the_suite_runs_the_pytorch_of_the_backends_extra():
    """`make test` installs the dev extra, which holds the backends extra: the PyTorch the
    backend tests run is one that `pip install ".[backends]"` can install, not another pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "kerasrecipes[backends]" in extras["dev"]
    backends = [Requirement(text) for text in extras["backends"]]
    (torch,) = [requirement for requirement in backends if requirement.name == "torch"]
    assert torch.specifier.contains(metadata.version("torch").split("+")[0])
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"torch==", makefile), "the Makefile pins a PyTorch of its own"
