"""What a task is, and the registry that finds one by name.

A `Task` holds everything that makes classification, segmentation and
detection differ in a run: the head on the backbone, the loss, the metric,
the augmentation, the data reader, the demo data, the defaults, and what
the finished run leaves in its folder. `fine_tune`, the run folder's report,
`kr.run` and the command look the task up once (`get_task(config.task)`) and
ask it; none of them compares task names. keras-hub splits its tasks the
same way (`ImageClassifier`, `ImageSegmenter`, `ObjectDetector`).

This module imports neither Keras nor TensorFlow: the command's `--help`
lists the task names from it. The built-in tasks' modules are imported the
first time one is asked for.
"""

import importlib
import typing

HEAD_LR = 3e-3


class TaskDefaults(typing.NamedTuple):
    """What `resolve_config` fills in for a task when the config leaves it to the default."""

    batch_size: int = 32
    head_lr: float = HEAD_LR
    augment: str | None = None
    head_steps: int | None = None  # None: the budget of `BUDGETS`
    finetune_steps: int | None = None
    size_multiple: int = 8  # what `data_image_size` rounds to
    demo_model: str = "baseline_cnn"  # the model of `weights="demo"`
    demo_image_size: int | None = None  # None: the demo backbone's own size


class Task:
    """One kind of prediction `fine_tune` trains a head for. Subclass it, set the class
    attributes, implement the methods, and `register_task(MyTask())`.

    Attributes:
        name: the config's `task` value.
        main_metric: the metric Keras logs each epoch and the report leads with.
        metric_words: how the command's lines name it.
        least_classes: the fewest classes the task trains on.
        defaults: `TaskDefaults`.
        data_layout: what `--data` must hold, for the error when it does not.
        augment_presets: the `augment` values the task takes, or None for
            `kr.data.augment`'s presets.
        run_files: the files, besides the common ones, its run folder holds.
        counts_are: what the data's per-class counts count, or None for images.
        rebuilds_backbone: whether the head rebuilds the backbone at the data's size (so a
            demo backbone loads at its own).
        demo_run_suffix: the demo's run folder is `runs/demo-<suffix>` (`runs/demo` when
            empty).
        result_keys: the keys of the report's results (`save_results`).
    """

    name = None
    main_metric = None
    metric_words = None
    least_classes = 2
    defaults = TaskDefaults()
    data_layout = "a folder with one subfolder per class"
    augment_presets = None
    run_files = ()
    counts_are = None
    rebuilds_backbone = False
    result_keys = ()

    def check_config(self, config, fail):
        """Calls `fail(field, why)` for a field the task cannot train with."""

    def demo_data(self, cache_dir):
        """`(folder, description)` of the task's built-in demo data, made under `cache_dir`."""
        raise NotImplementedError

    def read(self, folder, config):
        """`(train_ds, val_ds, info)` of `folder` at the config's size, batch, split and seed.

        `info` has what `kr.data.image_folder`'s has and the run folder
        records: `class_names`, `num_classes`, `counts` and `val_counts`
        (per class), `train_paths` and `val_paths`, and `skipped` (a list of
        `(path, reason)`).
        """
        raise NotImplementedError

    @property
    def demo_run_suffix(self):
        return self.name

    def describe_data(self, info):
        """What the reader's `info` holds, for the line the command prints."""
        return f"{len(info.class_names)} classes"

    def training_data(self, train_ds, val_ds, config, class_counts, num_classes):
        """`(train_ds, val_ds, population_ds, class_weight)`: the datasets as the model trains on
        them (balanced, augmented), the unaugmented training data PreciseBN reads, and Keras'
        `class_weight` or None."""
        return train_ds, val_ds, train_ds, None

    def build_model(self, backbone, num_classes, config, train_ds):
        """The task's model: `backbone` (a `keras.Model`) with its head; its new layers' names
        start with `kr.registry.HEAD_PREFIX`."""
        raise NotImplementedError

    def loss(self, config, train_ds):
        """The Keras loss, or None when the model computes its own."""
        raise NotImplementedError

    def metrics(self, num_classes):
        """The Keras metrics that log `main_metric`, or None when a callback logs it."""
        return None

    def callbacks(self, val_ds, class_names):
        """Callbacks that run before the others in each phase (they read the logs these write)."""
        return []

    def save_results(self, folder, model, val_ds, class_names, config, backbone):
        """Writes `model.keras` and the task's figures into the run folder `folder`; returns the
        report's results (its keys are `result_keys`)."""
        raise NotImplementedError

    def summary_lines(self, report):
        """The command's lines about the task's results, after the phase lines."""
        return []

    def plot_batch(self, images, targets, class_names, path):
        """Writes `path` (PNG): training `images` with their `targets` as the model sees them
        (fastai's `show_batch`), for `kerasrecipes show-batch`."""
        raise NotImplementedError


_TASKS = {}
# The built-in tasks, imported (and so registered) when first asked for.
_BUILT_IN = {
    "classification": "kerasrecipes.tasks.classification",
    "segmentation": "kerasrecipes.tasks.segmentation",
    "detection": "kerasrecipes.tasks.detection",
}


def register_task(task):
    """Registers `task` (a `Task`) under `task.name`; returns it."""
    if not isinstance(task, Task) or not task.name:
        raise TypeError(f"register_task takes a Task with a name. Received: {task!r}")
    _TASKS[task.name] = task
    return task


def task_names():
    """The names `FineTuneConfig(task=...)` takes: the built-in tasks, then registered ones."""
    return tuple(dict.fromkeys([*_BUILT_IN, *_TASKS]))


def get_task(name):
    """The registered `Task` called `name`; a `ValueError` lists the names there are."""
    if name not in _TASKS and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    if name not in _TASKS:
        raise ValueError(f"task must be one of {list(task_names())}. Received: task={name!r}")
    return _TASKS[name]


def all_run_files():
    """Every file any registered task's run folder may hold besides the common ones."""
    for name in _BUILT_IN:
        get_task(name)
    return tuple(dict.fromkeys(name for task in _TASKS.values() for name in task.run_files))
