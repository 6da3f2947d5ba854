"""Semantic segmentation: a U-Net decoder on the backbone's feature pyramid.

The model is `kerasrecipes.models.unet` (Ronneberger et al., 2015,
arXiv:1505.04597) on the given backbone; the data are VOC-style image and
mask folders (`kr.data.mask_folder`). The loss is per-pixel cross-entropy
that skips VOC's void pixels (255); the metric is Keras' `MeanIoU`, whose
confusion matrix also gives the report's per-class IoU. The run folder holds
`overlays.png` (images, true and predicted masks) and `model.keras`.
"""

import keras
import numpy as np

from kerasrecipes import plots
from kerasrecipes.data.masks import mask_folder
from kerasrecipes.data.scenes import VOID_INDEX
from kerasrecipes.inference.dense_evaluation import evaluate_iou, mean_iou_metric
from kerasrecipes.inference.segmenter import ImageSegmenter
from kerasrecipes.losses import SparseCategoricalCrossentropy
from kerasrecipes.models.unet import unet
from kerasrecipes.tasks import dense
from kerasrecipes.tasks.base import Task, TaskDefaults, register_task


class Segmentation(Task):
    name = "segmentation"
    main_metric = "mean_iou"
    metric_words = "mean IoU"
    defaults = TaskDefaults(demo_image_size=dense.DEMO_SCENE_SIZE)
    data_layout = "a folder with images/, masks/ and classes.txt"
    augment_presets = dense.DENSE_AUGMENT
    run_files = ("overlays.png",)
    counts_are = "labelled pixels"
    result_keys = ("mean_iou", "per_class_iou")

    def check_config(self, config, fail):
        dense.check_augment(config, fail)

    def demo_data(self, cache_dir):
        return dense.demo_scenes(cache_dir, self.name)

    def read(self, folder, config):
        return dense.dense_read(mask_folder, folder, config)

    rebuilds_backbone = True

    def describe_data(self, info):
        return (
            f"{len(info.train_pairs)} training and {len(info.val_pairs)} validation "
            f"image/mask pairs, classes {', '.join(info.class_names)}"
        )

    def training_data(self, train_ds, val_ds, config, class_counts, num_classes):
        return dense.training_data(train_ds, val_ds, config)

    def build_model(self, backbone, num_classes, config, train_ds):
        image_shape = tuple(train_ds.element_spec[0].shape[1:])
        name = f"unet_{backbone.name}"
        return unet(backbone, num_classes=num_classes, input_shape=image_shape, name=name)

    def loss(self, config, train_ds):
        return SparseCategoricalCrossentropy(
            label_smoothing=config.label_smoothing, ignore_class=VOID_INDEX
        )

    def metrics(self, num_classes):
        return [mean_iou_metric(num_classes)]

    def save_results(self, folder, model, val_ds, class_names, config, backbone):
        results = {}
        if val_ds is not None:
            mean_iou, per_class, _ = evaluate_iou(model, val_ds, len(class_names))
            results = {"mean_iou": mean_iou, "per_class_iou": dict(zip(class_names, per_class))}
            save_overlays(model, val_ds, class_names, folder.file("overlays.png"))
        # A new functional model over the same layers: the weights without the optimizer's state.
        network = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
        product = ImageSegmenter(
            network, class_names=class_names, source=dense.source_of(config, backbone)
        )
        dense.save_product(product, folder.file("model.keras"))
        return results

    def plot_batch(self, images, targets, class_names, path):
        overlays = [plots.blend_mask(image, mask) for image, mask in zip(images, targets)]
        titles = [
            ", ".join(class_names[i] for i in np.unique(mask) if 0 < i < len(class_names)) or "-"
            for mask in np.asarray(targets)
        ]
        return plots.plot_image_grid(overlays, titles, path)

    def summary_lines(self, report):
        if report.get("mean_iou") is None:
            return []
        per_class = ", ".join(
            f"{name} {value:.3f}" for name, value in report["per_class_iou"].items()
        )
        return [f"Final validation mean IoU {report['mean_iou']:.3f} ({per_class})"]


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


register_task(Segmentation())
