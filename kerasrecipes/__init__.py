"""kerasrecipes: a Keras 3 model zoo and training recipes for image classification.

>>> import kerasrecipes as kr
>>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
>>> kr.list_models("resnet2?")
['resnet20', 'resnet26']
"""

from kerasrecipes._startup import running_the_command

__version__ = "0.1.0"


_loading = False


def _load_api():
    """Puts the public API (`kerasrecipes/_api.py`) into this namespace; registers every class."""
    global _loading
    _loading = True
    try:
        from kerasrecipes import _api
    finally:
        _loading = False
    globals().update({name: getattr(_api, name) for name in _api.__all__})
    globals()["__all__"] = list(_api.__all__)


def __getattr__(name):
    # Reached before `_load_api` ran (in the command, which loads the API on first use), and
    # while it runs: `from kerasrecipes import data` asks here before importing the submodule.
    if name.startswith("__") or _loading:
        raise AttributeError(name)
    _load_api()
    if name not in globals():
        raise AttributeError(f"module 'kerasrecipes' has no attribute {name!r}")
    return globals()[name]


if not running_the_command():
    _load_api()
