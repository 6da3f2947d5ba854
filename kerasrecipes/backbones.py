"""Backbones to fine-tune: a registered model with ImageNet weights, a file, or the demo backbone.

`load_backbone(model, weights)` returns the network without its classifier
and the input preprocessing its weights need, ready for `kr.fine_tune`:

* `weights="imagenet"`: built with our builder, which loads the
  keras.applications weights (downloaded once to `~/.keras/models`) and
  ports them variable for variable.
* `weights="timm:NAME.TAG"` (or a timm `.safetensors` file): a timm
  checkpoint from the Hugging Face Hub, converted into our builder's network
  (`kerasrecipes.timm`), at its input size and with its preprocessing.
* a `.weights.h5` file: loaded into our builder's network.
* a `.keras` file: the model saved in it, cut before its `head_*` layers when it
  has a classifier (e.g. a model `fine_tune` saved); its preprocessing is
  the saved model's own.
* `"demo"`: pre-trained on the demo source task (ten shapes) and cached, so
  the demo runs offline.
* None or "none": random initialization.
"""

import os
import warnings

import keras

from kerasrecipes import timm
from kerasrecipes.cards import DEMO_IMAGE_SIZE, DEMO_MODEL
from kerasrecipes.demo_backbone import (  # noqa: F401  (DEMO_EPOCHS, demo_backbone: their old home)
    DEMO_CONVERGED_ACCURACY,
    DEMO_EPOCHS,
    demo_backbone,
)
from kerasrecipes.features import LoadedBackbone
from kerasrecipes.model_parts import HEAD_PREFIX, head_layers  # noqa: F401 (HEAD_PREFIX: old home)
from kerasrecipes.registry import create_model, model_card


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be fetched (no network, or the download failed)."""


def load_backbone(
    model,
    weights="imagenet",
    image_size=None,
    preprocessing="auto",
    pooling=None,
    verbose="auto",
    **model_kwargs,
):
    """Builds or loads a backbone to fine-tune; see the module docstring for `weights`.

    Args:
        model: a registered model name (`kr.list_models()`); for a `.keras`
            file and for "demo" it names the architecture only when the file
            has to be made.
        weights: "imagenet", "demo", None / "none", a timm checkpoint
            ("timm:resnet50.a1_in1k" or a `.safetensors` path), or a path to a
            `.keras` or `.weights.h5` file. Defaults to "imagenet".
        image_size: int, the input height and width; None for the model's
            default (32 for "demo", a timm checkpoint's own). Defaults to None.
        preprocessing: "auto" (the model applies its card's preprocessing
            itself, `kr.model_card(model).preprocessing`: what its ImageNet
            weights expect) or an `ImagePreprocessing` mode, for which the
            raw network is built (`include_preprocessing=False`) and the
            mode returned for `fine_tune` to put in front. Defaults to "auto".
        pooling: None, "avg" or "max": pool the output inside the backbone.
            Defaults to None (the head of `fine_tune` pools).
        verbose: `fit`'s verbosity when the demo backbone is pre-trained.
            Defaults to "auto".
        **model_kwargs: more arguments of the model's builder, e.g. `alpha`.

    Returns:
        a `LoadedBackbone(model, preprocessing, description)`.

    Raises:
        ValueError: an unknown model name, a model without ImageNet weights,
            or a file of the wrong kind.
        FileNotFoundError: a weights path that does not exist.
        WeightsUnavailableError: the ImageNet weights could not be downloaded.
    """
    if weights == "none":
        weights = None
    if weights == "demo":
        backbone, report = demo_backbone(
            model or DEMO_MODEL, image_size or DEMO_IMAGE_SIZE, verbose=verbose
        )
        description = (
            f"{backbone.name}: pre-trained on the demo source task "
            f"(validation accuracy {report['val_accuracy']:.3f}), cached at {report['path']}"
        )
        if report["val_accuracy"] < DEMO_CONVERGED_ACCURACY:
            description += (
                f". WARNING: its pre-training ended far from converged (below "
                f"{DEMO_CONVERGED_ACCURACY:.2f} on the 10-shape source task), so its features may "
                "not transfer; baseline_cnn (the demo's default) reaches 0.99 or more"
            )
            warnings.warn(f"load_backbone: {description}", stacklevel=2)
        return LoadedBackbone(backbone, _mode(preprocessing, None), description)
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".keras"):
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Weights file not found: {path}.")
        saved = keras.saving.load_model(path, compile=False)
        backbone = backbone_of(getattr(saved, "network", saved))  # a kr.ImageClassifier's network
        return LoadedBackbone(backbone, _mode(preprocessing, None), f"{backbone.name}: {path}")

    card = model_card(model)
    size = image_size or card.default_input_shape[0]
    if image_size is None and timm.is_timm_weights(weights):
        size = timm.resolve(weights, model).pretrained.input_size
    # "auto": the model applies its card's preprocessing itself; a mode given
    # explicitly goes in front of the raw network (fine_tune adds it).
    inside = preprocessing == "auto"
    try:
        backbone = create_model(
            model,
            include_top=False,
            include_preprocessing=inside,
            pooling=pooling,
            input_shape=(size, size, 3),
            weights=weights,
            **model_kwargs,
        )
    except Exception as error:
        if weights == "imagenet" and _is_download_error(error):
            raise WeightsUnavailableError(
                f"Could not download the ImageNet weights of {model!r} through "
                f"keras.applications ({_first_line(error)}). Without network, use weights "
                "'demo', 'none', or a .keras/.weights.h5 file."
            ) from error
        raise
    origin = "random initialization"
    if weights is not None:
        origin = "ImageNet" if weights == "imagenet" else os.fspath(weights)
    return LoadedBackbone(backbone, None if inside else preprocessing, f"{backbone.name}: {origin}")


def backbone_of(model):
    """`model` without its head (pooling, dropout, classifier: `kr.model_parts.head_layers`),
    or as it is when it has none."""
    heads = head_layers(model)
    if not heads:
        return model
    if getattr(model, "inputs", None) is None or len(heads) == len(model.layers):
        raise ValueError(
            f"Cannot cut the head off model {model.name!r}: it is not a functional model "
            "whose layers before the head end in the features."
        )
    # The first head layer's input is the features in this model's graph (a nested
    # backbone's own `.output` would be a tensor of its inner graph).
    features = heads[0].input
    name = model.name.removesuffix("_finetuned")
    return keras.Model(model.inputs, features, name=name)


def _mode(preprocessing, automatic):
    return automatic if preprocessing == "auto" else preprocessing


def _is_download_error(error):
    text = f"{type(error).__name__}: {error}"
    markers = ("URL fetch failure", "HTTP Error", "urlopen error", "Name or service", "Errno")
    return any(marker in text for marker in markers) or isinstance(error, OSError)


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
