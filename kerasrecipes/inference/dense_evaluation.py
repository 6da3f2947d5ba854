"""`evaluate` for segmenters and detectors: the run report's figures on a test folder, and the
images where the model fails worst.

A segmenter is scored as its run scored it (Keras' `MeanIoU` over every
labelled pixel at the model's size, void pixels ignored): mean IoU, per-class
IoU and the pixel confusion matrix. A detector is scored by pycocotools, as
its run was: COCO mAP@[.5:.95], mAP@.5 and AP per class. Both read the
folder with the reader their run trained from (`kr.data.mask_folder`,
`kr.data.coco_folder`), so the same images give the same figures as the
run's `report.json`.
"""

import dataclasses
import os

import keras
import numpy as np

from kerasrecipes import plots
from kerasrecipes.callbacks.coco import coco_evaluation
from kerasrecipes.data.coco import coco_folder
from kerasrecipes.data.masks import mask_folder
from kerasrecipes.data.scenes import VOID_INDEX
from kerasrecipes.files import write_json


@dataclasses.dataclass
class DenseEvaluation:
    """What `evaluate` found for a segmenter or a detector.

    Attributes:
        data: the test folder.
        class_names: the model's classes.
        metrics: mean IoU, per-class IoU and the confusion matrix (rows
            true, columns predicted, pixels), or COCO mAP, mAP@.5 and AP per class.
        worst: `[{"path", "score"}]`, the images it did worst on, worst first
            (their IoU, or their missed plus false boxes at IoU 0.5).
        skipped: `(path, reason)` of the files not read.
        files: the files written (in `out_dir`), if any.
    """

    data: str
    class_names: list
    metrics: dict
    worst: list
    skipped: list
    files: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return dataclasses.asdict(self)

    def summary(self):
        """The report as text: the headline figure and one per class."""
        metrics = self.metrics
        if "mean_iou" in metrics:
            lines = [f"Mean IoU {metrics['mean_iou']:.3f} on {self.data}"]
            lines += [
                f"  {name}: IoU {value:.3f}" for name, value in metrics["per_class_iou"].items()
            ]
        else:
            lines = [f"COCO mAP@.5 {metrics['map50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}"]
            lines += [
                f"  {name}: AP {'n/a' if value is None else f'{value:.3f}'}"
                for name, value in metrics["per_class_ap"].items()
            ]
        lines.append(f"{len(self.skipped)} files skipped")
        return "\n".join(lines)


def mean_iou_metric(num_classes):
    """Keras' `MeanIoU` on probabilities, void pixels (255) ignored: the run's metric."""
    return keras.metrics.MeanIoU(
        num_classes, name="mean_iou", sparse_y_pred=False, ignore_class=VOID_INDEX
    )


def evaluate_iou(model, dataset, num_classes):
    """`(mean IoU, per-class IoU list, confusion matrix)` of `model` on `(images, masks)`.

    The per-class values are read from the metric's confusion matrix (rows
    true, columns predicted): IoU = TP / (TP + FP + FN); a class absent from
    both truth and prediction gets NaN, as Keras leaves it out of the mean.
    """
    metric = mean_iou_metric(num_classes)
    for images, masks in dataset:
        metric.update_state(masks, model(images, training=False))
    matrix = keras.ops.convert_to_numpy(metric.total_cm).astype("float64")
    return float(metric.result()), _per_class_iou(matrix).tolist(), matrix


def _per_class_iou(matrix):
    true_positives = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positives / union, np.nan)


def evaluate_segmenter(segmenter, data, *, batch_size=16, out_dir=None, worst=8):
    """Mean IoU, per-class IoU and the confusion matrix of `segmenter` on `data` (a folder in
    `kr.data.mask_folder`'s layout whose `classes.txt` names the model's classes); with
    `out_dir`, `evaluation.json`, `evaluation_confusion.png` and `evaluation_worst.png`."""
    dataset, _, info = mask_folder(
        data,
        image_size=segmenter.image_size,
        batch_size=batch_size,
        validation_split=None,
        shuffle=False,
        cache=False,
    )
    _check_classes(info.class_names, segmenter.class_names, data, "classes.txt")
    network, names = segmenter.network, segmenter.class_names
    mean_iou, per_class, matrix = evaluate_iou(network, dataset, len(names))
    scores, images, truths, predictions = [], [], [], []
    for batch_images, masks in dataset:
        predicted = keras.ops.convert_to_numpy(network(batch_images, training=False)).argmax(-1)
        for image, truth, guess in zip(np.asarray(batch_images), np.asarray(masks), predicted):
            scores.append(_image_iou(truth, guess, len(names)))
            images.append(image), truths.append(truth), predictions.append(guess)
    order = np.argsort(scores, kind="stable")[:worst]
    evaluation = DenseEvaluation(
        data=os.fspath(data),
        class_names=list(names),
        metrics={
            "mean_iou": mean_iou,
            "per_class_iou": dict(zip(names, per_class)),
            "confusion_matrix": matrix.astype("int64").tolist(),
        },
        worst=[{"path": info.train_pairs[i][0], "score": float(scores[i])} for i in order],
        skipped=[list(item) for item in info.skipped],
    )
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        plots.plot_confusion(matrix, names, os.path.join(out_dir, "evaluation_confusion.png"))
        pick = [images[i] for i in order], [truths[i] for i in order]
        plots.plot_segmentation(
            np.stack(pick[0]),
            np.stack(pick[1]),
            np.stack([predictions[i] for i in order]),
            names,
            os.path.join(out_dir, "evaluation_worst.png"),
        )
        _write(evaluation, out_dir, ["evaluation_confusion.png", "evaluation_worst.png"])
    return evaluation


def _image_iou(truth, predicted, num_classes):
    """The mean IoU of one image over the classes in its truth or its prediction."""
    labelled = truth != VOID_INDEX
    truth, predicted = truth[labelled].astype(int), predicted[labelled].astype(int)
    matrix = np.bincount(
        truth * num_classes + predicted, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    per_class = _per_class_iou(matrix.astype("float64"))
    return float(np.nanmean(per_class)) if np.any(~np.isnan(per_class)) else 1.0


def evaluate_detector(detector, data, *, batch_size=8, out_dir=None, worst=8):
    """COCO mAP, mAP@.5 and AP per class of `detector` on `data` (images and a COCO
    `annotations.json` whose categories are the model's classes), by pycocotools; with
    `out_dir`, `evaluation.json` and `evaluation_worst.png`."""
    dataset, _, info = coco_folder(
        data,
        image_size=detector.image_size,
        batch_size=batch_size,
        validation_split=None,
        shuffle=False,
        cache=False,
    )
    _check_classes(info.class_names, detector.class_names, data, "annotations.json")
    network, names = detector.network, detector.class_names
    metrics = coco_evaluation(network, dataset, names)
    errors, images, truths, found = [], [], [], []
    for batch_images, targets in dataset:
        outputs = network.decode(network(batch_images, training=False), batch_images)
        outputs = {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}
        for row, image in enumerate(np.asarray(batch_images)):
            truth = {key: np.asarray(targets[key][row]) for key in ("boxes", "labels")}
            guess = {key: value[row] for key, value in outputs.items()}
            errors.append(_box_errors(truth, guess))
            images.append(image), truths.append(truth), found.append(guess)
    order = np.argsort([-e for e in errors], kind="stable")[:worst]
    evaluation = DenseEvaluation(
        data=os.fspath(data),
        class_names=list(names),
        metrics=metrics,
        worst=[{"path": info.train_images[i], "score": float(errors[i])} for i in order],
        skipped=[list(item) for item in info.skipped],
    )
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        stacked = {key: np.stack([truths[i][key] for i in order]) for key in ("boxes", "labels")}
        predicted = {key: np.stack([found[i][key] for i in order]) for key in found[0]}
        plots.plot_detections(
            np.stack([images[i] for i in order]),
            stacked,
            predicted,
            names,
            os.path.join(out_dir, "evaluation_worst.png"),
        )
        _write(evaluation, out_dir, ["evaluation_worst.png"])
    return evaluation


def _box_errors(truth, predicted, threshold=0.5):
    """Missed plus false boxes of one image: predictions matched greedily, most confident
    first, to a true box of their class at IoU `threshold` or more."""
    real = truth["labels"] >= 0
    true_boxes, true_labels = truth["boxes"][real], truth["labels"][real]
    count = int(predicted["num_detections"])
    unmatched = list(range(len(true_boxes)))
    false = 0
    for box, label in zip(predicted["boxes"][:count], predicted["labels"][:count]):
        candidates = [i for i in unmatched if true_labels[i] == label]
        overlaps = [_iou(box, true_boxes[i]) for i in candidates]
        if overlaps and max(overlaps) >= threshold:
            unmatched.remove(candidates[int(np.argmax(overlaps))])
        else:
            false += 1
    return len(unmatched) + false


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def _check_classes(found, expected, data, where):
    if list(found) != list(expected):
        raise ValueError(
            f"evaluate: {data}'s {where} names the classes {list(found)}, but the model's are "
            f"{list(expected)}. Give test data labelled with the model's classes, in its order."
        )


def _write(evaluation, out_dir, figures):
    evaluation.files = ["evaluation.json", *figures]
    write_json(os.path.join(out_dir, "evaluation.json"), evaluation.to_dict())
