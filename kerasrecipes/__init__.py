"""kerasrecipes: a Keras 3 model zoo and training recipes for image classification.

>>> import kerasrecipes as kr
>>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
>>> kr.list_models("resnet2?")
['resnet20', 'resnet26']
"""

import importlib
import importlib.util
import os

from kerasrecipes._startup import (
    import_tensorflow_quietly,
    load_triton_before_tensorflow,
    running_the_command,
    tune_tensorflow_for_cpus,
    warn_if_onednn_is_off,
)

_tuned_before_tensorflow = tune_tensorflow_for_cpus()  # before anything imports TensorFlow

__version__ = "0.1.0"


_loading = False


def _load_api():
    """Puts the public API (`kerasrecipes/_api.py`) into this namespace; registers every class."""
    global _loading
    _loading = True
    try:
        from kerasrecipes import _api  # Keras and TensorFlow come with it: on first use only
    finally:
        _loading = False
    globals().update({name: getattr(_api, name) for name in _api.__all__})
    globals()["__all__"] = list(_api.__all__)


def __getattr__(name):
    # Reached before `_load_api` ran (in the command, which loads the API on first use), and
    # while it runs: `from kerasrecipes import data` asks here before importing the submodule.
    if name.startswith("__") or _loading:
        raise AttributeError(name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # A submodule (`from kerasrecipes import registry`): import just that, so the model
        # builders load without TensorFlow, e.g. on a JAX or PyTorch machine.
        return importlib.import_module(f"{__name__}.{name}")
    try:
        _load_api()
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ModuleNotFoundError(
            f"kerasrecipes.{name} needs TensorFlow (the data pipelines are tf.data), which is "
            "not installed. Without it, the model builders still load: "
            "`from kerasrecipes.registry import create_model`.",
            name="tensorflow",
        ) from error
    if name not in globals():
        raise AttributeError(f"module 'kerasrecipes' has no attribute {name!r}")
    return globals()[name]


if not running_the_command() and importlib.util.find_spec("tensorflow") is not None:
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # set: the user chose which lines to see
        import_tensorflow_quietly()
    load_triton_before_tensorflow()
    _load_api()
    if not _tuned_before_tensorflow:
        warn_if_onednn_is_off()
