"""Losses Keras lacks: sparse-label cross-entropy with label smoothing."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasrecipes")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer labels, with label smoothing.

    Label smoothing (Szegedy et al. 2016, "Rethinking the Inception
    Architecture", arXiv:1512.00567, Sec. 7) trains against
    `(1 - eps) * one_hot(y) + eps / K` for K classes. Image folders give
    integer labels, and Keras 3.15's `SparseCategoricalCrossentropy` has no
    `label_smoothing` (only the one-hot `CategoricalCrossentropy` does), so
    this one-hot encodes the labels and calls Keras' categorical
    cross-entropy. With `label_smoothing=0` it equals Keras' sparse loss.

    Args:
        label_smoothing: float in [0, 1).
        from_logits: whether `y_pred` are logits.
        ignore_class: optional integer label whose samples get zero loss.
        reduction, name, dtype: as in `keras.losses.Loss`.

    >>> import numpy as np
    >>> loss = SparseCategoricalCrossentropy(label_smoothing=0.1)
    >>> round(float(loss(np.array([0]), np.array([[0.9, 0.05, 0.05]]))), 4)
    0.2981
    """

    def __init__(
        self,
        label_smoothing=0.0,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        num_classes = ops.shape(y_pred)[-1]
        keep = None
        if self.ignore_class is not None:
            keep = ops.cast(ops.not_equal(labels, self.ignore_class), y_pred.dtype)
            labels = ops.where(ops.equal(labels, self.ignore_class), 0, labels)
        one_hot = ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        one_hot = ops.reshape(one_hot, ops.shape(y_pred))
        loss = keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )
        if keep is not None:
            loss = loss * ops.reshape(keep, ops.shape(loss))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits,
                "ignore_class": self.ignore_class,
            }
        )
        return config
