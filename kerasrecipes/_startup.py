"""Quiet start-up for the `kerasrecipes` command: TensorFlow's native log lines kept off stderr.

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
