"""Model registry: every architecture is reachable by name.

Model files register their named constructors with `@register_model(...)`;
users call `create_model(name, **kwargs)` and `list_models(pattern)`.
"""

import dataclasses
import difflib
import fnmatch
import re
from typing import Callable

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one named model.

    Attributes:
        name: the registered name, e.g. "resnet50".
        builder: the function that builds it from keyword arguments.
        family: the architecture family (the module in `kerasrecipes.models`).
        paper: the reference the model follows.
        default_input_shape: the input shape it is built with by default.
        min_input_size: the smallest height/width it accepts (its total stride).
        pretrained: the `weights=` names it can load besides a file path.
    """

    name: str
    builder: Callable
    family: str
    paper: str
    default_input_shape: tuple
    min_input_size: int
    pretrained: tuple = ()


def register_model(name, *, family, paper, default_input_shape, min_input_size, pretrained=()):
    """Decorator that registers a model constructor under `name`."""

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"A model named '{name}' is already registered.")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=builder,
            family=family,
            paper=paper,
            default_input_shape=tuple(default_input_shape),
            min_input_size=min_input_size,
            pretrained=tuple(pretrained),
        )
        return builder

    return decorator


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern="*"):
    """Returns the registered model names matching a shell-style `pattern`, sorted.

    Example:

    >>> list_models("resnet5*")
    ['resnet50', 'resnet56']
    """
    return sorted(
        (name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)), key=_natural_key
    )


def get_model_entry(name):
    """Returns the `ModelEntry` for `name`; an unknown name raises a `ValueError`."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name: {name!r}.{hint} "
            "Call kerasrecipes.list_models() to see every registered name."
        )
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Builds the registered model `name`; keyword arguments go to its builder.

    Common arguments of every builder: `num_classes`, `input_shape`,
    `include_top`, `pooling`, `dropout`, `drop_path_rate`, `weights`,
    `classifier_activation`.

    Example:

    >>> model = create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    >>> model.output_shape
    (None, 10)
    """
    return get_model_entry(name).builder(**kwargs)
