"""What changes in `fine_tune` for a dense task: the model, the loss, the metrics, the outputs.

Classification keeps its own path in `training.py`. Segmentation builds a
U-Net (`kerasrecipes.models.unet`) on the given backbone, detection a
RetinaNet (`kerasrecipes.models.retinanet`); their new layers are `head_*`,
so the phases freeze and unfreeze exactly as for a classifier. The
segmentation loss ignores VOC's void pixels (255) and its metric is Keras'
`MeanIoU`, whose confusion matrix also gives the per-class IoU of the
report; the detector computes its own loss, and pycocotools scores it
(`kerasrecipes.callbacks.coco`).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from kerasrecipes import plots
from kerasrecipes.data.scenes import VOID_INDEX
from kerasrecipes.losses import SparseCategoricalCrossentropy

# The metric each task reports per epoch, as Keras logs it.
MAIN_METRIC = {"classification": "accuracy", "segmentation": "mean_iou", "detection": "map50"}


def build_model(task, backbone, num_classes, image_shape, train_ds=None):
    """The task's model on `backbone` for images of `image_shape` (height, width, 3)."""
    from kerasrecipes.models.retinanet import retinanet
    from kerasrecipes.models.unet import unet

    if task == "segmentation":
        name = f"unet_{backbone.name}"
        return unet(backbone, num_classes=num_classes, input_shape=image_shape, name=name)
    if task == "detection":
        return retinanet(
            backbone,
            num_classes=num_classes,
            input_shape=image_shape,
            anchor_size=anchor_size_for(train_ds),
            name=f"retinanet_{backbone.name}",
        )
    raise ValueError(f"task must be one of {sorted(MAIN_METRIC)}. Received: task={task!r}")


def anchor_size_for(train_ds, batches=20):
    """RetinaNet's `anchor_size` that fits the data's small objects: the 10th percentile of the
    boxes' sides over 8 (the stride of P3), between 1 and the paper's 4."""
    if train_ds is None:
        return 4
    sides = []
    for _, targets in train_ds.take(batches):
        boxes = np.asarray(targets["boxes"]).reshape(-1, 4)
        real = np.asarray(targets["labels"]).reshape(-1) >= 0
        sizes = (boxes[real, 2] - boxes[real, 0]) * (boxes[real, 3] - boxes[real, 1])
        sides.extend(np.sqrt(np.maximum(sizes, 0)))
    if not sides:
        return 4
    return float(np.clip(np.percentile(sides, 10) / 8, 1.0, 4.0))


def loss(task, label_smoothing):
    """Per-pixel cross-entropy that skips void pixels; None for detection (the model's own)."""
    if task == "detection":
        return None
    return SparseCategoricalCrossentropy(label_smoothing=label_smoothing, ignore_class=VOID_INDEX)


def metrics(task, num_classes):
    if task == "detection":
        return None  # COCO mAP comes from `CocoEvaluation` at the end of each epoch
    return [
        keras.metrics.MeanIoU(
            num_classes, name="mean_iou", sparse_y_pred=False, ignore_class=VOID_INDEX
        )
    ]


def callbacks(task, val_ds, class_names):
    """The callbacks a task adds before the others (they read the logs it writes)."""
    if task == "detection" and val_ds is not None:
        from kerasrecipes.callbacks.coco import CocoEvaluation

        return [CocoEvaluation(val_ds, class_names)]
    return []


def augmentation(preset, seed=None, boxes=False):
    """Keras' preprocessing layers for `preset`, applied to an image batch and its masks or
    boxes alike.

    "flip": a random horizontal flip; "basic": the flip, then a shift of up
    to 10% and a zoom of up to 20% either way. Keras transforms the
    `segmentation_masks` of the same dict with nearest-neighbour sampling,
    filling new pixels with the background (0), and its `bounding_boxes`
    (`boxes=True`, "xyxy" pixels) with the image, clipping them to it.
    """
    box_format = {"bounding_box_format": "xyxy"} if boxes else {}
    layers = [keras.layers.RandomFlip("horizontal", seed=seed, **box_format)]
    if preset == "basic":
        layers += [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed, **box_format),
            keras.layers.RandomZoom(0.2, fill_mode="constant", seed=seed, **box_format),
        ]
    return layers


def augment(dataset, preset, seed=None):
    """`dataset` of `(images, masks)` or `(images, {"boxes", "labels"})` batches with
    `augmentation(preset)` applied to the images and their masks or boxes alike."""
    layers = augmentation(preset, seed, boxes=isinstance(dataset.element_spec[1], dict))

    def apply_to_boxes(images, targets):
        data = {"images": images, "bounding_boxes": dict(targets)}
        for layer in layers:
            data = layer(data, training=True)
        labels = data["bounding_boxes"]["labels"]
        # Keras keeps padded rows' labels at -1 but moves their boxes; put them back at -1.
        boxes = tf.where((labels >= 0)[..., None], data["bounding_boxes"]["boxes"], -1.0)
        return data["images"], {"boxes": boxes, "labels": tf.cast(labels, targets["labels"].dtype)}

    if isinstance(dataset.element_spec[1], dict):
        return dataset.map(apply_to_boxes, num_parallel_calls=tf.data.AUTOTUNE)

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
    if task == "detection":
        return _save_detection_run(folder, model, val_ds, class_names)
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


def _save_detection_run(folder, model, val_ds, class_names):
    from kerasrecipes.callbacks.coco import coco_evaluation
    from kerasrecipes.models.retinanet import RetinaNet

    results = {}
    if val_ds is not None:
        results = coco_evaluation(model, val_ds, class_names)
        save_box_overlays(model, val_ds, class_names, folder.file("overlays.png"))
    # A new model from the config holds the weights without the optimizer's state.
    inference = RetinaNet.from_config(model.get_config())
    inference.set_weights(model.get_weights())
    writing = folder.file("model.writing.keras")
    inference.save(writing)
    os.replace(writing, folder.file("model.keras"))
    return results


def save_box_overlays(model, dataset, class_names, path, count=8):
    """`path` (PNG): validation images with their true boxes (dashed) and the predicted ones."""
    images, targets = [], []
    for batch_images, batch_targets in dataset:
        images.append(np.asarray(batch_images))
        targets.append({k: np.asarray(v) for k, v in batch_targets.items()})
        if sum(len(b) for b in images) >= count:
            break
    images = np.concatenate(images)[:count]
    truth = {k: np.concatenate([t[k] for t in targets])[:count] for k in ("boxes", "labels")}
    predicted = model.decode(model(images, training=False), images)
    predicted = {k: keras.ops.convert_to_numpy(v) for k, v in predicted.items()}
    return plots.plot_detections(images, truth, predicted, class_names, path)
