"""Start-up, before TensorFlow loads: its CPU options (`tune_tensorflow_for_cpus`), and quiet.

For the `kerasrecipes` command: TensorFlow's native log lines kept off stderr.

TensorFlow's C++ side writes lines such as "Could not find cuda drivers" and
"This TensorFlow binary is optimized..." while it is imported, before absl's
logging is set up, so `TF_CPP_MIN_LOG_LEVEL` alone does not silence them.
In the command, `kerasrecipes/__init__.py` does not import the package's
modules (`running_the_command`), so `--help` answers without TensorFlow;
`cli.main` imports it quietly here when a command needs it, and `--debug`
shows everything. `import kerasrecipes` in a user's program imports it
quietly too, unless `TF_CPP_MIN_LOG_LEVEL` is set: then the user has chosen
which lines to see (`TF_CPP_MIN_LOG_LEVEL=0` shows them all).
"""

import contextlib
import logging
import os
import platform
import sys


def running_the_command():
    """Whether this process is `kerasrecipes ...` or `python -m kerasrecipes ...`."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if os.path.basename(sys.argv[0] or "") == "kerasrecipes":
        return True
    return any(a == "-m" and b == "kerasrecipes" for a, b in zip(argv, argv[1:]))


def _has_stderr():
    """Whether file descriptor 2 is open (a daemon or pythonw may run without it)."""
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def load_triton_before_tensorflow():
    """Imports triton, when installed, before TensorFlow is.

    PyTorch's CUDA builds bring triton, which `torch._dynamo` (imported by
    torchvision and timm) loads; its LLVM and TensorFlow's clash, and the
    process dies with a segmentation fault when triton comes second. Loaded
    first (0.3 s), both work: `import kerasrecipes; import timm` is safe.
    """
    if "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError):
            import triton  # noqa: F401


def import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null, then quiets absl."""
    load_triton_before_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and _has_stderr():
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def tune_tensorflow_for_cpus():
    """Sets two TensorFlow start-up options that train CPU models faster, unless set already.

    Both are read once, so this runs before TensorFlow is imported: it does
    nothing after, and returns whether it ran. A value the user exported wins, e.g.
    `TF_ENABLE_ONEDNN_OPTS=0` or `TF_CPU_ALLOCATOR_USE_BFC=false`.

    - `TF_ENABLE_ONEDNN_OPTS=1` on x86: TensorFlow turns its oneDNN kernels
      on by default only on CPUs with AVX-512 VNNI, BF16 or AMX; elsewhere
      (an AVX2 EPYC, say) matrix products and convolutions run on Eigen.
    - `TF_CPU_ALLOCATOR_USE_BFC=true`: TensorFlow's pooling allocator (the
      one it uses on GPUs) for CPU tensors, instead of `malloc`, which maps
      every large activation afresh and faults its pages in on each step.
      The pool keeps what it grew to, like PyTorch's GPU allocator; its cap
      (`TF_CPU_BFC_MEM_LIMIT_IN_MB`, 64 GB by default) is set to the
      machine's memory when that is larger.

    On a 2-core AVX2 EPYC, the float32 training step with both ran 1.42x as
    fast as with TensorFlow's defaults for ResNet-50, 1.60x for MobileNetV2,
    1.64x for EfficientNet-B0 and 1.24x for ConvNeXt-T, most of it oneDNN's
    (`benchmarks/tf_cpu_options.py`, docs/benchmarks.md).
    """
    if "tensorflow" in sys.modules:
        return False
    if _x86():
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        if memory_mb > 2**16:
            os.environ.setdefault("TF_CPU_BFC_MEM_LIMIT_IN_MB", str(memory_mb))
    return True


def _x86():
    return platform.machine().lower() in ("x86_64", "amd64")


def warn_if_onednn_is_off():
    """Warns when TensorFlow came before kerasrecipes and left its oneDNN kernels off on x86."""
    if not _x86() or "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return
    from kerasrecipes import _compat

    if not _compat.tensorflow_onednn_enabled():
        import warnings

        warnings.warn(
            "TensorFlow was imported before kerasrecipes, with its oneDNN kernels off on this "
            "CPU: training runs 1.3-1.7x slower. Import kerasrecipes before keras and "
            "tensorflow, or export TF_ENABLE_ONEDNN_OPTS=1 (0 keeps them off and silences this).",
            stacklevel=3,
        )
