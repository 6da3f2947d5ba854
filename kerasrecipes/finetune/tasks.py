"""Deprecated: the tasks moved to `kerasrecipes.tasks`, one module each.

The old names stay importable from here: `augment` and `augmentation`
(`kerasrecipes.tasks.dense`), `anchor_size_for` and `save_box_overlays`
(`kerasrecipes.tasks.detection`), `save_overlays` (`kerasrecipes.tasks.segmentation`),
`evaluate_iou` (`kerasrecipes.inference.dense_evaluation`), and `MAIN_METRIC`.
"""

from kerasrecipes.inference import dense_evaluation
from kerasrecipes.tasks import get_task, task_names
from kerasrecipes.tasks.dense import augment, augmentation
from kerasrecipes.tasks.detection import anchor_size_for, save_box_overlays
from kerasrecipes.tasks.segmentation import save_overlays


def evaluate_iou(model, dataset, num_classes):
    """`(mean IoU, per-class IoU list)`; `kr.inference.dense_evaluation.evaluate_iou` also gives
    the confusion matrix."""
    return dense_evaluation.evaluate_iou(model, dataset, num_classes)[:2]


MAIN_METRIC = {name: get_task(name).main_metric for name in task_names()}

__all__ = [
    "MAIN_METRIC",
    "anchor_size_for",
    "augment",
    "augmentation",
    "evaluate_iou",
    "save_box_overlays",
    "save_overlays",
]
