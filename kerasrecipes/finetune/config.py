"""One config for every fine-tuning entry point, and the phases it resolves to.

`FineTuneConfig` holds every knob with its default, documented once in its
fields' `help`. `kr.fine_tune(config=...)`, the `kerasrecipes finetune`
command (its options are generated from the fields) and
`recipes/finetune_two_class.py` all read it, and `resolve_config` fills in
what depends on the situation (the demo, weights "none", the card's native
input size, the precision this machine runs fast) in one place. A run is a
list of `Phase`s (`plan_phases`); the report records the resolved config.

This module imports neither Keras nor TensorFlow at import time.
"""

import dataclasses
import importlib.util
import math
import os
import re
import typing
import warnings
from dataclasses import dataclass, field

from kerasrecipes import timm
from kerasrecipes.cards import DEMO_IMAGE_SIZE, DEMO_MODEL, model_card
from kerasrecipes.precision import auto_precision
from kerasrecipes.tasks import get_task, task_names

# A phase's learning rate "auto": the LR range test runs before the phase and picks it.
AUTO_LR = "auto"


def __getattr__(name):
    """Old names: the task defaults and the demo constants now live on each task."""
    old = {
        "TASK_DEFAULTS": lambda: {name: get_task(name).defaults for name in task_names()},
        "DEMO_DETECTION_MODEL": lambda: get_task("detection").defaults.demo_model,
        "DETECTION_HEAD_LR": lambda: get_task("detection").defaults.head_lr,
        "DEMO_SCENE_SIZE": lambda: get_task("segmentation").defaults.demo_image_size,
        "DENSE_AUGMENT": lambda: get_task("segmentation").augment_presets,
    }
    if name not in old:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"kerasrecipes.finetune.config.{name} is deprecated: read it from the task, "
        "kr.tasks.get_task(name).defaults",
        DeprecationWarning,
        stacklevel=2,
    )
    return old[name]()


DATA_MODEL = "efficientnet_b0"
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZERS = ("adamw", "sgd")
PREPROCESSING = ("auto", "caffe", "tf", "torch", "unit", "none")
BALANCE = (None, "class_weight", "oversample")
SCHEDULES = ("constant", "cosine")
TASKS = task_names()  # the built-in ones; `check_config` also takes registered tasks


class Budget(typing.NamedTuple):
    """A phase's default length: `steps` optimizer steps, within `fewest`..`most` epochs."""

    steps: int
    fewest: int
    most: int


# Phase lengths by default, in optimizer steps, so that a 200-image folder and a 20,000-image
# one both train long enough (docs/regularization.md, "Budgets"): a new head on frozen features
# converges in tens of steps, fine-tuning in about a hundred more, a network from scratch in
# about a thousand (ResNet-20 on the ablation demo: at chance after 300 steps, 0.985 after 1,000).
BUDGETS = {
    "head": Budget(steps=60, fewest=2, most=20),
    "finetune": Budget(steps=150, fewest=3, most=30),
    "scratch": Budget(steps=1000, fewest=8, most=60),
}
# The fraction of a phase that warms the rate up linearly before its cosine decay, where the
# whole network trains.
WARMUP_FRACTION = 0.1


def knob(default, help, flag=None, aliases=(), choices=None, cli=True):
    """A config field with the help text and command-line flag it is documented by."""
    metadata = {"help": help, "flag": flag, "aliases": tuple(aliases), "choices": choices}
    metadata["cli"] = cli
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Phase:
    """One phase of a run: what trains, for how long, at which rates.

    Attributes:
        name: the phase's name, used in logs, the report and the run folder.
        epochs: the most epochs it trains (early stopping may end it sooner).
        trains: "head" (the backbone frozen, BatchNorm included), or which
            backbone blocks train: "all", "k" (the top k blocks, by
            `kr.param_groups`), or a schedule "epoch:blocks,..." counted
            from the phase's first epoch, e.g. "0:1,2:3,4:all".
        learning_rate: the head's rate (AdamW) at the phase's start, or
            "auto": `kr.callbacks.LRFinder`'s suggestion, found before the phase.
        backbone_lr_mult: the backbone's rate relative to the head's.
        layer_decay: None, or the factor each block below the top gets on
            top of `backbone_lr_mult` (BEiT's layer decay).
        train_bn: whether unfrozen BatchNorm layers train.
        schedule: "constant", or "cosine" (to 0 over the phase).
        warmup: the fraction of the phase's steps over which the rate rises
            linearly from 0 before the cosine decay (Goyal et al. 2017,
            arXiv:1706.02677). Defaults to 0.
    """

    name: str
    epochs: int
    trains: str
    learning_rate: float | str
    backbone_lr_mult: float = 1.0
    layer_decay: float | None = None
    train_bn: bool = False
    schedule: str = "constant"
    warmup: float = 0.0


@dataclass(frozen=True)
class FineTuneConfig:
    """Every setting of a fine-tuning run, with its default.

    Build one and pass it to `kr.fine_tune(..., config=config)`, or pass
    fields as keywords (`kr.fine_tune(..., head_epochs=2)`); the command
    `kerasrecipes finetune` has one option per field (`--head-epochs 2`).
    `resolve_config` turns the defaults that depend on the situation (None,
    "auto") into the values used, and the run's `report.json` records them.
    """

    # what to train on
    task: str = knob(
        "classification",
        "classification (a head on the pooled features), segmentation (a U-Net decoder on "
        "the backbone's feature pyramid) or detection (a RetinaNet on its stride 8-32 maps)",
        choices=TASKS,
    )
    model: str | None = knob(
        None, f"registered model name (default: {DATA_MODEL}; the demo: {DEMO_MODEL})"
    )
    weights: str | None = knob(
        None,
        "imagenet (default with --data), demo (default without), none (from scratch: no head "
        "phase, backbone at the full rate, BatchNorm trains), a timm checkpoint "
        "(timm:NAME.TAG from the Hugging Face Hub, or its .safetensors file; the model "
        "defaults to its architecture), or a .keras/.weights.h5 file",
    )
    image_size: int | None = knob(
        None,
        "input height and width, for the backbone and the data alike (default: the size "
        "the pretrained weights were trained at, else the card's default)",
    )
    batch_size: int | None = knob(None, "images per batch (default: 32; 16 for detection)")
    validation_split: float = knob(0.2, "fraction of each class held out for validation")
    preprocessing: str = knob(
        "auto",
        "input scaling put in front of the backbone (auto: what the weights expect, inside "
        "the model)",
        choices=PREPROCESSING,
    )
    # the phases
    head_epochs: int | None = knob(
        None,
        "epochs of phase 1: the new head on the frozen backbone (default: from --head-steps)",
    )
    head_steps: int | None = knob(
        None,
        "phase 1's budget in optimizer steps, rounded up to whole epochs (default: "
        f"{BUDGETS['head'].steps}, within {BUDGETS['head'].fewest}-{BUDGETS['head'].most} "
        "epochs); --head-epochs wins",
    )
    head_lr: float | str | None = knob(
        None,
        "learning rate of phase 1, or auto: the LR range test's suggestion before the phase "
        "(kr.callbacks.LRFinder) (default: 3e-3; 1e-3 for detection)",
        aliases=("--lr",),
    )
    finetune_epochs: int | None = knob(
        None,
        "epochs of phase 2: the backbone unfrozen; 0 = head only (default: from --finetune-steps)",
        aliases=("--epochs",),
    )
    finetune_steps: int | None = knob(
        None,
        "phase 2's budget in optimizer steps, rounded up to whole epochs (default: "
        f"{BUDGETS['finetune'].steps} within {BUDGETS['finetune'].fewest}-"
        f"{BUDGETS['finetune'].most} epochs; from scratch {BUDGETS['scratch'].steps} within "
        f"{BUDGETS['scratch'].fewest}-{BUDGETS['scratch'].most}); --finetune-epochs wins",
    )
    finetune_lr: float | str | None = knob(
        None, "the head's rate in phase 2, cosine-decayed to 0, or auto (default: --head-lr)"
    )
    backbone_lr_mult: float = knob(0.1, "the backbone's rate in phase 2, relative to the head's")
    optimizer: str = knob(
        "adamw",
        "adamw, or sgd (momentum 0.9); both with the decoupled weight decay below",
        choices=OPTIMIZERS,
    )
    layer_decay: float | None = knob(
        None, "per-block rate factor below the top block in phase 2, e.g. 0.75"
    )
    unfreeze: str = knob(
        "all",
        "what phase 2 unfreezes: all, the top K blocks, or progressively "
        "'EPOCH:BLOCKS,...' counted from phase 2's start, e.g. '0:1,2:3,4:all'",
    )
    train_bn: bool = knob(False, "let BatchNorm layers train once unfrozen")
    bn_momentum: float | None = knob(
        None,
        "momentum of the moving averages of every BatchNorm layer that trains (default: as "
        "the model was built: 0.9 in ours, Keras' 0.99 in keras.applications')",
    )
    precise_bn: bool = knob(
        True,
        "at the end of each phase, set the moving statistics of the BatchNorm layers that "
        "trained to those of the training data (kr.callbacks.PreciseBN)",
    )
    phases: tuple | None = knob(
        None, "a list of Phase to run instead of the ones the fields above make", cli=False
    )
    # regularization
    weight_decay: float = knob(1e-4, "decoupled weight decay, not on biases and norms")
    dropout: float = knob(0.2, "dropout before the new classifier")
    label_smoothing: float = knob(0.0, "label smoothing of the cross-entropy")
    augment: str | None = knob(
        "auto",
        "augmentation preset: basic, cifar, randaugment, mixup or cutmix; flip or basic for "
        "segmentation and detection; none (default: none; flip for detection)",
    )
    balance: str | None = knob(
        None, "for imbalanced classes: class_weight or oversample", choices=BALANCE[1:]
    )
    pooling: str = knob("avg", "the head's pooling of the feature map", choices=("avg", "max"))
    early_stopping_patience: int | None = knob(
        3, "early-stopping patience of each phase; none turns it off", aliases=("--patience",)
    )
    monitor: str | None = knob(
        None, "what early stopping watches (default: val_loss, or loss without validation)"
    )
    # speed and tracking
    precision: str = knob(
        "auto",
        "float32, mixed_bfloat16 or mixed_float16; auto: bf16 where this CPU or GPU runs it "
        "fast, else float32",
        choices=PRECISIONS,
    )
    ema: bool = knob(False, "validate and save an exponential moving average of the weights")
    grad_accumulation: int = knob(1, "batches whose gradients add up to one update")
    tensorboard: bool = knob(False, "write TensorBoard logs to the run folder's tensorboard/")
    linear_scaling: bool = knob(
        True, "with several replicas, multiply the batch and the rates by their number"
    )
    seed: int | None = knob(0, "seed of the split, the head's initialization and augmentation")
    # the run folder
    out_dir: str | None = knob(
        None,
        "run folder (command default: runs/<data folder name>-<hash of its path>, never "
        "inside the data folder)",
        flag="--out",
    )
    restart: bool = knob(False, "train again from the start in a run folder that has a run")
    verbose: str | int = knob("auto", "fit's verbosity", cli=False)

    def replace(self, **changes):
        """A copy with `changes`; unknown names are a `TypeError` listing the fields."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"FineTuneConfig has no field(s) {unknown}; the fields are "
                f"{[f.name for f in dataclasses.fields(self)]}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The fields as JSON-ready values (phases as dicts)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if values["phases"] is not None:
            values["phases"] = [dataclasses.asdict(phase) for phase in values["phases"]]
        return values


# -- resolving -----------------------------------------------------------------------------------


def resolve_config(config=None, *, demo=None, has_validation=True, data=None, **overrides):
    """`config` with every situational default decided; the one place that decides them.

    - `model`, `weights`: for the command (`demo` True or False), the
      demo's (`baseline_cnn`, "demo") without data, else `efficientnet_b0`
      with "imagenet"; weights "demo" means the demo's model unless one is named. For
      `kr.fine_tune` (`demo` None) the backbone is given and they stay as set.
    - `weights="none"` (from scratch): no head phase, the backbone at the
      full rate (`backbone_lr_mult=1`), and BatchNorm trains.
    - `image_size`: the size the pretrained weights were trained at
      (the card's `pretrained[weights].input_size`), else the card's
      default; 32 for the demo backbone (96, the demo scenes' size, for
      segmentation); left None for a weights file,
      whose model decides once loaded.
      Without pretrained weights (`weights="none"`) and with a `data`
      folder, the data's median image size instead (`data_image_size`).
    - `head_lr`, `batch_size`, `augment` ("auto"), and the step budgets when
      no epochs are set: the task's (`kr.tasks.get_task(task).defaults`:
      3e-3, 32, none; for detection 1e-3, 16, "flip", 120 + 240 steps);
      `augment="none"` is None;
      `finetune_lr`: `head_lr`; `monitor`: "val_loss" (or "loss" when
      there is no validation data); `precision` "auto": `auto_precision(model)`
      (`fine_tune` asks again with the backbone it is given);
      `unfreeze`: its canonical text ("all", "2", "0:1,2:all").

    Resolving a resolved config changes nothing. Invalid values are a
    `ValueError` naming the field.
    """
    config = (config or FineTuneConfig()).replace(**overrides)
    changes = {}
    weights, model = config.weights, config.model
    if weights is None and demo is not None:
        weights = "demo" if demo else "imagenet"
    defaults = get_task(config.task).defaults
    if weights == "demo" and model is None:
        model = defaults.demo_model
    elif model is None and timm.is_timm_weights(weights):
        model = timm.resolve(weights).architecture.model
    elif model is None and demo is not None:
        model = DATA_MODEL
    changes.update(model=model, weights=weights)
    if weights == "none":
        changes.update(head_epochs=0, backbone_lr_mult=1.0, train_bn=True)
    if config.image_size is None and model is not None and not is_weights_file(weights):
        changes["image_size"] = native_image_size(model, weights)
        if weights == "demo" and defaults.demo_image_size:
            changes["image_size"] = defaults.demo_image_size
        elif weights == "none" and data is not None:
            changes["image_size"] = data_image_size(data, model, config.task)
    head_lr = defaults.head_lr if config.head_lr is None else config.head_lr
    changes["head_lr"] = head_lr
    changes["batch_size"] = defaults.batch_size if config.batch_size is None else config.batch_size
    augment = defaults.augment if config.augment == "auto" else config.augment
    changes["augment"] = None if augment == "none" else augment
    if config.head_epochs is None and config.head_steps is None:
        changes["head_steps"] = defaults.head_steps
    if config.finetune_epochs is None and config.finetune_steps is None:
        changes["finetune_steps"] = defaults.finetune_steps
    changes["finetune_lr"] = head_lr if config.finetune_lr is None else config.finetune_lr
    changes["monitor"] = config.monitor or ("val_loss" if has_validation else "loss")
    if config.precision == "auto":
        changes["precision"] = auto_precision(model)
    changes["unfreeze"] = unfreeze_text(parse_unfreeze(config.unfreeze))
    if config.out_dir is not None:
        changes["out_dir"] = os.fspath(config.out_dir)
    if config.phases is not None:
        changes["phases"] = tuple(_as_phase(phase) for phase in config.phases)
    resolved = config.replace(**changes)
    check_config(resolved)
    return resolved


def resolve_budget(config, steps_per_epoch):
    """`config` with `head_epochs` and `finetune_epochs` decided from the data's size.

    An epoch count that is set stays. Otherwise a phase runs its step budget
    (`head_steps`, `finetune_steps`, else the default of `BUDGETS`: the
    "scratch" one for phase 2 with `weights="none"`), rounded up to whole
    epochs of `steps_per_epoch` batches; a default budget is kept within its
    fewest and most epochs. With `steps_per_epoch` unknown (None), a default
    budget runs its fewest epochs.

    >>> resolve_budget(FineTuneConfig(weights="none", head_epochs=0), 7).finetune_epochs
    60
    >>> resolve_budget(FineTuneConfig(), 625).finetune_epochs
    3
    >>> resolve_budget(FineTuneConfig(finetune_steps=50), 20).finetune_epochs
    3
    """
    changes = {}
    for phase in ("head", "finetune"):
        _check_count(config, f"{phase}_steps")
        steps = getattr(config, f"{phase}_steps")
        if getattr(config, f"{phase}_epochs") is not None:
            continue
        budget = BUDGETS["scratch" if phase == "finetune" and config.weights == "none" else phase]
        if steps is not None:
            epochs = math.ceil(steps / steps_per_epoch) if steps_per_epoch else budget.fewest
        elif steps_per_epoch:
            epochs = min(max(math.ceil(budget.steps / steps_per_epoch), budget.fewest), budget.most)
        else:
            epochs = budget.fewest
        changes[f"{phase}_epochs"] = epochs
    return config.replace(**changes)


def is_weights_file(weights):
    """Whether `weights` names a file (the model in a `.keras` file decides its input size)."""
    return isinstance(weights, str) and weights.endswith((".keras", ".h5"))


def data_image_size(data, model, task="classification"):
    """The input size for training `model` from scratch on the images in folder `data`.

    Their median side (`(height + width) / 2`), rounded to the task's
    `size_multiple` (8; 32 for detection, RetinaNet's stride), at least the card's
    `min_input_size` and at most its default size: 32-px images train at 32
    px, where the card's 224 would cost 49x the compute for nothing, and
    large photos at the size the architecture was designed for. The card's
    default when no image is readable.
    """
    # Here, not at the top: this module stays free of TensorFlow (the command's --help reads
    # it), and importing `kerasrecipes.data` imports TensorFlow.
    from kerasrecipes.data.verify import median_image_size

    card = model_card(model)
    default = int(card.default_input_shape[0])
    median = median_image_size(data)
    if median is None:
        return default
    multiple = get_task(task).defaults.size_multiple
    size = max(multiple, round(median / multiple) * multiple)
    return min(max(size, card.min_input_size), default)


def native_image_size(model, weights):
    """The input size for `model` with `weights`: the pretrained one, else the card's default."""
    if weights == "demo":
        return DEMO_IMAGE_SIZE
    if timm.is_timm_weights(weights):
        return timm.resolve(weights, model).pretrained.input_size
    card = model_card(model)
    if weights in card.pretrained and card.pretrained[weights].input_size:
        return int(card.pretrained[weights].input_size)
    return int(card.default_input_shape[0])


# -- unfreezing schedules ------------------------------------------------------------------------


def parse_unfreeze(value):
    """`{epoch: blocks}` (blocks None = all) from "all", k, "E:B,...", or a dict; ValueError else."""
    if isinstance(value, dict):
        steps = dict(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        steps = {0: value}
    elif isinstance(value, str) and ":" in value:
        steps = {}
        for part in value.split(","):
            epoch, _, blocks = part.partition(":")
            steps[_integer(epoch, value)] = blocks.strip()
    elif isinstance(value, str) or value is None:
        steps = {0: value}
    else:
        steps = {0: object()}
    schedule = {}
    for epoch, blocks in steps.items():
        epoch = _integer(epoch, value)
        if blocks in (None, "all"):
            schedule[epoch] = None
            continue
        count = _integer(blocks, value)
        if count < 1 or epoch < 0:
            raise _unfreeze_error(value)
        schedule[epoch] = count
    if not schedule:
        raise _unfreeze_error(value)
    return dict(sorted(schedule.items()))


def unfreeze_text(schedule):
    """The canonical text of an `{epoch: blocks}` schedule: "all", "2" or "0:1,2:all"."""
    if list(schedule) == [0]:
        return "all" if schedule[0] is None else str(schedule[0])
    return ",".join(f"{e}:{'all' if b is None else b}" for e, b in schedule.items())


def _integer(text, value):
    try:
        return int(str(text).strip())
    except ValueError:
        raise _unfreeze_error(value) from None


def _unfreeze_error(value):
    return ValueError(
        "unfreeze must be 'all', a number of top blocks >= 1, or a schedule "
        f"'EPOCH:BLOCKS,...' such as '0:1,2:all'. Received: unfreeze={value!r}"
    )


# -- checking ------------------------------------------------------------------------------------


def check_config(config):
    """Raises `ValueError` naming the first field of `config` that cannot work."""

    def fail(name, rule):
        raise ValueError(f"{name} {rule}. Received: {name}={getattr(config, name)!r}")

    for name in ("head_epochs", "finetune_epochs", "head_steps", "finetune_steps"):
        _check_count(config, name)
    if config.phases is None and config.head_epochs == 0 == config.finetune_epochs:
        raise ValueError(
            "head_epochs and finetune_epochs must not both be 0: nothing would train. "
            f"Received: head_epochs={config.head_epochs}, "
            f"finetune_epochs={config.finetune_epochs}"
        )
    for name in ("head_lr", "finetune_lr"):
        value = getattr(config, name)
        if value is not None and value != AUTO_LR and not _is_rate(value):
            fail(name, f"must be a number >= 0 or {AUTO_LR!r}")
    for name in ("backbone_lr_mult", "weight_decay"):
        value = getattr(config, name)
        if value is not None and not value >= 0:
            fail(name, "must be >= 0")
    if config.bn_momentum is not None and not 0 <= config.bn_momentum < 1:
        fail("bn_momentum", "must be in [0, 1)")
    if config.layer_decay is not None and not 0 < config.layer_decay <= 1:
        fail("layer_decay", "must be in (0, 1]")
    for name in ("dropout", "label_smoothing"):
        if not 0 <= getattr(config, name) < 1:
            fail(name, "must be in [0, 1)")
    if not 0 <= config.validation_split < 1:
        fail("validation_split", "must be in [0, 1)")
    for name in ("batch_size", "grad_accumulation"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            fail(name, "must be an integer >= 1")
    if config.image_size is not None and (
        not isinstance(config.image_size, int) or config.image_size < 8
    ):
        fail("image_size", "must be an integer >= 8")
    patience = config.early_stopping_patience
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        fail("early_stopping_patience", "must be an integer >= 1, or None to turn it off")
    for name, allowed in (
        ("precision", PRECISIONS[1:]),
        ("preprocessing", PREPROCESSING),
        ("balance", BALANCE),
        ("pooling", ("avg", "max")),
        ("optimizer", OPTIMIZERS),
        ("task", task_names()),
    ):
        if getattr(config, name) not in allowed:
            fail(name, f"must be one of {list(allowed)}")
    get_task(config.task).check_config(config, fail)
    if config.tensorboard and not config.out_dir:
        fail("tensorboard", "needs a run folder to write to: set out_dir (--out)")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        fail("tensorboard", "needs the tensorboard package: pip install tensorboard")
    for phase in config.phases or ():
        if phase.schedule not in SCHEDULES:
            raise ValueError(
                f"Phase {phase.name!r}: schedule must be one of {list(SCHEDULES)}. "
                f"Received: {phase.schedule!r}"
            )
        if phase.trains != "head":
            parse_unfreeze(phase.trains)
        if phase.learning_rate != AUTO_LR and not _is_rate(phase.learning_rate):
            raise ValueError(
                f"Phase {phase.name!r}: learning_rate must be a number >= 0 or {AUTO_LR!r}. "
                f"Received: {phase.learning_rate!r}"
            )


def _check_count(config, name):
    """A `ValueError` naming field `name` unless it is None or an integer >= 0."""
    value = getattr(config, name)
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(
            f"{name} must be an integer >= 0, or None for the default. Received: {name}={value!r}"
        )


def _is_rate(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _as_phase(phase):
    return phase if isinstance(phase, Phase) else Phase(**phase)


# -- phases --------------------------------------------------------------------------------------


def plan_phases(config, steps_per_epoch=None):
    """The phases a resolved config runs: the built-in recipes are just lists.

    Epochs left to the default budget are decided by `resolve_budget` for
    `steps_per_epoch` batches per epoch (`fine_tune` passes its data's);
    unknown, a default budget runs its fewest epochs.

    - default: `[head, finetune]`, phase 1 on the frozen backbone at
      `head_lr`, then the backbone unfrozen at `backbone_lr_mult` of a
      cosine-decayed `finetune_lr`;
    - head only (`finetune_epochs=0`): `[head]`;
    - from scratch (`weights="none"`): `[finetune]` at multiplier 1 with
      BatchNorm training;
    - progressive unfreezing (`unfreeze="0:1,2:all"`): `[head, finetune]`
      with phase 2's `trains` the schedule;
    - `config.phases`, when given, as it is.
    """
    if config.phases is not None:
        return [_as_phase(phase) for phase in config.phases]
    config = resolve_budget(config, steps_per_epoch)
    phases = []
    if config.head_epochs:
        phases.append(Phase("head", config.head_epochs, "head", config.head_lr))
    if config.finetune_epochs:
        phases.append(
            Phase(
                "finetune",
                config.finetune_epochs,
                trains=config.unfreeze,
                learning_rate=config.finetune_lr,
                backbone_lr_mult=config.backbone_lr_mult,
                layer_decay=config.layer_decay,
                train_bn=config.train_bn,
                schedule="cosine",
                warmup=WARMUP_FRACTION,
            )
        )
    return phases


def describe_phase(phase):
    """A short description, e.g. "head (backbone frozen)"."""
    if phase.trains == "head":
        return f"{phase.name} (backbone frozen)"
    schedule = parse_unfreeze(phase.trains)
    if list(schedule.values()) == [None]:
        return f"{phase.name} (backbone unfrozen)"
    if len(schedule) == 1:
        return f"{phase.name} (top {schedule[0]} blocks unfrozen)"
    return f"{phase.name} (unfrozen progressively: {phase.trains})"


def cli_flag(config_field):
    """The command-line flag of a field: `--head-epochs` for `head_epochs`."""
    return config_field.metadata.get("flag") or "--" + re.sub("_", "-", config_field.name)
