"""Callbacks for fine-tuning and diagnosis; everything else comes from Keras.

Early stopping, checkpoints, resuming, EMA and NaN stops are Keras'
(`EarlyStopping(restore_best_weights=True)`, `ModelCheckpoint`,
`BackupAndRestore`, `SwapEMAWeights`, `TerminateOnNaN`); `default_callbacks`
assembles them with the lecture's defaults.
"""

import os
import re
import warnings

import keras
from keras import ops

from kerasrecipes.callbacks.backup import AtomicBackupAndRestore
from kerasrecipes.callbacks.base import ConfigurableCallback
from kerasrecipes.callbacks.curves import TrainingCurves
from kerasrecipes.callbacks.early_stopping import ResumableEarlyStopping
from kerasrecipes.callbacks.lr_finder import LRFinder
from kerasrecipes.callbacks.phases import mark_phase, phase_marks
from kerasrecipes.callbacks.precise_bn import PreciseBN
from kerasrecipes.callbacks.unfreeze import UnfreezeBackbone
from kerasrecipes.optimizers.decay import _multiplier_wrapper


def group_label(pattern):
    """A log-friendly name for a multiplier pattern: `"stage1_block1[_/]"` -> `"stage1_block1"`."""
    label = re.sub(r"(\[_/\]|/|\.\*)$", "", pattern)
    return label.replace("\\", "") or pattern


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LogLearningRates(ConfigurableCallback):
    """Add the learning rate of each multiplier group to the epoch logs.

    After every epoch, `logs["learning_rate"]` is the base rate and
    `logs["lr/<group>"]` the effective rate of each group of an
    `LRMultiplierOptimizer` (base rate x the group's multiplier, at the
    optimizer's current step), so `History`, `CSVLogger` and `TrainingCurves`
    record them. Keras logs one rate for the whole optimizer.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(learning_rate_logs(self.model.optimizer))


def learning_rate_logs(optimizer):
    """`{"learning_rate": base rate, "lr/<group>": effective rate, ...}` of `optimizer` now.

    The groups are an `LRMultiplierOptimizer`'s: named ones (`with_group_rates`,
    as `kr.fine_tune` makes) by name, without the variables no group holds
    (frozen); patterns by `group_label`. The one reader of the rates:
    `LogLearningRates` and `kr.fine_tune`'s history both call it.
    """
    logs = {"learning_rate": float(ops.convert_to_numpy(optimizer.learning_rate))}
    wrapper = _multiplier_wrapper(optimizer)
    if wrapper is not None:
        for group, rate in wrapper.group_learning_rates().items():
            if group == "default" and wrapper.labels:
                continue
            logs[f"lr/{group_label(group)}"] = rate
    return logs


def default_callbacks(
    out_dir=None, monitor="val_loss", patience=5, ema=False, curves=True, log_learning_rates=True
):
    """The usual set, with the lecture's defaults: early stopping with patience > 1, and more.

    * `EarlyStopping(monitor, patience, restore_best_weights=True)` ("always
      use early stopping, with e > 1").
    * `TerminateOnNaN()`.
    * `LogLearningRates()` (per-group rates in the logs).
    * With `out_dir`: `AtomicBackupAndRestore(out_dir/backup)` (Keras'
      `BackupAndRestore`, safe against a kill while it writes) so an interrupted run
      resumes, `ModelCheckpoint(out_dir/best.keras, save_best_only=True)`,
      `CSVLogger(out_dir/history.csv, append=True)` and
      `TrainingCurves(out_dir/curves.png)`.
    * With `ema=True`: `SwapEMAWeights(swap_on_epoch=True)`, so validation and
      checkpoints use the averaged weights (the optimizer needs `use_ema=True`).

    >>> [type(c).__name__ for c in default_callbacks()]
    ['EarlyStopping', 'TerminateOnNaN', 'LogLearningRates']
    """
    if patience < 2:
        warnings.warn(
            f"default_callbacks: patience={patience} stops at the first bad epoch; "
            "validation loss is noisy, so use 2 or more.",
            stacklevel=2,
        )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if log_learning_rates:
        callbacks.append(LogLearningRates())
    if ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        callbacks += [
            AtomicBackupAndRestore(os.path.join(out_dir, "backup")),
            keras.callbacks.ModelCheckpoint(
                os.path.join(out_dir, "best.keras"), monitor=monitor, save_best_only=True
            ),
            keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True),
        ]
        if curves:
            callbacks.append(TrainingCurves(os.path.join(out_dir, "curves.png")))
    return callbacks


__all__ = [
    "AtomicBackupAndRestore",
    "LRFinder",
    "LogLearningRates",
    "PreciseBN",
    "ResumableEarlyStopping",
    "TrainingCurves",
    "UnfreezeBackbone",
    "default_callbacks",
    "group_label",
    "learning_rate_logs",
    "mark_phase",
    "phase_marks",
]
