"""`kr.run(config)`: what `kerasrecipes finetune` does, as one function.

From a `FineTuneConfig` and a data folder (or none: the task's built-in
demo) to a finished run folder: the demo data, the backbone, the image size,
the task's reader, `fine_tune`, the report. The command parses its options
into a config and prints what this returns; `kr.ablate` and the recipes call
it too, so a run from Python and a run from the shell are the same run.
"""

import contextlib
import dataclasses
import json
import logging
import os
import time
import warnings

from kerasrecipes import timm
from kerasrecipes.backbones import load_backbone
from kerasrecipes.cards import model_card
from kerasrecipes.data.verify import default_cache_dir
from kerasrecipes.finetune import report as reports
from kerasrecipes.finetune.config import FineTuneConfig, is_weights_file, resolve_config
from kerasrecipes.finetune.run_folder import default_out_dir, is_inside
from kerasrecipes.finetune.training import (
    FINISHED_EARLIER,
    find_learning_rate,
    fine_tune,
    save_range_test,
)
from kerasrecipes.precision import auto_precision
from kerasrecipes.tasks import get_task

DEMO_OUT = os.path.join("runs", "demo")


@dataclasses.dataclass
class RunResult:
    """What `run` returns: the run folder, its report, and the model and history of
    `fine_tune` (the stored ones when the run had finished earlier)."""

    out_dir: str
    report: dict
    model: object
    history: object
    seconds: float

    @property
    def finished_earlier(self):
        return self.history.finished_earlier


def run(config=None, data=None, *, echo=None, **overrides):
    """Trains `config` on the folder `data` into its run folder, as `kerasrecipes finetune`.

    Args:
        config: a `kr.FineTuneConfig` (fields may also be passed as keywords).
        data: the data folder in the task's layout (class folders, images and
            masks, COCO); None for the task's built-in demo data.
        echo: a function given each line the command prints (the data, the
            backbone, the results); default: `print` unless `config.verbose`
            is 0.

    Returns:
        a `RunResult`. Run the same call again to resume an interrupted run;
        a finished run is not retrained (`restart=True` does).

    >>> import kerasrecipes as kr                                        # doctest: +SKIP
    >>> result = kr.run(kr.FineTuneConfig(task="segmentation"))          # doctest: +SKIP
    >>> result.report["mean_iou"]                                        # doctest: +SKIP
    """
    started = time.perf_counter()
    config = (config or FineTuneConfig()).replace(**overrides)
    if echo is None:
        echo = print if config.verbose != 0 else _silent
    config, backbone, (train, val, info), data = prepare(config, data, echo)
    out = config.out_dir
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{FINISHED_EARLIER}")  # said below
        model, history = fine_tune(backbone, train, val, config=config, info=info, data_source=data)
    with open(os.path.join(out, "report.json")) as file:
        report = json.load(file)
    seconds = time.perf_counter() - started
    if history.finished_earlier:
        echo(
            f"{out} holds a run that finished earlier ({report['finished_at']}); nothing was "
            "trained. Its result:"
        )
    for line in reports.summary_lines(report, out, saved_now=not history.finished_earlier):
        echo(line)
    if history.finished_earlier:
        echo("Run with --restart to train again there, or give another --out.")
    else:
        echo(f"{seconds:.0f} s in all")
    return RunResult(out, report, model, history, seconds)


def prepare(config, data, echo):
    """What a run trains on, said as it is decided: `(config, backbone, (train, val, info),
    data)`, with every setting resolved, the run folder chosen and the demo data made."""
    task = get_task(config.task)
    if data is not None and not os.path.isdir(data):
        raise FileNotFoundError(f"--data {data}: no such folder. Give {task.data_layout}.")
    asked_size = config.image_size
    config = resolve_config(config, demo=data is None, data=data)
    size_reason = image_size_reason(config, asked_size, data)
    out = config.out_dir or (demo_out_dir(task.name) if data is None else default_out_dir(data))
    if data is not None and is_inside(out, data):
        raise ValueError(
            f"--out {out} is inside the data folder {os.path.realpath(data)}; the run's "
            "files would be read as images next time. Give an --out outside it."
        )
    config = config.replace(out_dir=out)
    if data is None:
        data, description = task.demo_data(default_cache_dir())
        echo(f"Demo data: {data} ({description})")
    model_card(config.model)  # an unknown name fails before any work
    backbone = load_backbone(
        config.model,
        config.weights,
        # The demo backbone is pre-trained at its own size; a dense head rebuilds it at the data's.
        image_size=(
            None if task.rebuilds_backbone and config.weights == "demo" else config.image_size
        ),
        preprocessing=config.preprocessing,
        verbose=config.verbose,
    )
    echo(f"Backbone: {backbone.description}")
    if config.image_size is None:  # a weights file: its model's input size, else the card's
        size = backbone.model.input_shape[1] or model_card(config.model).default_input_shape[0]
        config = config.replace(image_size=int(size))
    if config.precision == "auto":
        config = config.replace(precision=auto_precision(backbone.model))
    datasets = read_data(data, config)
    for line in data_lines(task, datasets[2], data):
        echo(line)
    echo(settings_line(config, size_reason, datasets[0]))
    return config, backbone, datasets, data


def lr_find(config=None, data=None, *, echo=print, **overrides):
    """The LR range test of the run `config` describes, as `kerasrecipes lr-find` runs it.

    Writes `lr_find/command-<phase>.png` and `.json` into the run folder (the
    one `kr.run` would train in) and returns the suggested rate of the first
    phase.
    """
    config = (config or FineTuneConfig()).replace(**overrides)
    config, backbone, (train, _, info), data = prepare(config, data, echo)
    finder, phase = find_learning_rate(backbone, train, config, info=info)
    if finder.suggested_lr is None:
        raise ValueError(
            "lr-find: the loss was not finite for long enough to suggest a rate; try a smaller "
            "batch or check the data."
        )
    # Not `<phase>.json`, which a run with `--lr auto` would take as its own test.
    record = os.path.join(config.out_dir, "lr_find", f"command-{phase.name}.json")
    save_range_test(finder, record)
    echo(
        f"Suggested learning rate for phase {phase.name}: {finder.suggested_lr:.2g} (the "
        f"loss falls fastest there; lowest loss at {finder.min_loss_lr:.2g}). The curve: "
        f"{record.removesuffix('.json')}.png. Train with --lr {finder.suggested_lr:.2g}."
    )
    return finder.suggested_lr


def show_batch(config=None, data=None, *, echo=print, count=16, **overrides):
    """A grid of training images as the model sees them (augmented, with their labels, masks or
    boxes): fastai's `show_batch`, as `kerasrecipes show-batch` runs it.

    Writes `batch.png` into the run folder (the one `kr.run` would train
    in) and returns its path. Nothing trains.
    """
    config = (config or FineTuneConfig()).replace(**overrides)
    config, _, (train, val, info), data = prepare(config, data, echo)
    task = get_task(config.task)
    counts = getattr(info, "counts", None)
    train, _, _, _ = task.training_data(train, val, config, counts, len(info.class_names))
    images, targets = next(iter(train.unbatch().batch(count).take(1)))
    if isinstance(targets, dict):
        targets = {key: value.numpy() for key, value in targets.items()}
    else:
        targets = targets.numpy()
    os.makedirs(config.out_dir, exist_ok=True)
    path = os.path.join(config.out_dir, "batch.png")
    task.plot_batch(images.numpy(), targets, list(info.class_names), path)  # written atomically
    augment = config.augment or "none"
    echo(f"Wrote {path}: {len(images)} training images, augmentation {augment}")
    return path


def image_size_reason(config, asked_size, data):
    """Why the run trains at `config.image_size`, in a few words for the settings line."""
    weights = config.weights
    if asked_size is not None:
        return "as given"
    if is_weights_file(weights):
        return "the weights file's input size"
    if weights == "demo":
        scenes = get_task(config.task).rebuilds_backbone  # a dense head's demo: scenes' size
        return "the demo scenes' size" if scenes else "the demo backbone's size"
    if weights == "none" and data is not None:
        return "the data's median image size; no pretrained weights fix it"
    if timm.is_timm_weights(weights):
        return "the size the timm checkpoint was trained at"
    pretrained = model_card(config.model).pretrained.get(weights)
    if pretrained is not None and pretrained.input_size:
        return f"the size the {weights} weights were trained at"
    return f"{config.model}'s default"


def settings_line(config, size_reason, train):
    """What the run decided, before it trains: model, weights, size and why, precision, batch,
    steps per epoch, run folder."""
    batches = int(train.cardinality())
    steps = f"{batches} steps per epoch" if batches > 0 else "steps per epoch unknown"
    return (
        f"Settings: {config.model}, weights {config.weights}, image size "
        f"{config.image_size}x{config.image_size} ({size_reason}; --image-size sets it), "
        f"precision {config.precision}, batch {config.batch_size}, {steps}, run folder "
        f"{config.out_dir}"
    )


def demo_out_dir(task):
    """The demo's run folder: runs/demo, and one per other task so the demos do not collide."""
    suffix = get_task(task).demo_run_suffix
    return f"{DEMO_OUT}-{suffix}" if suffix else DEMO_OUT


def read_data(data, config):
    """The task's reader on `data` at the config's size, batch, split and seed, as a run reads
    it; the scan's warning kept off the terminal (see `quiet_scan_log`)."""
    with quiet_scan_log():
        return get_task(config.task).read(data, config)


@contextlib.contextmanager
def quiet_scan_log():
    """Keeps the scan's warning off the terminal: the commands list the skipped files
    themselves, and `kr.ablate` lists them once before its runs scan the same folder."""
    data_logger = logging.getLogger("kerasrecipes.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        data_logger.setLevel(level)


def data_lines(task, info, folder):
    """The lines that say what was read: counts per class and the skipped files."""
    lines = [f"Data: {task.describe_data(info)}; {len(info.skipped)} files skipped"]
    for path, reason in info.skipped[:10]:
        lines.append(f"  skipped {os.path.relpath(path, folder)}: {reason}")
    if len(info.skipped) > 10:
        lines.append(f"  ... and {len(info.skipped) - 10} more, listed in report.json")
    return lines


def _silent(line):
    pass
