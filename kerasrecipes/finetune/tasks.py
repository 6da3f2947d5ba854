"""What changes in `fine_tune` for a dense task: the model, the loss, the metrics, the outputs.

Classification keeps its own path in `training.py`; segmentation builds a
U-Net (`kerasrecipes.models.unet`) on the given backbone, whose decoder
layers are `head_*` so the phases freeze and unfreeze exactly as for a
classifier. The loss ignores VOC's void pixels (255); the metric is Keras'
`MeanIoU`, whose confusion matrix also gives the per-class IoU of the report.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from kerasrecipes import plots
from kerasrecipes.data.scenes import VOID_INDEX
from kerasrecipes.losses import SparseCategoricalCrossentropy

# The metric each task reports per epoch, as Keras logs it.
MAIN_METRIC = {"classification": "accuracy", "segmentation": "mean_iou"}


def build_model(task, backbone, num_classes, image_shape):
    """The task's model on `backbone` for images of `image_shape` (height, width, 3)."""
    from kerasrecipes.models.unet import unet

    if task == "segmentation":
        name = f"unet_{backbone.name}"
        return unet(backbone, num_classes=num_classes, input_shape=image_shape, name=name)
    raise ValueError(f"task must be one of {sorted(MAIN_METRIC)}. Received: task={task!r}")


def loss(task, label_smoothing):
    """Per-pixel cross-entropy that skips void pixels."""
    return SparseCategoricalCrossentropy(label_smoothing=label_smoothing, ignore_class=VOID_INDEX)


def metrics(task, num_classes):
    return [
        keras.metrics.MeanIoU(
            num_classes, name="mean_iou", sparse_y_pred=False, ignore_class=VOID_INDEX
        )
    ]


def augmentation(preset, seed=None):
    """Keras' preprocessing layers for `preset`, applied to an image batch and its masks alike.

    "flip": a random horizontal flip; "basic": the flip, then a shift of up
    to 10% and a zoom of up to 20% either way. Keras transforms the
    `segmentation_masks` of the same dict with nearest-neighbour sampling,
    filling new pixels with the background (0), so image and mask stay aligned.
    """
    layers = [keras.layers.RandomFlip("horizontal", seed=seed)]
    if preset == "basic":
        layers += [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(0.2, fill_mode="constant", seed=seed),
        ]
    return layers


def augment(dataset, preset, seed=None):
    """`dataset` of `(images, masks)` batches with `augmentation(preset)` on both."""
    layers = augmentation(preset, seed)

    def apply(images, masks):
        data = {"images": images, "segmentation_masks": masks[..., None]}
        for layer in layers:
            data = layer(data, training=True)
        return data["images"], tf.cast(tf.round(data["segmentation_masks"][..., 0]), masks.dtype)

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def evaluate_iou(model, dataset, num_classes):
    """`(mean IoU, per-class IoU list)` of `model` on `dataset`, from Keras' `MeanIoU`.

    The per-class values are read from the metric's confusion matrix (rows
    true, columns predicted): IoU = TP / (TP + FP + FN); a class absent from
    both truth and prediction gets NaN, as Keras leaves it out of the mean.
    """
    metric = metrics("segmentation", num_classes)[0]
    for images, masks in dataset:
        metric.update_state(masks, model(images, training=False))
    matrix = keras.ops.convert_to_numpy(metric.total_cm).astype("float64")
    true_positives = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, true_positives / union, np.nan)
    return float(metric.result()), per_class.tolist()


def save_overlays(model, dataset, class_names, path, count=8):
    """`path` (PNG): validation images, their true masks and the predicted ones, coloured."""
    images, masks = [], []
    for batch_images, batch_masks in dataset:
        images.append(np.asarray(batch_images))
        masks.append(np.asarray(batch_masks))
        if sum(len(b) for b in images) >= count:
            break
    images = np.concatenate(images)[:count]
    masks = np.concatenate(masks)[:count]
    predicted = keras.ops.convert_to_numpy(model(images, training=False)).argmax(-1)
    return plots.plot_segmentation(images, masks, predicted, class_names, path)


def save_dense_run(folder, model, task, val_ds, class_names):
    """The task's figures and results in the run folder; returns the report's results part."""
    results = {}
    if val_ds is not None:
        mean_iou, per_class = evaluate_iou(model, val_ds, len(class_names))
        results = {
            "mean_iou": mean_iou,
            "per_class_iou": dict(zip(class_names, per_class)),
        }
        save_overlays(model, val_ds, class_names, folder.file("overlays.png"))
    # A new functional model over the same layers: the weights without the optimizer's state.
    inference = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    writing = folder.file("model.writing.keras")
    inference.save(writing)
    os.replace(writing, folder.file("model.keras"))
    return results
