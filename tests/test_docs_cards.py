"""docs/architectures.md's "Model cards" section: its comments and its table are what the code gives.

The blocks themselves run in tests/test_docs.py, with every other block of the docs.
"""

import contextlib
import importlib.util
import io
import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "architectures.md"


def section_blocks(heading):
    text = DOC.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


BLOCKS = section_blocks("Model cards")


def test_the_section_has_its_examples():
    assert len(BLOCKS) == 3


def test_the_comments_of_the_feature_block_are_what_it_computes():
    namespace = {}
    exec(BLOCKS[1], namespace)
    shapes = [tuple(m.shape) for m in namespace["maps"]]
    assert shapes == [(1, 56, 56, 256), (1, 28, 28, 512), (1, 14, 14, 1024), (1, 7, 7, 2048)]
    assert f"# {shapes}" in BLOCKS[1]


def test_the_cards_table_is_what_the_script_prints_from_the_cards():
    script = DOC.parent / "model_table.py"
    spec = importlib.util.spec_from_file_location("model_table", script)
    model_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_table)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model_table.cards_table([])
    assert printed.getvalue() in DOC.read_text()
