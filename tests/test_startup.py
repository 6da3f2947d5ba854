"""`import kerasrecipes` sets TensorFlow's CPU start-up options, before TensorFlow loads."""

import os
import platform
import subprocess
import sys

import pytest

from kerasrecipes import _startup

OPTIONS = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC", "TF_CPU_BFC_MEM_LIMIT_IN_MB")
X86 = platform.machine().lower() in ("x86_64", "amd64")
# What the process ends with: the allocator option and whether oneDNN's kernels are on.
REPORT = (
    "; import os; from kerasrecipes import _compat; "
    "print(os.environ.get('TF_CPU_ALLOCATOR_USE_BFC'), _compat.tensorflow_onednn_enabled())"
)


def run_python(code, **options):
    """Runs `code` in a new Python without this process's TensorFlow options, plus `options`."""
    env = {name: value for name, value in os.environ.items() if name not in OPTIONS}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **options)
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", code + REPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()[-2:], result.stderr


def test_import_turns_on_onednn_and_the_pooling_allocator():
    (allocator, onednn), warnings = run_python("import kerasrecipes")
    assert allocator == "true"
    assert onednn == "True" or not X86
    assert "imported before kerasrecipes" not in warnings


@pytest.mark.slow  # a process of its own (10 s); the defaults are checked above
def test_options_the_user_exported_win():
    (allocator, onednn), warnings = run_python(
        "import kerasrecipes", TF_ENABLE_ONEDNN_OPTS="0", TF_CPU_ALLOCATOR_USE_BFC="false"
    )
    assert (allocator, onednn) == ("false", "False")
    assert "imported before kerasrecipes" not in warnings


@pytest.mark.slow  # a process of its own (10 s)
def test_tensorflow_imported_first_is_left_alone_and_warned_about_when_onednn_is_off():
    (allocator, onednn), warnings = run_python("import keras; import kerasrecipes")
    assert allocator == "None"  # nothing set once TensorFlow is in
    # On a CPU where TensorFlow turns oneDNN on itself (AVX-512 VNNI, AMX) there is nothing to say.
    assert ("imported before kerasrecipes" in warnings) == (X86 and onednn == "False")


def test_the_pool_may_grow_to_the_memory_of_a_machine_larger_than_64_gb(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(os, "environ", {})
    memory = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 128 * 2**30 // 4096}
    monkeypatch.setattr(os, "sysconf", memory.__getitem__)
    assert _startup.tune_tensorflow_for_cpus()
    assert os.environ["TF_CPU_BFC_MEM_LIMIT_IN_MB"] == str(128 * 1024)
    memory["SC_PHYS_PAGES"] //= 4  # 32 GB: TensorFlow's own 64 GB cap stays
    os.environ.clear()
    assert _startup.tune_tensorflow_for_cpus()
    assert "TF_CPU_BFC_MEM_LIMIT_IN_MB" not in os.environ
