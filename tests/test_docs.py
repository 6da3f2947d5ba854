"""Every Python code block of README.md and docs/*.md runs as written.

Each block runs on its own, as a reader who pastes just that block runs it:
in a namespace of its own and an empty working folder of its own (the blocks
write `demo/`, `runs/`, ... there); a block that reads `runs/demo`, which
`make demo` leaves, gets a small stand-in run of the demo's data. The blocks
of one page share a new Python process (a `MultiWorkerMirroredStrategy` must
come before any other TensorFlow call). A block that downloads ImageNet
weights says so in its first line, `# Downloads ImageNet weights`; here
those weights are local files of the right shapes, made by
`tests/docs_runner.py`, since the test machines have no network.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest
from docs_runner import DOWNLOAD_MARK, python_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNER = pathlib.Path(__file__).with_name("docs_runner.py")


def test_every_page_with_code_is_run_here():
    counts = {page.name: len(python_blocks(page)) for page in PAGES}
    assert sum(counts.values()) >= 28, counts


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_block_with_imagenet_weights_says_it_downloads(page):
    for index, block in enumerate(python_blocks(page), start=1):
        downloads = re.search(r'weights="imagenet"|load_backbone\([^)]*"imagenet"', block)
        assert bool(downloads) == block.startswith(DOWNLOAD_MARK), (
            f"{page.name} block {index}: a block that uses ImageNet weights starts with "
            f"{DOWNLOAD_MARK!r}, and only such a block"
        )


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


# Eager by default (docs_runner.py says why); -m slow runs every page traced, as a reader's
# `model.fit` runs.
@pytest.mark.parametrize(
    "page, mode",
    [(page, "eager") for page in PAGES_WITH_CODE]
    + [pytest.param(page, "traced", marks=pytest.mark.slow) for page in PAGES_WITH_CODE],
    ids=lambda value: getattr(value, "name", value),
)
def test_each_block_of_a_page_runs_on_its_own(page, mode, tmp_path):
    env = dict(os.environ, KERASRECIPES_CACHE=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
    env["KERAS_HOME"] = str(tmp_path / "keras")
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(page), *(["--traced"] if mode == "traced" else [])],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-4000:]}"
    assert result.stdout.splitlines()[-1] == f"ran {len(python_blocks(page))} blocks of {page.name}"


def test_the_runner_replaces_the_download_of_every_twin_the_cards_name():
    from docs_runner import TWINS

    import kerasrecipes as kr

    twins = {
        source.twin
        for name in kr.list_models(pretrained=True)
        for source in kr.model_card(name).pretrained.values()
    }
    assert twins <= set(TWINS), twins - set(TWINS)
