"""Early stopping that a kill does not reset."""

import glob
import json
import os

import keras
import numpy as np

from kerasrecipes.files import replaced_atomically, write_json


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping` whose count, best value and best weights survive a kill.

    Why our own: `BackupAndRestore` backs up the model and the epoch, not the
    other callbacks, and `EarlyStopping.on_train_begin` starts from nothing.
    A run resumed after a kill would wait `patience` epochs anew and forget the
    best weights seen before the kill, so it would stop later than the run
    that was not killed, and could restore worse weights.

    After every epoch this callback writes its state to `state_dir`
    (`early_stopping.<epoch>.json`, and the best weights when they change),
    each file written whole or not at all; the states of the last two epochs
    are kept. When `fit` resumes at epoch `e`, it takes up the state of the
    newest epoch before `e`. Put it before the `BackupAndRestore` callback, so
    that its state of an epoch is written before the backup of that epoch.

    Args:
        state_dir: folder for the state (e.g. the backup folder); None keeps
            nothing, as Keras' `EarlyStopping`.
        **kwargs: `keras.callbacks.EarlyStopping`'s arguments.
    """

    def __init__(self, state_dir=None, **kwargs):
        super().__init__(**kwargs)
        self.state_dir = None if state_dir is None else os.fspath(state_dir)
        self._resumed = False

    def get_config(self):
        return {
            "state_dir": self.state_dir,
            "monitor": self.monitor,
            "min_delta": abs(self.min_delta),
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.state_dir and not self._resumed:
            self._resumed = True
            self._load_state_before(epoch)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.state_dir:
            self._save_state(epoch)

    # -- the state on disk ----------------------------------------------------------------------

    def _path(self, kind, epoch):
        return os.path.join(self.state_dir, f"early_stopping.{kind}{epoch}.{self._suffix(kind)}")

    @staticmethod
    def _suffix(kind):
        return "npz" if kind == "best" else "json"

    def _saved_epochs(self, kind):
        pattern = os.path.join(self.state_dir, f"early_stopping.{kind}*.{self._suffix(kind)}")
        prefix = f"early_stopping.{kind}"
        epochs = []
        for path in glob.glob(pattern):
            number = os.path.basename(path)[len(prefix) :].split(".")[0]
            if number.isdigit():
                epochs.append(int(number))
        return sorted(epochs)

    def _save_state(self, epoch):
        os.makedirs(self.state_dir, exist_ok=True)
        weights_epoch = None
        if self.best_weights is not None:
            weights_epoch = self.best_epoch
            path = self._path("best", weights_epoch)
            # Written again when this epoch is the best: a retrained epoch replaces what a
            # killed attempt at it left.
            if self.best_epoch == epoch or not os.path.exists(path):
                with replaced_atomically(path, ".npz") as writing:
                    np.savez(writing, *self.best_weights)
        state = {
            "epoch": int(epoch),
            "wait": int(self.wait),
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
            "best_weights_epoch": weights_epoch,
        }
        write_json(self._path("state", epoch), state)
        self._forget_older_than(epoch - 1)

    def _forget_older_than(self, epoch):
        kept = set()
        for old in self._saved_epochs("state"):
            if old < epoch:
                os.remove(self._path("state", old))
            else:
                with open(self._path("state", old)) as file:
                    kept.add(json.load(file)["best_weights_epoch"])
        for old in self._saved_epochs("best"):
            if old not in kept:
                os.remove(self._path("best", old))

    def _load_state_before(self, epoch):
        earlier = [e for e in self._saved_epochs("state") if e < epoch]
        if not earlier:
            return
        with open(self._path("state", earlier[-1])) as file:
            state = json.load(file)
        self.wait, self.best = state["wait"], state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        if state["best_weights_epoch"] is not None:
            with np.load(self._path("best", state["best_weights_epoch"])) as saved:
                self.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
