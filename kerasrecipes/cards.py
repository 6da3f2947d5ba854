"""Model cards: every architecture is registered by name and described by one card.

The leaf of the package (timm's `_registry`): it imports no Keras and no
other module of ours, so the command line's help and the zoo table read it
without TensorFlow, and anything may import it. `kerasrecipes.registry`
builds from it (`create_model`, timm's `_factory`).

Model files register their named constructors with `@register_model(name, card=...)`;
users call `list_models(pattern)` and `model_card(name)`. The card is the
one place that knows what the rest of the package needs about a model (as
timm's `pretrained_cfg` and keras-hub's presets): its preprocessing, its
pretrained sources, its parameter groups, its feature taps and its weight
in the test suite. Builders, `load_backbone`,
layer decay, unfreezing, the CLI, the docs tables and the tests read it.
"""

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable

_REGISTRY = {}

# The demo's backbone (`kr.demo_backbone`): the registered model pre-trained on the demo source
# task, and its input size. Here, in the leaf, because the command's parser reads them too.
DEMO_MODEL = "baseline_cnn"
DEMO_IMAGE_SIZE = 32

# The arguments every builder takes (a builder rejects with ValueError those it cannot use).
COMMON_ARGS = (
    "num_classes",
    "input_shape",
    "include_top",
    "include_preprocessing",
    "pooling",
    "dropout",
    "drop_path_rate",
    "weights",
    "classifier_activation",
)


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """One pretrained source of a model.

    Attributes:
        twin: the `keras.applications` function whose weights are ported
            (e.g. "ResNet50"); the real download goes through it.
        preprocessing: the `ImagePreprocessing` mode the weights were trained
            with, for RGB images in [0, 255] ("caffe", "tf", "torch", ...).
        input_size: the native resolution the weights were trained at.
        twin_module: the `keras.applications` module of the twin, whose
            `preprocess_input` the twin's own inputs go through ("resnet").
    """

    twin: str
    preprocessing: str
    input_size: int
    twin_module: str

    def twin_preprocess_input(self, images):
        """The twin's own input pipeline (`keras.applications.<module>.preprocess_input`)."""
        import keras

        return getattr(keras.applications, self.twin_module).preprocess_input(images)


@dataclasses.dataclass(frozen=True)
class TimmPretrained:
    """A timm checkpoint's card entry, read from its `pretrained_cfg` (`kr.timm`).

    Attributes:
        checkpoint: "timm:ARCHITECTURE.TAG", or the path of a local `.safetensors`.
        preprocessing: the `ImagePreprocessing` mode of its mean and std ("torch",
            "tf"), or {"mean": [...], "std": [...]} (in [0, 1]) for others.
        input_size: the height and width it was trained and is evaluated at.
        crop_pct: timm's evaluation crop: resize the shorter side to
            `input_size / crop_pct`, then take the central `input_size` square.
        interpolation: the resize's ("bicubic", "bilinear").
        license: the checkpoint's licence, as its config states it (None: unstated).
    """

    checkpoint: str
    preprocessing: object
    input_size: int
    crop_pct: float
    interpolation: str
    license: str | None = None

    @classmethod
    def from_pretrained_cfg(cls, checkpoint, config, modes_by_mean_std):
        """From timm's `pretrained_cfg` dict; `modes_by_mean_std` maps (mean, std) to a mode."""
        mean = tuple(round(float(value), 6) for value in config["mean"])
        std = tuple(round(float(value), 6) for value in config["std"])
        preprocessing = modes_by_mean_std.get((mean, std)) or {"mean": list(mean), "std": list(std)}
        _, height, width = config["input_size"]
        if height != width:
            raise ValueError(
                f"{checkpoint}: input size {height}x{width} is not square; our models take "
                "square inputs."
            )
        return cls(
            checkpoint,
            preprocessing,
            int(height),
            float(config.get("crop_pct") or 1.0),
            config.get("interpolation") or "bilinear",
            config.get("license"),
        )


@dataclasses.dataclass(frozen=True)
class FeatureTap:
    """One feature map a backbone offers to a detection or segmentation head.

    Attributes:
        layer: the layer-name prefix of the tap: the map is the output of the
            last layer whose name is this prefix or starts with it plus "_"
            (so `stage1_block2` finds `stage1_block2_relu` in a batch-normalized VGG).
        channels: channels of the map at the card's default configuration.
        reduction: the stride of the map relative to the input (timm's name).
    """

    layer: str
    channels: int
    reduction: int


# `kerasrecipes.layers.normalization.BN_MOMENTUM`, spelled here too: this module imports no Keras.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Everything the package knows about one registered model.

    Attributes:
        name: the registered name, e.g. "resnet50".
        builder: the function that builds it from keyword arguments.
        family: the architecture family (the module in `kerasrecipes.models`).
        paper: the reference the model follows.
        default_input_shape: the input shape it is built with by default.
        min_input_size: the smallest height/width it accepts.
        variant: the variant's numbers as named fields (depths, widths, ...).
        preprocessing: the `ImagePreprocessing` mode the builder puts in front
            of the network with `include_preprocessing=True` (the pretrained
            weights' mode when it has them, [0, 1] scaling otherwise).
        pretrained: dict of weights tag ("imagenet") -> `PretrainedWeights`.
        blocks: the blocks in order, as layer-name prefixes ("stage1_block1", ...);
            with the stem before them and the head after them, these are the
            parameter groups of `kr.param_groups`.
        feature_taps: the maps `features_only=True` can return, shallow to deep.
        drop_path: whether the network has residual branches for stochastic depth.
        heavy: whether the test suite runs only its forward pass by default.
        bn_momentum: the momentum of its BatchNorm layers' moving averages,
            None when its default build has none (ViT, ConvNeXt, AlexNet). 0.9,
            PyTorch's default: Keras' 0.99 still holds 58% of the initial
            statistics after 54 steps (docs/regularization.md).
            `create_model(..., bn_momentum=m)` builds it with another.
        depthwise: whether its blocks are built on depthwise convolutions
            (MobileNetV2, EfficientNet, ConvNeXt); `precision="auto"` keeps
            these in float32 on CPUs, where bf16 trained them slower.
    """

    name: str
    builder: Callable
    family: str
    paper: str
    default_input_shape: tuple
    min_input_size: int
    variant: dict = dataclasses.field(default_factory=dict)
    preprocessing: str = "unit"
    pretrained: dict = dataclasses.field(default_factory=dict)
    blocks: tuple = ()
    feature_taps: tuple = ()
    drop_path: bool = True
    heavy: bool = False
    depthwise: bool = False
    bn_momentum: float | None = BN_MOMENTUM

    @property
    def param_group_names(self):
        """The group names in order: "stem", the blocks, "head"."""
        return ("stem", *self.blocks, "head")


# The earlier name of the card, kept for code that imported it.
ModelEntry = ModelCard


def stage_blocks(blocks_per_stage, first_stage=1):
    """The block names of stages with the given numbers of blocks: ("stage1_block1", ...)."""
    return tuple(
        f"stage{stage}_block{block}"
        for stage, count in enumerate(blocks_per_stage, start=first_stage)
        for block in range(1, count + 1)
    )


def register_model(
    name,
    *,
    family,
    paper,
    default_input_shape,
    min_input_size,
    variant=None,
    preprocessing=None,
    pretrained=None,
    blocks=(),
    feature_taps=(),
    drop_path=True,
    heavy=False,
    depthwise=False,
    bn_momentum=BN_MOMENTUM,
):
    """Decorator that registers a model constructor under `name` with its card.

    `pretrained` is a dict of tag -> `PretrainedWeights`; `preprocessing`
    defaults to the ImageNet weights' mode when there are some, else "unit".
    """
    pretrained = dict(pretrained or {})
    if preprocessing is None:
        preprocessing = pretrained["imagenet"].preprocessing if "imagenet" in pretrained else "unit"

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"A model named '{name}' is already registered.")
        _REGISTRY[name] = ModelCard(
            name=name,
            builder=builder,
            family=family,
            paper=paper,
            default_input_shape=tuple(default_input_shape),
            min_input_size=min_input_size,
            variant=dict(variant or {}),
            preprocessing=preprocessing,
            pretrained=pretrained,
            blocks=tuple(blocks),
            feature_taps=tuple(feature_taps),
            drop_path=drop_path,
            heavy=heavy,
            depthwise=depthwise,
            bn_momentum=bn_momentum,
        )
        return builder

    return decorator


# Task heads built on a backbone: name -> builder (`register_head`).
_HEADS = {}


def register_head(name):
    """Decorator that registers a dense-prediction head (U-Net, detector) under `name`.

    `create_model(name, backbone=..., ...)` calls the builder; heads have no
    model card of their own, they read their backbone's.
    """

    def decorator(builder):
        if name in _HEADS or name in _REGISTRY:
            raise ValueError(f"A model or head named '{name}' is already registered.")
        _HEADS[name] = builder
        return builder

    return decorator


def list_heads():
    """The registered task heads, e.g. `['unet', ...]`; they take any CNN of `list_models()`."""
    return sorted(_HEADS)


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern="*", pretrained=False):
    """Returns the registered model names matching a shell-style `pattern`, sorted.

    Args:
        pattern: shell-style pattern, e.g. "resnet*". Defaults to "*".
        pretrained: bool, or a weights tag: only models with pretrained
            weights (with that tag). Defaults to False.

    Example:

    >>> list_models("resnet5*")
    ['resnet50', 'resnet56']
    >>> list_models("resnet*", pretrained=True)
    ['resnet50', 'resnet101', 'resnet152']
    """
    tag = pretrained if isinstance(pretrained, str) else None
    names = []
    for name, card in _REGISTRY.items():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if pretrained and not (card.pretrained if tag is None else tag in card.pretrained):
            continue
        names.append(name)
    return sorted(names, key=_natural_key)


def model_card(name):
    """Returns the `ModelCard` of the registered model `name`; an unknown name raises ValueError.

    >>> model_card("resnet50").pretrained["imagenet"].preprocessing
    'caffe'
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name: {name!r}.{hint} "
            "Call kerasrecipes.list_models() to see every registered name."
        )
    return _REGISTRY[name]


def get_model_entry(name):
    """The earlier name of `model_card`, kept as an alias."""
    return model_card(name)


def find_card(model):
    """The card of a model built by `create_model` (found by its name), or None."""
    return _REGISTRY.get(getattr(model, "name", None))
