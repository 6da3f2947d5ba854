"""BatchNorm statistics recomputed over the training data: PreciseBN as a Keras callback."""

import keras
import numpy as np
from keras import ops

from kerasrecipes import _compat
from kerasrecipes.callbacks.base import ConfigurableCallback, strategy_scope


@keras.saving.register_keras_serializable(package="kerasrecipes")
class PreciseBN(ConfigurableCallback):
    """Replace BatchNorm's moving averages with the population statistics of the training data.

    Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm" (arXiv:2105.07576),
    Sec. 3, as pycls' and Detectron2's `PreciseBN`. A moving average lags the
    weights it follows: after `n` updates at momentum `m` it still holds
    `m**n` of its start, and when the weights change fast (short runs, a
    decoder learning on a frozen encoder) even its recent terms describe
    networks that are gone. Inference-mode outputs then differ from what the
    network learned. This callback passes up to `num_batches` batches of
    `data` through the model in training mode, with the momentum of every
    BatchNorm layer that trains set to 0, reads each batch's mean and
    variance, and sets the moving mean and variance to the statistics of all
    those batches together (the variance includes the spread of the batch
    means, so it is the variance of the whole set, not the mean batch
    variance). Keras has no such callback.

    It runs at the end of `fit` (after `EarlyStopping` has restored the best
    weights, when it comes after it in the list) and, with `every_epoch=True`,
    also after the last training batch of every epoch, before validation, so
    that validation, early stopping and checkpoints judge the weights with
    statistics that match them. BatchNorm layers that do not train
    (`trainable=False`, e.g. a frozen backbone's) keep their statistics.

    Args:
        data: what the population is: a `tf.data.Dataset`, or any iterable of
            batches, of images or of `(images, targets)`; the training data
            without augmentation is the usual choice. Not stored in the
            config: give it again after deserializing.
        num_batches: int, the most batches read. Defaults to 200 (Detectron2's
            `TEST.PRECISE_BN.NUM_ITER`).
        every_epoch: bool, also recompute before each epoch's validation.
            Defaults to False.

    Example:

        model.fit(train_ds, validation_data=val_ds, epochs=5,
                  callbacks=[kr.callbacks.PreciseBN(train_ds_without_augmentation)])
    """

    def __init__(self, data=None, num_batches=200, every_epoch=False):
        super().__init__()
        if not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(
                f"PreciseBN: num_batches must be an integer >= 1. Received: {num_batches!r}"
            )
        self.data = data
        self.num_batches = num_batches
        self.every_epoch = bool(every_epoch)
        self.images_read = 0

    def get_config(self):
        return {"num_batches": self.num_batches, "every_epoch": self.every_epoch}

    def on_train_begin(self, logs=None):
        if self.data is None:
            raise ValueError(
                "PreciseBN: no data to compute the statistics on. Pass data=, e.g. the training "
                "dataset without augmentation (a deserialized PreciseBN needs it set again)."
            )

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps") if self.params else None
        if self.every_epoch and steps and batch + 1 == steps:
            self.recompute()

    def on_train_end(self, logs=None):
        self.recompute()

    def recompute(self, model=None):
        """Sets the moving statistics of `model`'s (default: the callback's) training BatchNorm
        layers to those of the data; returns the number of layers updated."""
        model = model or self.model
        layers = [
            layer
            for layer in _compat.sublayers(model, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        if not layers:
            return 0
        momenta = [layer.momentum for layer in layers]
        totals = [np.zeros((2, *layer.moving_mean.shape), "float64") for layer in layers]
        count = 0
        try:
            for layer in layers:
                layer.momentum = 0.0  # each call leaves exactly its batch's statistics
            with strategy_scope(model):
                for batch in _take(self.data, self.num_batches):
                    images = batch[0] if isinstance(batch, (tuple, list)) else batch
                    size = int(ops.shape(images)[0])
                    model(images, training=True)
                    for layer, total in zip(layers, totals):
                        mean = ops.convert_to_numpy(layer.moving_mean).astype("float64")
                        variance = ops.convert_to_numpy(layer.moving_variance).astype("float64")
                        total += size * np.stack([mean, variance + mean**2])
                    count += size
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
        if count == 0:
            raise ValueError("PreciseBN: data gave no batch; give the training data.")
        for layer, total in zip(layers, totals):
            mean = total[0] / count
            variance = np.maximum(total[1] / count - mean**2, 0.0)
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
        self.images_read = count
        return len(layers)


def _take(data, num_batches):
    """The first `num_batches` batches of a dataset or any iterable."""
    for index, batch in enumerate(data):
        if index >= num_batches:
            return
        yield batch
