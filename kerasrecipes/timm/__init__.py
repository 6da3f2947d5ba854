"""timm checkpoints in our models: `create_model(name, weights="timm:NAME.TAG")`.

timm (Wightman, "PyTorch Image Models", github.com/huggingface/pytorch-image-models)
publishes the best-trained public weights of most families on the Hugging
Face Hub, e.g. `resnet50.a1_in1k` (80.4% ImageNet top-1, against 74.9% for
keras.applications' ResNet-50) from "ResNet strikes back" (Wightman et al. 2021).
Here they are read as numpy arrays (`checkpoint`), converted layer by layer
by one module per family (`resnet`, ...) into our builders' networks, built
with the options that make them timm's (e.g. ResNet-50 "v1.5": the stride in
the 3x3 convolution, PyTorch's symmetric padding), and given timm's
preprocessing (`pretrained_cfg`: mean, std, input size, crop, interpolation).
Neither PyTorch nor timm is needed at run time.
"""

import collections
import dataclasses
import functools
import os

from kerasrecipes.cards import TimmPretrained, model_card
from kerasrecipes.timm import convnext, efficientnet, inception, mobilenet_v2, resnet, vgg, vit
from kerasrecipes.timm.checkpoint import (
    PREFIX,
    WeightsDownloadError,
    is_timm_weights,
    read_checkpoint,
    read_config,
    split_name,
)
from kerasrecipes.timm.convert import StateDictLoader

__all__ = [
    "PREFIX",
    "TimmWeights",
    "WeightsDownloadError",
    "architectures",
    "class_names",
    "is_timm_weights",
    "resolve",
    "split_name",
]

# One module per family: its ARCHITECTURES (timm name -> `Architecture`), UNSUPPORTED
# (timm name -> why our builder cannot express it), and convert(loader, model, architecture).
FAMILIES = (resnet, mobilenet_v2, efficientnet, convnext, vgg, inception, vit)

# Our models timm has no weights for, and why.
NO_TIMM_FAMILY = {
    "alexnet": "timm has no AlexNet",
    "baseline": "the baseline CNN is ours alone",
    "resnet_cifar": "timm's ResNets are the ImageNet ones; it has none of the CIFAR ResNets",
}

# The mean and std (in [0, 1]) of our `ImagePreprocessing` modes that timm configs use.
MODES_BY_MEAN_STD = {
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)): "torch",
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): "tf",
}


def architectures():
    """dict of timm architecture name -> `Architecture`, every family's."""
    return {name: arch for family in FAMILIES for name, arch in family.ARCHITECTURES.items()}


@functools.cache
def imagenet_class_names():
    """ImageNet-1k's 1,000 class names in timm's (and torchvision's) label order.

    Each is the first lemma of its WordNet synset ("tench" for "tench, Tinca
    tinca"), from timm's `imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`
    (Apache-2.0); the two that share one ("crane", "maillot") carry their synset.
    """
    path = os.path.join(os.path.dirname(__file__), "imagenet_classes.txt")
    with open(path, encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file if line.strip()]
    first_lemmas = [lemma.split(",")[0].strip() for _, lemma in rows]
    shared = {name for name, count in collections.Counter(first_lemmas).items() if count > 1}
    return [
        f"{name} ({synset})" if name in shared else name
        for (synset, _), name in zip(rows, first_lemmas)
    ]


def class_names(num_classes):
    """The class names of a checkpoint's `num_classes` outputs: ImageNet-1k's for 1,000, else
    the label indices as strings (timm ships no names for ImageNet-21k's heads)."""
    return imagenet_class_names() if num_classes == 1000 else [str(i) for i in range(num_classes)]


def _unsupported():
    return {name: why for family in FAMILIES for name, why in family.UNSUPPORTED.items()}


@dataclasses.dataclass(frozen=True)
class TimmWeights:
    """A timm checkpoint resolved for one of our models (its config read, tensors not yet).

    Attributes:
        weights: what the user passed ("timm:resnet50.a1_in1k" or a path).
        architecture: the `Architecture` it converts through.
        config: timm's model config: `architecture`, `num_classes`, `pretrained_cfg`.
    """

    weights: str
    architecture: object
    config: dict

    @property
    def pretrained(self):
        """The `TimmPretrained` card entry read from the checkpoint's `pretrained_cfg`."""
        return TimmPretrained.from_pretrained_cfg(
            self.weights, self.config["pretrained_cfg"], MODES_BY_MEAN_STD
        )

    @property
    def num_classes(self):
        return int(self.config.get("num_classes") or self.config["pretrained_cfg"]["num_classes"])

    def builder_arguments(self, kwargs):
        """The builder's arguments: the architecture's options, timm's preprocessing and input
        size, the checkpoint's classes; those the user passed win, except architecture options,
        which must agree."""
        pretrained = self.pretrained
        arguments = dict(self.architecture.options)
        for key, value in self.architecture.options.items():
            if key in kwargs and kwargs[key] != value:
                raise ValueError(
                    f"weights={self.weights!r} needs {key}={value!r} (timm's "
                    f"{self.config['architecture']} is built so). Received: {key}={kwargs[key]!r}"
                )
        size = pretrained.input_size
        defaults = {"num_classes": self.num_classes, "input_shape": (size, size, 3)}
        if self.num_classes == 0 and "num_classes" not in kwargs:
            # A checkpoint without a classifier (self-supervised, e.g. `.dino`, `.mae`): the
            # features alone, unless the user asks for a new head of num_classes.
            defaults = {"include_top": False, "pooling": "avg", "input_shape": (size, size, 3)}
        defaults.update(self.architecture.preprocessing_arguments(pretrained.preprocessing))
        return {**defaults, **arguments, **kwargs, "weights": None}

    def load_into(self, model, include_top=True):
        """Reads the tensors and converts them into `model`; returns the model.

        The classifier loads when the model has one with the checkpoint's
        number of classes; otherwise the model keeps its new head.
        """
        from kerasrecipes.model_parts import head_layers

        checkpoint = read_checkpoint(self.weights)
        head = [layer for layer in head_layers(model) if layer.weights]
        classifier = head[-1] if head else None
        load_head = include_top and classifier is not None and classifier.units == self.num_classes
        loader = StateDictLoader(
            model,
            checkpoint.tensors,
            checkpoint.name,
            load_head=load_head,
            ignored_prefixes=self.architecture.ignored_prefixes,
        )
        self.architecture.convert(loader, model, self.architecture)
        skipped = [] if load_head or classifier is None else classifier.weights
        loader.finish(skipped_variables=skipped)
        return model


def resolve(weights, model_name=None):
    """The `TimmWeights` of `weights` for our model `model_name` (None: the checkpoint's own).

    Raises ValueError naming the architecture when our builders cannot express it, or when it
    is not the one `model_name` builds.
    """
    config = read_config(weights)
    timm_name = config["architecture"]
    known = architectures()
    if timm_name not in known:
        why = _unsupported().get(timm_name)
        if why:
            raise ValueError(f"weights={weights!r}: timm's {timm_name} cannot be loaded: {why}.")
        raise ValueError(
            f"weights={weights!r}: timm's {timm_name} has no conversion to one of our models. "
            f"Converted architectures: {', '.join(sorted(known))}."
        )
    architecture = known[timm_name]
    if model_name is not None and architecture.model != model_name:
        raise ValueError(
            f"weights={weights!r} is a checkpoint of timm's {timm_name}, which is our "
            f"{architecture.model!r}, not {model_name!r}. Build {architecture.model!r} with "
            "it, or pick a checkpoint of this model (`kerasrecipes models --weights`)."
        )
    return TimmWeights(weights, architecture, config)


def why_no_checkpoint(family, input_size):
    """Why timm has no weights for a model of `family` at default `input_size`; None if it
    may have."""
    cifar = family == "resnet" and input_size == 32
    return NO_TIMM_FAMILY.get("resnet_cifar" if cifar else family)


def check_family(model_name):
    """Raises the clear error for a model of a family timm has no weights for."""
    card = model_card(model_name)
    why = why_no_checkpoint(card.family, card.default_input_shape[0])
    if why:
        raise ValueError(
            f"{model_name}: no timm checkpoint loads into it: {why}. Pass weights=None, or "
            "the path of a .keras or .weights.h5 file."
        )
