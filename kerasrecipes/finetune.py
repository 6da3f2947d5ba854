"""Transfer learning in two phases: train a new head on a frozen backbone, then fine-tune.

The lecture's recipe (and the Keras guide "Transfer learning & fine-tuning"),
with the fixes the guide misses:

1. Phase 1 ("head"): the backbone is frozen, BatchNorm included, and a new
   head (pooling, dropout, a linear classifier) trains at `head_lr`.
2. Phase 2 ("finetune"): the backbone is unfrozen, all of it, its top k
   blocks, or progressively, and trains with per-layer learning rates: the
   head at the full rate, the backbone `backbone_lr_mult` times lower, and
   optionally `layer_decay` per block further down.

Every BatchNormalization layer stays frozen with `trainable=False` in both
phases. The guide's other way, calling the base with `training=False`, no
longer holds in Keras 3: once the base is unfrozen, `fit` runs its
BatchNorm layers in training mode and their moving statistics drift
towards the small new dataset's (keras-team/keras#20285). Only a
BatchNorm layer that is not trainable stays in inference mode.
"""

import contextlib
import csv
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from kerasrecipes import distribute
from kerasrecipes.callbacks import (
    AtomicBackupAndRestore,
    LogLearningRates,
    TrainingCurves,
    mark_phase,
)
from kerasrecipes.callbacks.unfreeze import UnfreezeBackbone
from kerasrecipes.features import HEAD_GROUP
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.losses import SparseCategoricalCrossentropy
from kerasrecipes.optimizers import exclude_from_decay, layer_decay_multipliers, with_lr_multipliers
from kerasrecipes.registry import HEAD_PREFIX

STATE_FILE = "finetune_state.json"


class FineTuneHistory(keras.callbacks.History):
    """The `History` of both phases, epochs numbered across them.

    Attributes:
        history: dict of metric name -> list of values, one per epoch.
        epoch: the epoch numbers (0-based), phase 1 first.
        phases: dict of phase name ("head", "finetune") -> the epoch it starts at.
        timings: dict of phase name -> seconds of training in this call.
    """

    def __init__(self, rows, phases, timings):
        super().__init__()
        self.epoch = [row["epoch"] for row in rows]
        names = []
        for row in rows:
            names += [name for name in row if name != "epoch" and name not in names]
        self.history = {name: [row.get(name, float("nan")) for row in rows] for name in names}
        self.phases = dict(phases)
        self.timings = dict(timings)

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
    *,
    head_epochs=3,
    head_lr=1e-3,
    finetune_epochs=10,
    finetune_lr=None,
    backbone_lr_mult=0.1,
    layer_decay=None,
    unfreeze="all",
    train_bn=False,
    weight_decay=1e-4,
    pooling="avg",
    dropout=0.2,
    preprocessing=None,
    label_smoothing=0.0,
    augment=None,
    balance=None,
    class_counts=None,
    early_stopping_patience=3,
    monitor=None,
    out_dir=None,
    callbacks=(),
    strategy=None,
    linear_scaling=True,
    seed=None,
    verbose="auto",
):
    """Fine-tunes `backbone` on a new classification task in two phases; returns the model.

    Phase 1 trains a new head with the backbone frozen (skip it with
    `head_epochs=0`, e.g. for a backbone without pretrained weights).
    Phase 2 unfreezes the backbone and trains everything with per-layer
    learning rates (skip it with `finetune_epochs=0`, the lecture's advice
    for very small datasets). Each phase stops early on `monitor` with
    `restore_best_weights`. BatchNorm layers never train unless
    `train_bn=True`; see the module docstring for why.

    With `out_dir`, nothing is lost when the run is interrupted: each phase
    backs up after every epoch (`kr.callbacks.AtomicBackupAndRestore`), and
    calling `fine_tune` again with the same arguments and `out_dir` resumes
    from the last finished epoch of the phase it was in. It also writes the
    per-phase history (`history_head.csv`, `history_finetune.csv`),
    `curves.png` with the phase boundary, and `model.keras`.

    Args:
        backbone: a Keras model without its classifier, taking images; any
            model, not only ours (e.g. `keras.applications.EfficientNetB0(
            include_top=False)`), or a function that builds one (called in
            the strategy's scope). Its output may be a feature map (pooled by
            the head) or one vector per image.
        train_ds: batched `tf.data.Dataset` of `(images, labels)`, labels as
            class indices or one-hot, e.g. from `kr.data.image_folder`.
        val_ds: the same for validation, or None.
        num_classes: int, classes of the new classifier.
        head_epochs: epochs of phase 1. Defaults to 3.
        head_lr: learning rate of phase 1 (AdamW). Defaults to 1e-3.
        finetune_epochs: epochs of phase 2. Defaults to 10.
        finetune_lr: the head's learning rate in phase 2, decayed to 0 by
            a cosine over the phase; None means `head_lr`. Defaults to None.
        backbone_lr_mult: the backbone's rate in phase 2, relative to the
            head's. Defaults to 0.1.
        layer_decay: None, or a rate in (0, 1]: each block of the backbone
            below the top gets `layer_decay` times the rate of the block above
            (`kr.optimizers.layer_decay_multipliers`), on top of
            `backbone_lr_mult`. Defaults to None.
        unfreeze: "all", an int k (the top k blocks; the rest stays frozen),
            or a dict `{epoch of phase 2: blocks}` for progressive unfreezing,
            e.g. `{0: 1, 2: 3, 4: "all"}`. Defaults to "all".
        train_bn: let BatchNorm layers train in phase 2 (moving statistics
            and scale/offset). Defaults to False.
        weight_decay: decoupled weight decay of AdamW, skipping biases and
            norms (`kr.optimizers.exclude_from_decay`). Defaults to 1e-4.
        pooling: "avg" or "max", the head's pooling of a feature map.
            Defaults to "avg".
        dropout: dropout before the classifier. Defaults to 0.2.
        preprocessing: None, or an `ImagePreprocessing` mode ("caffe", "tf",
            "torch", "unit") put in front of the backbone, so the model takes
            [0, 255] images. `kr.load_backbone` returns the one its weights
            need. Defaults to None.
        label_smoothing: label smoothing of the cross-entropy. Defaults to 0.
        augment: None, a preset of `kr.data.augmentation`, or a layer,
            applied to the training batches. Defaults to None.
        balance: None, "class_weight" (`kr.data.class_weights`) or
            "oversample" (`kr.data.oversample`), for imbalanced classes.
            Defaults to None.
        class_counts: training images per class (a list, or a dict
            class -> count, e.g. `info.counts`) for `balance`; counted from
            `train_ds` when None. Defaults to None.
        early_stopping_patience: patience of `EarlyStopping` in each phase;
            None turns early stopping off. Defaults to 3.
        monitor: the quantity early stopping watches; "val_loss" with
            `val_ds`, else "loss". Defaults to None.
        out_dir: optional folder for backups, histories, curves and the
            model. Defaults to None.
        callbacks: more Keras callbacks, given to both phases. Defaults to ().
        strategy: a `tf.distribute` strategy, or None for
            `kr.distribute.default_strategy()` (`MirroredStrategy` when more than
            one GPU is visible). Defaults to None.
        linear_scaling: with several replicas, multiply the batch of the
            datasets and the learning rates by the replica count
            (`kr.distribute.scale_for_replicas`). Defaults to True.
        seed: seed of the head's initialization, augmentation and
            oversampling. Defaults to None.
        verbose: `fit`'s verbosity (progress bars with 1). Defaults to "auto".

    Returns:
        `(model, history)`: the fine-tuned `keras.Model` (images in, class
        probabilities out) and a `FineTuneHistory` whose `phases` gives the
        epoch each phase starts at.

    Example:

    >>> import kerasrecipes as kr                                       # doctest: +SKIP
    >>> backbone = kr.create_model("efficientnet_b0", include_top=False,
    ...                            weights="imagenet")                   # doctest: +SKIP
    >>> train, val, info = kr.data.image_folder("PetImages", validation_split=0.2)  # doctest: +SKIP
    >>> model, history = kr.fine_tune(backbone, train, val, num_classes=2)  # doctest: +SKIP
    """
    _check_arguments(num_classes, head_epochs, finetune_epochs, unfreeze, balance)
    strategy = strategy or distribute.default_strategy()
    replicas = strategy.num_replicas_in_sync
    finetune_lr = head_lr if finetune_lr is None else finetune_lr
    monitor = monitor or ("val_loss" if val_ds is not None else "loss")

    train_ds, class_weight = _balance(train_ds, balance, class_counts, num_classes, seed)
    if augment is not None:
        from kerasrecipes.data.augment import augment as augment_dataset

        image_size = tuple(train_ds.element_spec[0].shape[1:3])
        train_ds = augment_dataset(train_ds, augment, image_size=image_size, seed=seed)
    if linear_scaling and replicas > 1:
        train_ds, head_lr = distribute.scale_for_replicas(train_ds, head_lr, replicas)
        finetune_lr *= replicas
        val_ds, _ = distribute.scale_for_replicas(val_ds, 1.0, replicas)
    if distribute.is_multi_worker(strategy):
        train_ds = distribute.shard_by_data(train_ds)
        val_ds = val_ds if val_ds is None else distribute.shard_by_data(val_ds)
    one_hot = len(train_ds.element_spec[1].shape) == 2
    state = _State(out_dir)

    with strategy.scope():
        backbone = _backbone_in_scope(backbone, strategy)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        model = _classifier(backbone, num_classes, pooling, dropout, preprocessing)
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        if one_hot
        else SparseCategoricalCrossentropy(label_smoothing=label_smoothing)
    )

    def fit(phase, optimizer, first_epoch, epochs, phase_callbacks):
        with strategy.scope():
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        fixes = (
            distribute.keras_multi_worker_fixes(model, train_ds)
            if distribute.is_multi_worker(strategy)
            else contextlib.nullcontext()
        )
        with fixes:
            return model.fit(
                train_ds,
                validation_data=val_ds,
                initial_epoch=first_epoch,
                epochs=first_epoch + epochs,
                class_weight=class_weight,
                callbacks=_phase_callbacks(phase, out_dir, monitor, early_stopping_patience)
                + list(phase_callbacks)
                + list(callbacks),
                verbose=verbose,
            )

    timings, rows = {}, {}

    def run_phase(phase, first_epoch, epochs, make_optimizer, phase_callbacks=()):
        """Trains one phase, or loads it when `out_dir` records it as finished; its rows."""
        if state.done(phase):
            model.load_weights(state.path(f"{phase}.weights.h5"))
            return state.rows(phase)
        with strategy.scope():
            optimizer = make_optimizer()
        started = time.perf_counter()
        result = fit(phase, optimizer, first_epoch, epochs, phase_callbacks)
        timings[phase] = time.perf_counter() - started
        phase_rows = state.rows(phase) if out_dir else _rows(result, first_epoch)
        state.finish(phase, model, len(phase_rows))
        return phase_rows

    if head_epochs > 0:
        mark_phase(model, 0, "head")
        backbone.trainable = False
        rows["head"] = run_phase(
            "head",
            0,
            head_epochs,
            lambda: exclude_from_decay(
                keras.optimizers.AdamW(head_lr, weight_decay=weight_decay), model
            ),
        )
    finetune_start = len(rows.get("head", []))

    if finetune_epochs > 0:
        mark_phase(model, finetune_start, "fine-tune")
        backbone.trainable = True
        unfreezer = UnfreezeBackbone(
            backbone=backbone,
            schedule=_unfreeze_schedule(unfreeze, finetune_start),
            train_bn=train_bn,
        )
        rows["finetune"] = run_phase(
            "finetune",
            finetune_start,
            finetune_epochs,
            lambda: _finetune_optimizer(
                model,
                backbone,
                finetune_lr,
                backbone_lr_mult,
                layer_decay,
                weight_decay,
                steps=_steps(train_ds, finetune_epochs),
            ),
            [unfreezer],
        )

    phases = {}
    if "head" in rows:
        phases["head"] = 0
    if "finetune" in rows:
        phases["finetune"] = finetune_start
    history = FineTuneHistory(rows.get("head", []) + rows.get("finetune", []), phases, timings)
    if out_dir:
        curves = TrainingCurves(os.path.join(out_dir, "curves.png"))
        curves.set_model(model)
        curves.epochs = {
            epoch: {k: v[i] for k, v in history.history.items()}
            for i, epoch in enumerate(history.epoch)
        }
        curves.draw()
        model.save(os.path.join(out_dir, "model.keras"))
    return model, history


# -- the model --------------------------------------------------------------------------------


def _classifier(backbone, num_classes, pooling, dropout, preprocessing):
    """Images -> [preprocessing] -> backbone -> head_pool -> head_dropout -> head_dense."""
    if backbone.name.startswith(HEAD_PREFIX):
        raise ValueError(
            f"fine_tune: the backbone is named {backbone.name!r}; names starting with "
            f"{HEAD_PREFIX!r} "
            "are kept for the new classifier. Rename the backbone (backbone.name = ...)."
        )
    inputs = keras.Input(backbone.input_shape[1:], name="images")
    x = inputs
    if preprocessing is not None:
        x = ImagePreprocessing(preprocessing, name="preprocessing")(x)
    x = backbone(x)
    if len(x.shape) == 4:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        if pooling not in pool:
            raise ValueError(f"fine_tune: pooling must be 'avg' or 'max'. Received: {pooling!r}")
        x = pool[pooling](name=f"{HEAD_PREFIX}pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(
            f"fine_tune: the backbone's output has shape {x.shape}; expected a feature map "
            "(batch, height, width, channels) or vectors (batch, features). Build it with "
            "include_top=False."
        )
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{HEAD_PREFIX}dense")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_finetuned")


def _backbone_in_scope(backbone, strategy):
    """The backbone with its variables created under `strategy` (a copy when they were not)."""
    if not isinstance(backbone, keras.Model):
        if callable(backbone):
            return backbone()
        raise TypeError(
            f"fine_tune: backbone must be a keras.Model or a function returning one; "
            f"got {type(backbone).__name__}."
        )
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return backbone
    if all(isinstance(v.value, tf.distribute.DistributedValues) for v in backbone.weights):
        return backbone
    try:
        copy = keras.models.clone_model(backbone)
    except Exception as error:
        raise ValueError(
            f"fine_tune: backbone {backbone.name!r} was built outside strategy.scope() and "
            f"cannot be cloned into it ({error}). Pass a function that builds it instead."
        ) from None
    copy.set_weights(backbone.get_weights())
    return copy


# -- phase 2: what unfreezes and at which rates ----------------------------------------------


def _unfreeze_schedule(unfreeze, first_epoch):
    """UnfreezeBackbone's `{epoch: blocks}` (None = all) from `unfreeze`, epochs made absolute."""
    if isinstance(unfreeze, dict):
        steps = unfreeze
    else:
        steps = {0: unfreeze}
    return {
        first_epoch + int(epoch): None if blocks in (None, "all") else int(blocks)
        for epoch, blocks in steps.items()
    }


def _finetune_optimizer(
    model, backbone, learning_rate, backbone_lr_mult, layer_decay, weight_decay, steps
):
    """AdamW with a cosine decay, the head at 1x and the backbone at `backbone_lr_mult`."""
    if steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    if layer_decay:
        multipliers = {
            pattern: value if pattern.startswith(HEAD_PREFIX) else value * backbone_lr_mult
            for pattern, value in layer_decay_multipliers(model, rate=layer_decay).items()
        }
    else:
        multipliers = {HEAD_GROUP: 1.0, f"{backbone.name}/": backbone_lr_mult}
    optimizer = with_lr_multipliers(
        keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay), multipliers, model=model
    )
    return exclude_from_decay(optimizer, model)


def _steps(dataset, epochs):
    batches = int(dataset.cardinality())
    return batches * epochs if batches > 0 else None


# -- data -------------------------------------------------------------------------------------


def _balance(train_ds, balance, class_counts, num_classes, seed):
    """`(dataset, class_weight)` for `balance` None, "class_weight" or "oversample"."""
    if balance is None:
        return train_ds, None
    from kerasrecipes.data.imbalance import class_weights, oversample

    counts = _counts(class_counts, train_ds, num_classes)
    if balance == "class_weight":
        return train_ds, class_weights(counts)
    return oversample(train_ds, counts, seed=seed), None


def _counts(class_counts, train_ds, num_classes):
    if class_counts is not None:
        if isinstance(class_counts, dict):
            return [int(count) for count in class_counts.values()]
        return [int(count) for count in class_counts]
    counts = np.zeros(num_classes, dtype=int)
    for _, labels in train_ds:
        labels = np.asarray(labels)
        labels = labels.argmax(-1) if labels.ndim == 2 else labels.reshape(-1)
        counts += np.bincount(labels.astype(int), minlength=num_classes)[:num_classes]
    return counts.tolist()


def _check_arguments(num_classes, head_epochs, finetune_epochs, unfreeze, balance):
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"fine_tune: num_classes must be an integer >= 2. Received: {num_classes!r}"
        )
    if head_epochs < 0 or finetune_epochs < 0 or head_epochs + finetune_epochs == 0:
        raise ValueError(
            "fine_tune: head_epochs and finetune_epochs must be >= 0 and not both 0. "
            f"Received: head_epochs={head_epochs}, finetune_epochs={finetune_epochs}"
        )
    steps = unfreeze.values() if isinstance(unfreeze, dict) else [unfreeze]
    for blocks in steps:
        if not (blocks in (None, "all") or (isinstance(blocks, int) and blocks >= 1)):
            raise ValueError(
                "fine_tune: unfreeze must be 'all', a number of top blocks >= 1, or a dict "
                f"{{epoch: 'all' or blocks}}. Received: unfreeze={unfreeze!r}"
            )
    if balance not in (None, "class_weight", "oversample"):
        raise ValueError(
            "fine_tune: balance must be None, 'class_weight' or 'oversample'. "
            f"Received: balance={balance!r}"
        )


# -- resuming ---------------------------------------------------------------------------------


def _phase_callbacks(phase, out_dir, monitor, patience):
    callbacks = [LogLearningRates()]
    if patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=patience, restore_best_weights=True
            )
        )
    if out_dir:
        # The CSV row is written before the backup, so a run killed between the two repeats
        # that epoch and `_State.rows` keeps its last row.
        callbacks += [
            keras.callbacks.CSVLogger(os.path.join(out_dir, f"history_{phase}.csv"), append=True),
            # Kept when the phase ends, until `_State.finish` has saved its result.
            AtomicBackupAndRestore(os.path.join(out_dir, "backup", phase), delete_checkpoint=False),
        ]
    return callbacks


def _rows(result, first_epoch):
    epochs = len(next(iter(result.history.values()), []))
    return [
        {"epoch": first_epoch + i, **{k: float(v[i]) for k, v in result.history.items()}}
        for i in range(epochs)
    ]


class _State:
    """Which phases of a run in `out_dir` are finished, and their weights and histories."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.state = {}
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            if os.path.exists(self.path(STATE_FILE)):
                with open(self.path(STATE_FILE)) as file:
                    self.state = json.load(file)

    def path(self, name):
        return os.path.join(self.out_dir, name)

    def done(self, phase):
        return bool(self.out_dir) and self.state.get(phase, {}).get("done", False)

    def finish(self, phase, model, epochs):
        if not self.out_dir:
            return
        # Each file is written aside and moved into place, so a kill never leaves half a file.
        writing = self.path("writing.weights.h5")
        model.save_weights(writing)
        os.replace(writing, self.path(f"{phase}.weights.h5"))
        self.state[phase] = {"done": True, "epochs": epochs}
        temporary = self.path(STATE_FILE + ".tmp")
        with open(temporary, "w") as file:
            json.dump(self.state, file)
        os.replace(temporary, self.path(STATE_FILE))
        shutil.rmtree(self.path(os.path.join("backup", phase)), ignore_errors=True)

    def rows(self, phase):
        """The phase's epochs from its CSV log, one row per epoch (the last one written)."""
        path = self.path(f"history_{phase}.csv")
        if not os.path.exists(path):
            return []
        by_epoch = {}
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                by_epoch[int(row["epoch"])] = {
                    k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""
                }
        return [by_epoch[epoch] for epoch in sorted(by_epoch)]
