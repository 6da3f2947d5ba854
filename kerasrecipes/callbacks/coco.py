"""COCO box mAP of a detector, from pycocotools, after every epoch.

pycocotools' `COCOeval` is the reference implementation of the COCO metric
(mAP over IoU 0.50:0.95, 101-point interpolation, 100 detections per image);
we only convert our batches to its JSON records.
"""

import contextlib
import io

import keras
import numpy as np

from kerasrecipes.callbacks.base import ConfigurableCallback

# The confidence floor of the detections scored: low, as in torchvision's COCO evaluation
# (0.05), so the precision-recall curve reaches far; `predict` keeps its own higher threshold.
EVALUATION_THRESHOLD = 0.05


def _records(model, dataset):
    """COCO ground truth and detections (xywh pixels) of `model` on `dataset`."""
    images, truth, detections = [], [], []
    for batch_images, targets in dataset:
        outputs = model.decode(
            model(batch_images, training=False),
            batch_images,
            confidence_threshold=EVALUATION_THRESHOLD,
        )
        outputs = {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
        boxes, labels = np.asarray(targets["boxes"]), np.asarray(targets["labels"])
        height, width = batch_images.shape[1:3]
        for row in range(len(labels)):
            image_id = len(images) + 1
            images.append({"id": image_id, "width": int(width), "height": int(height)})
            for box, label in zip(boxes[row], labels[row]):
                if label < 0:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                truth.append(
                    {
                        "id": len(truth) + 1,
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
            for index in range(int(outputs["num_detections"][row])):
                x0, y0, x1, y1 = (float(v) for v in outputs["boxes"][row, index])
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": int(outputs["labels"][row, index]) + 1,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": float(outputs["confidence"][row, index]),
                    }
                )
    return images, truth, detections


def coco_evaluation(model, dataset, class_names):
    """`{"map", "map50", "per_class_ap"}` of a `kr` RetinaNet on `dataset`, by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, truth, detections = _records(model, dataset)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    if not detections:
        return {"map": 0.0, "map50": 0.0, "per_class_ap": dict.fromkeys(class_names, 0.0)}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground = COCO()
        ground.dataset = {"images": images, "annotations": truth, "categories": categories}
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: [IoU thresholds, recall points, classes, areas, max detections]; -1 = no data.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for index, name in enumerate(class_names):
        values = precision[:, :, index]
        per_class[name] = float(values[values > -1].mean()) if (values > -1).any() else None
    return {
        "map": float(max(evaluation.stats[0], 0.0)),
        "map50": float(max(evaluation.stats[1], 0.0)),
        "per_class_ap": per_class,
    }


@keras.saving.register_keras_serializable(package="kerasrecipes")
class CocoEvaluation(ConfigurableCallback):
    """Adds `val_map` (COCO mAP@[.5:.95]) and `val_map50` (mAP@.5) to each epoch's logs.

    Args:
        dataset: batches of `(images, {"boxes", "labels"})`, boxes as
            `[x_min, y_min, x_max, y_max]` pixels, padded with label -1.
        class_names: the names of labels 0..K-1.
    """

    def __init__(self, dataset=None, class_names=()):
        super().__init__()
        self.dataset = dataset
        self.class_names = list(class_names)

    def get_config(self):
        return {"class_names": self.class_names}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.dataset is None:
            return
        result = coco_evaluation(self.model, self.dataset, self.class_names)
        logs["val_map"] = result["map"]
        logs["val_map50"] = result["map50"]
