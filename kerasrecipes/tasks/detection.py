"""Object detection: a RetinaNet on the backbone's stride 8-32 maps.

The model is `kerasrecipes.models.retinanet` (Lin et al., 2017, "Focal Loss
for Dense Object Detection", arXiv:1708.02002), which computes its own loss;
the data are images with COCO annotations (`kr.data.coco_folder`), and
pycocotools scores each epoch (`kr.callbacks.CocoEvaluation`, which logs
`map50`). The run folder holds `overlays.png` (true boxes dashed, predicted
solid) and `model.keras`.
"""

import keras
import numpy as np

from kerasrecipes import plots
from kerasrecipes.callbacks.coco import CocoEvaluation, coco_evaluation
from kerasrecipes.data.coco import coco_folder
from kerasrecipes.inference.detector import ObjectDetector
from kerasrecipes.models.retinanet import RetinaNet, retinanet
from kerasrecipes.tasks import dense
from kerasrecipes.tasks.base import Task, TaskDefaults, register_task

# At 3e-3 RetinaNet's heads reached a quarter of the demo's mAP@.5 after the head phase and the
# loss jumped to 1.07 when the encoder unfroze; the command's earlier defaults (batch 32, 60 + 90
# steps, no flips) reached mAP@.5 0.15, the recipe's settings (batch 16, 120 + 240 steps, flips)
# 0.78 (recipes/detection.py), and these with the warm-up 0.965.
DETECTION_DEFAULTS = TaskDefaults(
    batch_size=16,
    head_lr=1e-3,
    augment="flip",
    head_steps=120,
    finetune_steps=240,
    size_multiple=32,  # RetinaNet's coarsest stride
    # RetinaNet needs maps at strides 8, 16 and 32, which the CIFAR-style `baseline_cnn`
    # (strides 1-4) does not have.
    demo_model="resnet18",
    demo_image_size=dense.DEMO_SCENE_SIZE,
)


class Detection(Task):
    name = "detection"
    main_metric = "map50"
    metric_words = "mAP@.5"
    least_classes = 1  # a detector may look for one kind of object
    defaults = DETECTION_DEFAULTS
    data_layout = "a folder with images/ and annotations.json (COCO)"
    augment_presets = dense.DENSE_AUGMENT
    run_files = ("overlays.png",)
    counts_are = "boxes"
    result_keys = ("map", "map50", "per_class_ap")

    def check_config(self, config, fail):
        dense.check_augment(config, fail)

    def demo_data(self, cache_dir):
        return dense.demo_scenes(cache_dir, self.name)

    def read(self, folder, config):
        return dense.dense_read(coco_folder, folder, config)

    rebuilds_backbone = True

    def describe_data(self, info):
        counts = ", ".join(f"{name} {count}" for name, count in info.counts.items())
        return (
            f"{len(info.train_images)} training and {len(info.val_images)} validation "
            f"images, {sum(info.counts.values())} training boxes ({counts})"
        )

    def training_data(self, train_ds, val_ds, config, class_counts, num_classes):
        return dense.training_data(train_ds, val_ds, config)

    def build_model(self, backbone, num_classes, config, train_ds):
        return retinanet(
            backbone,
            num_classes=num_classes,
            input_shape=tuple(train_ds.element_spec[0].shape[1:]),
            anchor_size=anchor_size_for(train_ds),
            name=f"retinanet_{backbone.name}",
        )

    def loss(self, config, train_ds):
        return None  # RetinaNet computes its own

    def callbacks(self, val_ds, class_names):
        return [] if val_ds is None else [CocoEvaluation(val_ds, class_names)]

    def save_results(self, folder, model, val_ds, class_names, config, backbone):
        results = {}
        if val_ds is not None:
            results = coco_evaluation(model, val_ds, class_names)
            save_box_overlays(model, val_ds, class_names, folder.file("overlays.png"))
        # A new model from the config holds the weights without the optimizer's state.
        network = RetinaNet.from_config(model.get_config())
        network.set_weights(model.get_weights())
        product = ObjectDetector(
            network, class_names=class_names, source=dense.source_of(config, backbone)
        )
        dense.save_product(product, folder.file("model.keras"))
        return results

    def plot_batch(self, images, targets, class_names, path):
        boxes, labels = np.asarray(targets["boxes"]), np.asarray(targets["labels"])
        counts = [int((row >= 0).sum()) for row in labels]
        titles = [f"{count} box{'' if count == 1 else 'es'}" for count in counts]

        def draw(axis, index):
            plots.draw_boxes(axis, boxes[index], labels[index], class_names)

        return plots.plot_image_grid(images, titles, path, draw=draw)

    def summary_lines(self, report):
        if report.get("map50") is None:
            return []
        per_class = ", ".join(
            f"{name} {value:.3f}"
            for name, value in report["per_class_ap"].items()
            if value is not None
        )
        return [
            f"Final validation COCO mAP@.5 {report['map50']:.3f}, mAP@[.5:.95] "
            f"{report['map']:.3f} (AP per class: {per_class})"
        ]


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


register_task(Detection())
