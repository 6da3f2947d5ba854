"""A timm checkpoint as numpy arrays and its `pretrained_cfg`, from the Hub or a local file.

`weights="timm:NAME.TAG"` names a repository of the timm organisation on the
Hugging Face Hub (`timm/resnet50.a1_in1k`), which holds `model.safetensors`
and `config.json`. Both come through `huggingface_hub.hf_hub_download`, so
its cache (`HF_HUB_CACHE`, `~/.cache/huggingface/hub`) and offline mode
(`HF_HUB_OFFLINE=1`) work as for any Hub model; the tensors are read with
safetensors' numpy API, so no PyTorch is needed. A local `.safetensors` path
works the same way, with its `config.json` beside it.
"""

import dataclasses
import json
import os

PREFIX = "timm:"
HUB_ORGANISATION = "timm"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class TimmCheckpoint:
    """One timm checkpoint read from disk.

    Attributes:
        name: "ARCHITECTURE.TAG" (e.g. "resnet50.a1_in1k"), or the file's path.
        architecture: timm's architecture name (e.g. "resnet50").
        tensors: dict of state_dict key -> numpy array.
        config: timm's `pretrained_cfg` (mean, std, input_size, crop_pct, ...).
        path: the `.safetensors` file the tensors came from.
    """

    name: str
    architecture: str
    tensors: dict
    config: dict
    path: str


def is_timm_weights(weights):
    """Whether `weights` names a timm checkpoint: "timm:NAME.TAG" or a `.safetensors` path."""
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    return isinstance(weights, str) and (
        weights.startswith(PREFIX) or weights.endswith(".safetensors")
    )


def split_name(weights):
    """("resnet50", "a1_in1k") from "timm:resnet50.a1_in1k"; the tag is None when absent."""
    name = weights[len(PREFIX) :] if weights.startswith(PREFIX) else weights
    if not name or "/" in name:
        raise ValueError(
            f"weights={weights!r}: a timm checkpoint is named 'timm:ARCHITECTURE.TAG', e.g. "
            "'timm:resnet50.a1_in1k' (the name of its page on the Hugging Face Hub, "
            "huggingface.co/timm). A local checkpoint is the path of its .safetensors file."
        )
    architecture, _, tag = name.partition(".")
    return architecture, tag or None


def read_config(weights):
    """timm's model config (`architecture`, `num_classes`, `pretrained_cfg`) of `weights`."""
    path = _file(weights, CONFIG_FILE)
    with open(path, encoding="utf-8") as file:
        config = json.load(file)
    if "architecture" not in config or "pretrained_cfg" not in config:
        raise ValueError(
            f"{path} is not a timm config.json: it has no 'architecture' and 'pretrained_cfg'. "
            "Save a timm model with timm.models.save_for_hf(model, folder, "
            "safe_serialization=True), which writes both files."
        )
    return config


def read_checkpoint(weights):
    """The `TimmCheckpoint` of "timm:NAME.TAG" (downloaded once) or of a `.safetensors` path."""
    from safetensors.numpy import load_file

    config = read_config(weights)
    path = _file(weights, WEIGHTS_FILE)
    try:
        tensors = load_file(path)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(
            f"{path} could not be read as a safetensors file ({error}). Download it again "
            "(delete it from the Hugging Face cache), or save the model again."
        ) from None
    name = weights[len(PREFIX) :] if str(weights).startswith(PREFIX) else os.fspath(weights)
    return TimmCheckpoint(name, config["architecture"], tensors, config["pretrained_cfg"], path)


def _file(weights, filename):
    weights = os.fspath(weights)
    if not weights.startswith(PREFIX):
        folder = os.path.dirname(os.path.abspath(weights))
        path = weights if filename == WEIGHTS_FILE else os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: a local timm checkpoint is a .safetensors file with timm's "
                f"{CONFIG_FILE} beside it (timm.models.save_for_hf writes both)."
            )
        return path
    architecture, tag = split_name(weights)
    if tag is None:
        raise ValueError(
            f"weights={weights!r} names no tag: timm publishes each architecture's weights "
            f"under tags, e.g. 'timm:{architecture}.a1_in1k'. `kerasrecipes models --weights` "
            "lists the ones we know; the model's page on huggingface.co/timm lists them all."
        )
    return _hub_file(f"{HUB_ORGANISATION}/{architecture}.{tag}", filename, weights)


def _hub_file(repo_id, filename, weights):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return huggingface_hub.hf_hub_download(repo_id, filename)
    except LocalEntryNotFoundError as error:
        raise WeightsDownloadError(
            f"weights={weights!r}: {filename} of {repo_id} is not in the Hugging Face cache "
            f"({huggingface_hub.constants.HF_HUB_CACHE}) and could not be downloaded "
            f"({_first_line(error)}). Connect once to download it, set HF_HUB_CACHE to a cache "
            "that holds it, or pass the path of a local model.safetensors."
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"weights={weights!r}: the Hugging Face Hub has no repository {repo_id}. Check the "
            "name and tag on huggingface.co/timm, or run `kerasrecipes models --weights`."
        ) from None


class WeightsDownloadError(OSError):
    """A timm checkpoint is neither in the Hugging Face cache nor downloadable."""


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
