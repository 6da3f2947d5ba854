"""What segmentation and detection share: augmentation that moves the masks or boxes with the
images, and the demo scenes.

Keras' preprocessing layers transform the `segmentation_masks` of a dict
with nearest-neighbour sampling, filling new pixels with the background
(0), and its `bounding_boxes` ("xyxy" pixels) with the image, clipping them
to it; `augment` feeds them the batches of `kr.data.mask_folder` and
`kr.data.coco_folder`.
"""

import os

import keras
import tensorflow as tf

from kerasrecipes.data.augment import MASK_AND_BOX_PRESETS
from kerasrecipes.data.demo import make_demo_dataset
from kerasrecipes.files import replaced_atomically

# The augmentation presets of the dense tasks (`kr.data.PRESETS` names the vocabulary).
DENSE_AUGMENT = MASK_AND_BOX_PRESETS
# The demo scenes' size (`make_demo_dataset(task="segmentation")`): the demo backbone,
# pre-trained at 32 px, is rebuilt at it under the U-Net or RetinaNet.
DEMO_SCENE_SIZE = 96


def check_augment(config, fail):
    if config.augment is not None and config.augment not in DENSE_AUGMENT:
        fail(
            "augment",
            f"must be one of {list(DENSE_AUGMENT)} for {config.task} (they move the masks "
            "with the images)",
        )
    if config.balance is not None:
        fail("balance", f"is for classification; the {config.task} task has none")


def demo_scenes(cache_dir, task):
    folder = make_demo_dataset(os.path.join(cache_dir, "demo", "scenes"), task=task)
    return folder, "scenes of 1-4 shapes of 3 classes, VOC masks, COCO boxes"


def augmentation(preset, seed=None, boxes=False):
    """Keras' preprocessing layers for `preset`, applied to an image batch and its masks or
    boxes alike: "flip", a random horizontal flip; "basic", the flip, then a shift of up to
    10% and a zoom of up to 20% either way (the crop-and-scale of `kr.data.augmentation`'s
    "basic", drawn by the layers that move masks and boxes). `boxes=True`: boxes in "xyxy"
    pixels."""
    if preset == "none":
        return []
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
    has_boxes = isinstance(dataset.element_spec[1], dict)
    layers = augmentation(preset, seed, boxes=has_boxes)

    def apply_to_boxes(images, targets):
        data = {"images": images, "bounding_boxes": dict(targets)}
        for layer in layers:
            data = layer(data, training=True)
        labels = data["bounding_boxes"]["labels"]
        # Keras keeps padded rows' labels at -1 but moves their boxes; put them back at -1.
        boxes = tf.where((labels >= 0)[..., None], data["bounding_boxes"]["boxes"], -1.0)
        return data["images"], {"boxes": boxes, "labels": tf.cast(labels, targets["labels"].dtype)}

    def apply_to_masks(images, masks):
        data = {"images": images, "segmentation_masks": masks[..., None]}
        for layer in layers:
            data = layer(data, training=True)
        return data["images"], tf.cast(tf.round(data["segmentation_masks"][..., 0]), masks.dtype)

    apply = apply_to_boxes if has_boxes else apply_to_masks
    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def training_data(train_ds, val_ds, config):
    """`Task.training_data` of a dense task: the training data augmented with its masks or
    boxes; PreciseBN reads it unaugmented; no class weights."""
    population_ds = train_ds
    if config.augment not in (None, "none"):
        train_ds = augment(train_ds, config.augment, seed=config.seed)
    return train_ds, val_ds, population_ds, None


def dense_read(reader, folder, config):
    """`reader` (`mask_folder`, `coco_folder`) at the config's size, batch, split and seed."""
    return reader(
        folder,
        image_size=(config.image_size, config.image_size),
        batch_size=config.batch_size,
        validation_split=config.validation_split or None,
        seed=config.seed,
    )


def save_product(product, path):
    """Saves `product` (the task's model class) to `path` atomically."""
    with replaced_atomically(path, ".keras") as writing:
        product.save(writing)


def source_of(config, backbone):
    """What a product records of where its network came from."""
    return {"model": config.model, "weights": config.weights, "backbone": backbone}
