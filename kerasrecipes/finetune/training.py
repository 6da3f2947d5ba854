"""Transfer learning as a list of phases: a new head on a frozen backbone, then fine-tuning.

The lecture's recipe (and the Keras guide "Transfer learning & fine-tuning"),
with the fixes the guide misses:

1. Phase 1 ("head"): the backbone is frozen, BatchNorm included, and a new
   head (pooling, dropout, a linear classifier) trains at `head_lr`.
2. Phase 2 ("finetune"): the backbone is unfrozen, all of it, its top k
   blocks, or progressively, and trains with per-layer learning rates: the
   head at the full rate, the backbone `backbone_lr_mult` times lower, and
   optionally `layer_decay` per block further down (`kr.param_groups`).

Every BatchNormalization layer stays frozen with `trainable=False` unless
`train_bn`. The guide's other way, calling the base with `training=False`,
no longer holds in Keras 3: once the base is unfrozen, `fit` runs its
BatchNorm layers in training mode and their moving statistics drift
towards the small new dataset's (keras-team/keras#20285).

Settings live in `FineTuneConfig`; `plan_phases` turns them into the list
of `Phase`s this module runs, one `fit` per phase.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import warnings

import keras
import tensorflow as tf

from kerasrecipes import _compat, distribute
from kerasrecipes.backbones import LoadedBackbone
from kerasrecipes.callbacks import (
    AtomicBackupAndRestore,
    LRFinder,
    PreciseBN,
    learning_rate_logs,
    mark_phase,
)
from kerasrecipes.callbacks.early_stopping import ResumableEarlyStopping
from kerasrecipes.callbacks.unfreeze import UnfreezeBackbone
from kerasrecipes.features import HEAD_GROUP, param_groups
from kerasrecipes.files import replaced_atomically
from kerasrecipes.finetune import report as reports
from kerasrecipes.finetune.config import (
    AUTO_LR,
    FineTuneConfig,
    describe_phase,
    parse_unfreeze,
    plan_phases,
    resolve_budget,
    resolve_config,
)
from kerasrecipes.finetune.run_folder import (
    RUN_FOLDERS,
    RunFolder,
    RunFolderError,
    data_fingerprint,
    run_files,
    write_json,
)
from kerasrecipes.layers.normalization import set_bn_momentum
from kerasrecipes.optimizers import exclude_from_decay, with_group_rates
from kerasrecipes.precision import (
    auto_precision,
    dtype_policy,
    rebuilt,
    training_compile_options,
)
from kerasrecipes.tasks import get_task

FINISHED_EARLIER = "holds a run that finished earlier"
# Batches of the LR range test before a phase whose rate is "auto" (fastai's lr_find: 100).
LR_FIND_STEPS = 100
# Batches PreciseBN reads at the end of a phase (Detectron2's TEST.PRECISE_BN.NUM_ITER).
PRECISE_BN_BATCHES = 200


class FineTuneHistory(keras.callbacks.History):
    """The `History` of every phase, epochs numbered across them.

    Attributes:
        history: dict of metric name -> list of values, one per epoch; with
            `learning_rate` (the head's) and `lr/<group>` per parameter group.
        epoch: the epoch numbers (0-based), phase 1 first.
        phases: dict of phase name -> the epoch it starts at.
        timings: dict of phase name -> seconds of training in this call
            (empty when the run had finished before this call).
        status: "finished", or "stopped: ..." when a phase stopped on a NaN loss.
        finished_earlier: True when nothing was trained because the run
            folder held a finished run.
    """

    def __init__(self, rows, phases, timings, status="finished", finished_earlier=False):
        super().__init__()
        self.epoch = [int(row["epoch"]) for row in rows]
        names = []
        for row in rows:
            names += [n for n in row if n not in ("epoch", "phase") and n not in names]
        self.history = {n: [float(row.get(n, "nan")) for row in rows] for n in names}
        self.phases = dict(phases)
        self.timings = dict(timings)
        self.status = status
        self.finished_earlier = finished_earlier

    def phase_range(self, phase):
        """`(first, end)` epoch indices of `phase`, end excluded; None when it did not run."""
        start = self.phases.get(phase)
        if start is None:
            return None
        later = [s for s in self.phases.values() if s > start]
        return start, min(later) if later else len(self.epoch)

    def phase_logs(self, phase):
        """The logs of the last epoch of `phase` (`{}` when it ran no epoch)."""
        bounds = self.phase_range(phase)
        if bounds is None or bounds[1] <= bounds[0]:
            return {}
        return {name: values[bounds[1] - 1] for name, values in self.history.items()}


def fine_tune(
    backbone,
    train_ds,
    val_ds=None,
    num_classes=None,
    config=None,
    *,
    info=None,
    class_counts=None,
    callbacks=(),
    strategy=None,
    data_source=None,
    **overrides,
):
    """Fine-tunes `backbone` on a new task, phase by phase; returns the model.

    The phases come from `config` (`kr.FineTuneConfig`, whose fields are
    documented there; any field may also be passed as a keyword, e.g.
    `head_epochs=2`): by default a new head on the frozen backbone, then the
    backbone unfrozen at per-layer rates. See `kr.finetune.plan_phases`.
    The head is a classifier, or with `task="segmentation"` a U-Net decoder
    and with `task="detection"` a RetinaNet (`kerasrecipes.tasks`;
    docs/dense-prediction.md), whose run folders hold `overlays.png` and
    the IoU or COCO mAP instead of `confusion.png` and the accuracy.

    By default each phase runs a budget of optimizer steps sized to the data
    (`kr.resolve_budget`), and ends by recomputing the statistics of the
    BatchNorm layers that trained from the training data
    (`kr.callbacks.PreciseBN`, `precise_bn=True`): the model returned and
    saved predicts as the network trained (docs/regularization.md). A rate
    "auto" (`head_lr`, `finetune_lr`) runs the LR range test before its
    phase and trains at its suggestion (the run folder's `lr_find/`).

    With `out_dir`, the run folder holds `report.json`, `history.csv`,
    `curves.png`, `confusion.png` and `model.keras` (no optimizer state),
    plus the backups that make an interrupted call resume from its last
    finished epoch when called again. A finished run is not trained again:
    the call returns the stored model and history (`history.finished_earlier`)
    unless `restart=True`; other settings or data are an error that says
    what differs.

    Args:
        backbone: a Keras model without its classifier (ours, a
            `keras.applications` model, any), a `kr.LoadedBackbone` from
            `kr.load_backbone`, or a function that builds a model (called in
            the strategy's scope).
        train_ds: batched `tf.data.Dataset` of `(images, labels)`, labels as
            class indices or one-hot, e.g. from `kr.data.image_folder`; for
            segmentation `(images, masks)` (`kr.data.mask_folder`), for
            detection `(images, {"boxes", "labels"})` (`kr.data.coco_folder`).
        val_ds: the same for validation, or None.
        num_classes: classes of the new classifier; taken from `info` when None.
        config: a `kr.FineTuneConfig`, or None for the defaults.
        info: optional `ImageFolderInfo` from `kr.data.image_folder`: class
            names and counts for the report, counts for `balance`.
        class_counts: images per class for `balance`, when there is no `info`
            (counted from `train_ds` when neither is given).
        callbacks: more Keras callbacks, given to every phase.
        strategy: a `tf.distribute` strategy, or None for
            `kr.distribute.default_strategy()`.
        data_source: the data folder, recorded in the run folder so that
            `restart=True` never deletes a run of another folder.
        **overrides: `FineTuneConfig` fields, e.g. `head_epochs=2, out_dir="runs/x"`.

    Returns:
        `(model, history)`: the fine-tuned `keras.Model` (images in, class
        probabilities out) and a `FineTuneHistory`.

    >>> import kerasrecipes as kr                                       # doctest: +SKIP
    >>> backbone = kr.load_backbone("efficientnet_b0", "imagenet")     # doctest: +SKIP
    >>> train, val, info = kr.data.image_folder("PetImages", image_size=(224, 224))  # doctest: +SKIP
    >>> model, history = kr.fine_tune(backbone, train, val, info=info, out_dir="runs/pets")  # doctest: +SKIP
    """
    if strategy is not None and keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"strategy={type(strategy).__name__}: tf.distribute strategies run on the TensorFlow "
            f"backend only, and Keras runs on {keras.backend.backend()!r} here. Leave strategy "
            "unset, or set KERAS_BACKEND=tensorflow."
        )
    asked_precision = overrides.get("precision", (config or FineTuneConfig()).precision)
    config = resolve_config(config, has_validation=val_ds is not None, **overrides)
    if asked_precision == "auto":
        config = config.replace(precision=auto_precision(_keras_model(backbone)))
    description = None
    if isinstance(backbone, LoadedBackbone):
        description = backbone.description
        if config.preprocessing == "auto" and backbone.preprocessing:
            config = config.replace(preprocessing=backbone.preprocessing)
    num_classes = _num_classes(num_classes, info, train_ds, get_task(config.task))
    config = resolve_budget(config, _steps(train_ds, 1))
    phases = plan_phases(config)
    strategy = strategy or distribute.default_strategy()
    identity = None
    if config.out_dir:
        identity = {
            "config": config.to_dict(),
            "data": data_fingerprint(train_ds, val_ds, num_classes, info),
        }
        if data_source is not None:
            identity["source"] = os.path.realpath(data_source)
    with _open_run_folder(config, identity, strategy) as (folder, opened):
        # The report is written last: a run killed while saving trains nothing again but
        # saves again.
        if opened == "finished" and os.path.exists(folder.file(reports.REPORT_FILE)):
            return _finished_run(folder, config)
        class_names = _class_names(info, num_classes)
        run = _Run(config, folder, strategy, num_classes, class_names)
        run.prepare(backbone, train_ds, val_ds, class_counts or (info.counts if info else None))
        history = run.train(phases, callbacks)
        if folder:
            reports.save_run(
                folder, run.model, history, config, phases, run.val_ds, info, description
            )
            folder.finish(history.status)  # last: until here a rerun completes the saving
    return run.model, history


@contextlib.contextmanager
def _open_run_folder(config, identity, strategy):
    """Holds and opens the run folder; yields `(folder, "new" | "resume" | "finished")`.

    Without `out_dir`, `(None, "new")`. Under `MultiWorkerMirroredStrategy`
    only the chief holds `out_dir`'s lock and writes there. Every other worker
    trains in a private copy of it (in the system's temporary folder, removed
    at the end): it resumes from the same backup as the chief and so runs the
    same steps, whose collectives must pair up, while its own writes go
    nowhere. `out_dir` must be on storage every worker reads, for a resume.
    """
    if not config.out_dir:
        yield None, "new"
        return
    folder = RunFolder(config.out_dir)
    if not distribute.is_multi_worker(strategy):
        with folder:
            yield folder, folder.open(identity, restart=config.restart)
        return
    # Every failure before training is said to the other workers, which would otherwise wait
    # in the next all-reduce for ever.
    if distribute.is_chief(strategy):
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(folder)
                opened = folder.open(identity, restart=config.restart)
            except Exception:
                distribute.chief_values(strategy, [-1])  # the others stop too
                raise
            distribute.chief_values(strategy, [0])
            _agree_with_chief(folder.path, folder, opened, strategy)
            yield folder, opened
        return
    if distribute.chief_values(strategy, [0]) == [-1]:  # waits for the chief to open out_dir
        raise RunFolderError(
            f"{folder.path}: the chief worker could not open the run folder; its output says why."
        )
    with tempfile.TemporaryDirectory(prefix="kerasrecipes-worker-") as scratch:
        copy = RunFolder(os.path.join(scratch, "run"))
        try:
            _copy_run(folder.path, copy.path)
            with copy:
                opened = copy.open(identity)
        except Exception:
            _agree_with_chief(folder.path, copy, None, strategy)  # tells the others, then raises
            raise
        with copy:
            _agree_with_chief(folder.path, copy, opened, strategy)
            yield copy, opened


def _copy_run(source, target):
    """The run's own files and folders in `source` (no lock, no exports), copied to `target`."""
    keep = set(run_files()) | set(RUN_FOLDERS)
    os.makedirs(target)
    if not os.path.isdir(source):
        return
    for name in os.listdir(source):
        path = os.path.join(source, name)
        if name not in keep or os.path.islink(path):
            continue
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(target, name), symlinks=True)
        else:
            shutil.copy2(path, os.path.join(target, name))


def _agree_with_chief(out_dir, folder, opened, strategy):
    """Stops every worker, saying why, when one found another run in `out_dir` than the chief,
    or could not open its copy (`opened` None: this worker failed, and raises its own error)."""
    mine = [opened == "finished", len(folder.state["rows"]), len(folder.state["phases"])]
    chief = distribute.chief_values(strategy, mine)
    failed = opened is None
    disagrees = failed or chief != [float(value) for value in mine]
    if distribute.worker_sum(strategy, [disagrees])[0] > 0:
        if failed:
            return

        def described(finished, epochs):
            return f"{'finished' if finished else 'not finished'}, {int(epochs)} epochs recorded"

        raise RunFolderError(
            f"{out_dir}: the workers found different runs there, or one could not read it (its "
            f"output says why) (the chief: {described(*chief[:2])}; this worker: "
            f"{described(*mine[:2])}). Under MultiWorkerMirroredStrategy, out_dir must be one "
            "folder that every worker reads, on a shared file system."
        )


def find_learning_rate(backbone, train_ds, config, *, info=None, num_classes=None):
    """The LR range test of the first phase `config` plans, as `head_lr="auto"` runs it.

    What `kerasrecipes lr-find` runs: the model `fine_tune` would build,
    the optimizer of its first phase, `LR_FIND_STEPS` steps of `LRFinder`
    (fastai's `lr_find`). Returns `(finder, phase)`; `finder.suggested_lr`
    is the rate to train at, `finder.plot(path)` draws the curve.
    """
    config = resolve_config(config, has_validation=False)
    if config.precision == "auto":
        config = config.replace(precision=auto_precision(_keras_model(backbone)))
    num_classes = _num_classes(num_classes, info, train_ds, get_task(config.task))
    phase = plan_phases(resolve_budget(config, _steps(train_ds, 1)))[0]
    class_names = _class_names(info, num_classes)
    run = _Run(config, None, None, num_classes, class_names)
    run.prepare(backbone, train_ds, None, info.counts if info else None)
    finder = run.range_test(phase)
    if finder.suggested_lr is not None:  # swept at the replicas' scaled rate; told per replica
        finder.suggested_lr /= run.rate_scale
        finder.min_loss_lr /= run.rate_scale
    return finder, phase


def save_range_test(finder, record):
    """The range test's curve as `record` (JSON) and its plot beside it (`.png`)."""
    os.makedirs(os.path.dirname(record), exist_ok=True)
    finder.plot(record.removesuffix(".json") + ".png")
    curve = {
        "learning_rates": finder.learning_rates,
        "losses": finder.losses,
        "smoothed_losses": finder.smoothed_losses,
        "suggested_lr": finder.suggested_lr,
        "min_loss_lr": finder.min_loss_lr,
    }
    write_json(record, curve)


def _class_names(info, num_classes):
    """The data's class names, or the class indices as text when there is no `info`."""
    return list(info.class_names) if info else [str(i) for i in range(num_classes)]


def _keras_model(backbone):
    """The `keras.Model` inside what `fine_tune` was given, or None (a function that builds it)."""
    if isinstance(backbone, LoadedBackbone):
        return backbone.model
    return backbone if isinstance(backbone, keras.Model) else None


class _Run:
    """The state one `fine_tune` call shares between its phases."""

    def __init__(self, config, folder, strategy, num_classes, class_names):
        self.config = config
        self.folder = folder
        self.strategy = strategy or distribute.default_strategy()
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = get_task(config.task)
        self.memory_rows = {}  # epoch -> row, when there is no run folder to record them

    def prepare(self, backbone, train_ds, val_ds, class_counts):
        """The datasets (balanced, augmented, scaled for replicas), the model and the loss, as
        the task makes them."""
        config, task = self.config, self.task
        train_ds, val_ds, self.population_ds, self.class_weight = task.training_data(
            train_ds, val_ds, config, class_counts, self.num_classes
        )
        self._set_datasets(train_ds, val_ds)
        with self.strategy.scope(), dtype_policy(config.precision):
            backbone = _backbone_in_scope(backbone, self.strategy, config.precision)
            if config.seed is not None:
                keras.utils.set_random_seed(config.seed)
            self.model = task.build_model(backbone, self.num_classes, config, train_ds)
        if config.bn_momentum is not None:
            set_bn_momentum(self.model, config.bn_momentum)
        self.loss = task.loss(config, train_ds)
        self.metrics = task.metrics(self.num_classes)

    def _set_datasets(self, train_ds, val_ds):
        """The datasets scaled for the replicas (`linear_scaling`) and sharded across workers."""
        replicas = self.strategy.num_replicas_in_sync
        self.rate_scale = 1.0
        if self.config.linear_scaling and replicas > 1:
            train_ds, self.rate_scale = distribute.scale_for_replicas(train_ds, 1.0, replicas)
            val_ds, _ = distribute.scale_for_replicas(val_ds, 1.0, replicas)
        if distribute.is_multi_worker(self.strategy):
            train_ds = distribute.shard_by_data(train_ds)
            val_ds = val_ds if val_ds is None else distribute.shard_by_data(val_ds)
        self.train_ds, self.val_ds = train_ds, val_ds

    def train(self, phases, user_callbacks):
        """Runs `phases` in order, skipping the ones the run folder records as finished."""
        rows, starts, timings, status = {}, {}, {}, "finished"
        first_epoch = 0
        for phase in phases:
            starts[phase.name] = first_epoch
            stored = self.folder.phase(phase.name) if self.folder else None
            if stored is not None:
                self._load_phase_weights(phase)
            else:
                started = time.perf_counter()
                self._fit(phase, first_epoch, user_callbacks)
                timings[phase.name] = time.perf_counter() - started
                stored = self._finish_phase(phase, first_epoch)
            rows.update({int(r["epoch"]): r for r in self._rows()})
            first_epoch = stored["end_epoch"]
            if stored["status"] != "finished":
                status = stored["status"]
                break
        ordered = [rows[epoch] for epoch in sorted(rows)]
        return FineTuneHistory(ordered, starts, timings, status)

    # -- one phase --------------------------------------------------------------------------------

    def _fit(self, phase, first_epoch, user_callbacks):
        model, config = self.model, self.config
        if phase.learning_rate == AUTO_LR:
            phase = dataclasses.replace(phase, learning_rate=self._find_rate(phase))
        mark_phase(model, first_epoch, describe_phase(phase))
        _compat.reset_initial_epoch(model)
        steps = _steps(self.train_ds, phase.epochs)
        with self.strategy.scope():
            optimizer = _phase_optimizer(model, phase, config, self.rate_scale, steps)
            model.compile(
                optimizer=optimizer,
                loss=self.loss,
                metrics=self.metrics,
                **training_compile_options(),
            )
        self.recorder = _Recorder(self, phase)
        callbacks = (
            self.task.callbacks(self.val_ds, self.class_names)
            + self._phase_callbacks(phase, first_epoch)
            + list(user_callbacks)
        )
        if distribute.is_multi_worker(self.strategy):
            fixes = distribute.keras_multi_worker_fixes(model, self.train_ds)
        else:
            fixes = contextlib.nullcontext()
            _compat.build_before_fit(model, self.train_ds)  # one trace of the train step, not two
        with fixes, warnings.catch_warnings():
            # Keras 3.15 warns on every fit with a tf.data.Dataset, which it does not shuffle.
            warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
            model.fit(
                self.train_ds,
                validation_data=self.val_ds,
                initial_epoch=first_epoch,
                epochs=first_epoch + phase.epochs,
                class_weight=self.class_weight,
                callbacks=callbacks,
                verbose=config.verbose,
            )

    def _find_rate(self, phase):
        """The head's rate for `phase`: the LR range test (`LRFinder`, fastai's `lr_find`) on
        what the phase trains at its start, the weights and BatchNorm statistics put back
        after. Recorded in the run folder's `lr_find/` and reused when the run resumes."""
        record = self.folder.file("lr_find", f"{phase.name}.json") if self.folder else None
        if record and os.path.exists(record):
            with open(record) as file:
                return json.load(file)["suggested_lr"] / self.rate_scale
        finder = self.range_test(phase)
        rate = finder.suggested_lr
        if rate is None:
            raise ValueError(
                f"fine_tune: the LR range test of phase {phase.name!r} found no rate (the loss "
                "was not finite for long enough). Set the rate: head_lr=, finetune_lr= (--lr)."
            )
        if self.folder:
            save_range_test(finder, record)
        return rate / self.rate_scale

    def range_test(self, phase):
        """Runs the LR range test on what `phase` trains at its start; returns the `LRFinder`."""
        model = self.model
        probe = dataclasses.replace(phase, learning_rate=1.0, schedule="constant", warmup=0.0)
        with self.strategy.scope():
            optimizer = _phase_optimizer(model, probe, self.config, self.rate_scale, None)
            model.compile(
                optimizer=optimizer,
                loss=self.loss,
                metrics=self.metrics,
                **training_compile_options(),
            )
        schedule = {} if phase.trains == "head" else parse_unfreeze(phase.trains)
        at_start = UnfreezeBackbone(
            schedule={0: schedule[0]} if 0 in schedule else {}, train_bn=phase.train_bn
        )
        finder = LRFinder(num_steps=LR_FIND_STEPS)
        model.fit(
            self.train_ds.repeat(),
            steps_per_epoch=LR_FIND_STEPS,
            epochs=1,
            class_weight=self.class_weight,
            callbacks=[at_start, finder],
            verbose=0,
        )
        return finder

    def _phase_callbacks(self, phase, first_epoch):
        config = self.config
        if phase.trains == "head":
            schedule = {}
        else:
            schedule = {first_epoch + e: b for e, b in parse_unfreeze(phase.trains).items()}
        callbacks = [
            UnfreezeBackbone(schedule=schedule, train_bn=phase.train_bn),
            self.recorder,
        ]
        backup = self.folder.file("backup", phase.name) if self.folder else None
        stopping = None
        if config.early_stopping_patience is not None:
            stopping = ResumableEarlyStopping(
                state_dir=backup,  # its count and best weights resume with the backup
                monitor=config.monitor,
                patience=config.early_stopping_patience,
                restore_best_weights=True,
                # A decaying schedule's first half is no time to judge it by: from
                # scratch, the validation loss sits on a plateau there.
                start_from_epoch=first_epoch
                + (phase.epochs // 2 if phase.schedule == "cosine" else 0),
            )
        backing_up = None
        if backup:
            _check_backup(self.folder, backup)
            # Kept when the phase ends, until `_finish_phase` has saved its result.
            backing_up = AtomicBackupAndRestore(backup, delete_checkpoint=False)
        if config.ema:
            # The backup takes the training weights before SwapEMAWeights puts the averaged
            # ones in the model, and early stopping keeps the averaged ones as its best; so
            # here its state of an epoch follows that epoch's backup, and a kill between the
            # two loses one epoch of its count.
            swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
            order = [backing_up, swap, stopping]
        else:  # an epoch's stopping state before its backup: a resume takes up both exactly
            order = [stopping, backing_up]
        callbacks += [callback for callback in order if callback is not None]
        if config.precise_bn:  # after EarlyStopping: the statistics of the weights it restores
            callbacks.append(PreciseBN(self.population_ds, num_batches=PRECISE_BN_BATCHES))
        callbacks.append(keras.callbacks.TerminateOnNaN())
        if config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.folder.file("tensorboard")))
        return callbacks

    def _rows(self):
        if self.folder:
            return self.folder.rows()
        return list(self.memory_rows.values())

    def _finish_phase(self, phase, first_epoch):
        """Records where the phase ended and whether its loss stayed finite; saves its weights."""
        phase_rows = [r for r in self._rows() if r["phase"] == phase.name]
        end_epoch = max([int(r["epoch"]) + 1 for r in phase_rows], default=first_epoch)
        bad = [r for r in phase_rows if not math.isfinite(float(r.get("loss", 0.0)))]
        status = "finished"
        if bad:
            status = (
                f"stopped: the loss became NaN in phase {phase.name} at epoch "
                f"{int(bad[0]['epoch']) + 1}; lower the learning rate and train again "
                "(--restart, restart=True)"
            )
        record = {"first_epoch": first_epoch, "end_epoch": end_epoch, "status": status}
        if self.folder:
            weights = self.folder.phase_weights(phase.name)
            with replaced_atomically(weights, ".weights.h5") as writing:
                self.model.save_weights(writing)
            self.folder.finish_phase(phase.name, record)
            shutil.rmtree(self.folder.file("backup", phase.name), ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(self.folder.file("backup"))  # when no other phase has a backup
        return record

    def _load_phase_weights(self, phase):
        path = self.folder.phase_weights(phase.name)
        try:
            self.model.load_weights(path)
        except Exception as error:
            raise self.folder.corrupt(path, error) from None


class _Recorder(keras.callbacks.Callback):
    """Records each epoch's logs with the learning rate of every parameter group.

    The rates go to the history, `history.csv` and the curves, not into
    `logs`, so the progress lines stay short. Internal to `fine_tune`: it
    writes into the run folder, so it is not a callback to reuse or save.
    """

    def __init__(self, run, phase):
        super().__init__()
        self.run, self.phase = run, phase

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch), "phase": self.phase.name}
        row.update({k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"})
        row.update(learning_rate_logs(self.model.optimizer))
        folder = self.run.folder
        if folder:
            folder.record_epoch(epoch, row)
            reports.draw_curves(folder, self.model)
        else:
            self.run.memory_rows[int(epoch)] = row


# -- the model -------------------------------------------------------------------------------------


def _backbone_in_scope(backbone, strategy, precision):
    """The backbone as a model, its variables created under `strategy`, computing in `precision`."""
    if isinstance(backbone, LoadedBackbone):
        backbone = backbone.model
    if not isinstance(backbone, keras.Model):
        if callable(backbone):
            return backbone()
        raise TypeError(
            "fine_tune: backbone must be a keras.Model, a kr.LoadedBackbone or a function "
            f"returning a model; got {type(backbone).__name__}."
        )
    if precision != "float32" and backbone.dtype_policy.name != precision:
        return rebuilt(backbone, precision)
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return backbone
    if all(isinstance(v.value, tf.distribute.DistributedValues) for v in backbone.weights):
        return backbone
    return rebuilt(backbone, None)


def _num_classes(num_classes, info, train_ds, task):
    if num_classes is None and info is not None:
        num_classes = info.num_classes
    labels = train_ds.element_spec[1]
    if num_classes is None and not isinstance(labels, dict) and len(labels.shape) == 2:
        num_classes = train_ds.element_spec[1].shape[-1]
    least = task.least_classes
    if not isinstance(num_classes, int) or num_classes < least:
        raise ValueError(
            f"fine_tune: num_classes must be an integer >= {least} (or give info=). "
            f"Received: {num_classes!r}"
        )
    return num_classes


# -- what trains, at which rates --------------------------------------------------------------------


def _phase_optimizer(model, phase, config, rate_scale, steps):
    """The optimizer of one phase (AdamW, or SGD with momentum; decoupled weight decay either
    way), with a rate for each parameter group (`kr.param_groups`).

    The head trains at the phase's rate; the backbone at `backbone_lr_mult`
    of it, and with `layer_decay` each block below the top one `layer_decay`
    times less again (the stem last).
    """
    learning_rate = phase.learning_rate * rate_scale
    if phase.schedule == "cosine" and steps:
        warmup = int(phase.warmup * steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate,
            steps - warmup,
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    common = {
        "weight_decay": config.weight_decay,
        "use_ema": config.ema,
        "gradient_accumulation_steps": config.grad_accumulation
        if config.grad_accumulation > 1
        else None,
    }
    if config.optimizer == "sgd":
        base = keras.optimizers.SGD(learning_rate, momentum=0.9, **common)
    else:
        base = keras.optimizers.AdamW(learning_rate, **common)
    if config.ema:
        _compat.warm_up_ema(base)
    groups = param_groups(model)
    below_head = [group for group in groups if not group.is_head][::-1]
    multipliers = {HEAD_GROUP: 1.0}
    if phase.trains == "head":  # the backbone is frozen: it has no rate to report
        below_head = []
    elif phase.layer_decay:
        for depth, group in enumerate(below_head, start=1):
            multipliers[group.name] = phase.backbone_lr_mult * phase.layer_decay**depth
    elif below_head:
        multipliers["backbone"] = phase.backbone_lr_mult
    rates = {}
    for group in groups:
        key = group.name if group.is_head or phase.layer_decay else "backbone"
        if key in multipliers:
            variables, _ = rates.get(key, ([], None))
            rates[key] = (variables + group.variables, multipliers[key])
    optimizer = with_group_rates(base, rates, model)
    return exclude_from_decay(optimizer, model)


def _steps(dataset, epochs):
    batches = int(dataset.cardinality())
    return batches * epochs if batches > 0 else None


# -- data ------------------------------------------------------------------------------------------


# -- resuming --------------------------------------------------------------------------------------


def _check_backup(folder, backup):
    """A backup a kill or a disk fault damaged is named before `fit` trips over it."""
    import h5py

    weights = os.path.join(backup, "latest.weights.h5")
    metadata = os.path.join(backup, "training_metadata.json")
    try:
        if os.path.exists(weights):
            h5py.File(weights, "r").close()
    except OSError as error:
        raise folder.corrupt(weights, error) from None
    try:
        if os.path.exists(metadata):
            with open(metadata) as file:
                int(json.load(file)["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise folder.corrupt(metadata, error) from None


def _finished_run(folder, config):
    """The stored model and history of a run that finished before this call."""
    rows = folder.rows()
    starts = {name: record["first_epoch"] for name, record in folder.state["phases"].items()}
    history = FineTuneHistory(rows, starts, {}, folder.state["status"], finished_earlier=True)
    path = folder.file("model.keras")
    model = None
    if os.path.exists(path):
        try:
            model = keras.saving.load_model(path)
        except Exception as error:
            raise folder.corrupt(path, error) from None
        model = getattr(model, "network", model)  # the classifier inside the ImageClassifier
    warnings.warn(
        f"fine_tune: {folder.path} {FINISHED_EARLIER} ({history.status}); nothing was "
        "trained. restart=True trains again.",
        stacklevel=3,
    )
    return model, history
