"""Backups that a killed process cannot leave half-written."""

import os

import keras

from kerasrecipes import _compat


@keras.saving.register_keras_serializable(package="kerasrecipes")
class AtomicBackupAndRestore(_compat.BackupAndRestoreWithWriter):
    """Keras' `BackupAndRestore`, with each backup written to a temporary file and renamed.

    Why our own: Keras writes `latest.weights.h5` in place. A process killed
    while it writes (the backup follows every epoch, so a kill lands there
    often) leaves a truncated HDF5 file, and the next run stops with
    "OSError: Unable to synchronously open file". `double_checkpoint=True`
    keeps the previous backup, but there is none after the first epoch.
    Here the weights and the epoch number are written to temporary files
    and moved into place with `os.replace`, which is atomic, weights first:
    a kill between the two moves repeats at most one epoch, never skips one.

    Args: as `keras.callbacks.BackupAndRestore`.
    """

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def write_backup(self, weights_path, metadata_path):
        writing_weights = os.path.join(self.backup_dir, "writing.weights.h5")
        writing_metadata = os.path.join(self.backup_dir, "writing_metadata.json")
        super().write_backup(writing_weights, writing_metadata)
        os.replace(writing_weights, weights_path)
        os.replace(writing_metadata, metadata_path)
