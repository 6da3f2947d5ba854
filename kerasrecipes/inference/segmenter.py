"""A trained segmenter that knows its classes, and masks for files, folders and arrays.

`ImageSegmenter` is to a segmentation run what `kr.ImageClassifier` is to a
classification run (keras-hub's `ImageSegmenter` plays the same part): the
U-Net with its class names and input size in the model's config, so a
`.keras` file carries them. It takes RGB images of any size in [0, 255],
resizes them to the size it trained at, and returns per-pixel class
probabilities there; `predict_images` turns them into class-index masks at
each image's own size.
"""

import dataclasses
import os

import keras
import numpy as np
from PIL import Image

from kerasrecipes.data.scenes import voc_palette
from kerasrecipes.inference.classifier import checked_class_names, network_image_size
from kerasrecipes.inference.inputs import image_batches, original_sizes, output_names
from kerasrecipes.plots import blend_mask


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ImageSegmenter(keras.Model):
    """A segmentation network that records its class names, input size and origin.

    Args:
        network: the segmentation model at its training size, `(batch, h, w,
            3)` in [0, 255] to `(batch, h, w, num_classes)` probabilities.
        class_names: the name of each class index, background first; None
            for "0", "1", ...
        image_size: `(height, width)` the network takes; None for its input shape.
        source: a dict saying where the network came from; recorded, not used.
        **kwargs: `keras.Model` arguments such as `name`.

    Example:

    >>> network = keras.Sequential([keras.Input((8, 8, 3)),
    ...                             keras.layers.Conv2D(2, 1, activation="softmax")])
    >>> segmenter = ImageSegmenter(network, class_names=["background", "shape"])
    >>> segmenter.predict_images(np.zeros((20, 30, 3), "uint8")).mask.shape
    (20, 30)
    """

    def __init__(self, network, class_names=None, image_size=None, source=None, **kwargs):
        num_classes = network.output_shape[-1]
        self.class_names = checked_class_names(num_classes, class_names, "ImageSegmenter")
        self.image_size = network_image_size(network, image_size, "ImageSegmenter")
        images = keras.Input((None, None, 3), name="images")
        resized = keras.layers.Resizing(*self.image_size, name="resize", dtype="float32")(images)
        kwargs.setdefault("name", f"{network.name}_segmenter")
        super().__init__(inputs=images, outputs=network(resized), **kwargs)
        self.network = network
        self.source = dict(source or {})

    def call(self, inputs, training=False, mask=None):
        # As `ImageClassifier.call`: `Resizing`'s training default must not reach the network.
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "source": self.source,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

    def predict_images(self, images, batch_size=32):
        """Class-index masks for image files, a folder, a numpy batch or PIL images.

        Returns one `MaskPrediction` for one image, else `MaskPredictions`
        (the unreadable files in `skipped`, with their reasons). Each mask
        has the image's own height and width (nearest-neighbour from the
        model's size).
        """
        batches, paths, skipped, single = image_batches(images, self.image_size, batch_size)
        sizes = original_sizes(images, paths)
        masks = []
        for batch in batches:
            probabilities = keras.ops.convert_to_numpy(self.predict_on_batch(batch))
            masks.extend(probabilities.argmax(-1).astype("uint8"))
        masks = [_resized_mask(mask, size) for mask, size in zip(masks, sizes)]
        predictions = MaskPredictions(self.class_names, masks, paths, skipped)
        if single:
            if not masks:
                path, reason = skipped[0]
                raise ValueError(f"predict_images: {path} cannot be read as an image: {reason}.")
            return predictions[0]
        return predictions


def _resized_mask(mask, size):
    if tuple(mask.shape) == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size[::-1], Image.NEAREST))


@dataclasses.dataclass
class MaskPrediction:
    """One image's mask: `mask` `(height, width)` uint8 class indices, `path` or None."""

    mask: np.ndarray
    path: str | None = None


@dataclasses.dataclass
class MaskPredictions:
    """The masks for many images, and the files that could not be read."""

    class_names: list
    masks: list
    paths: list | None
    skipped: list

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        return MaskPrediction(self.masks[index], None if self.paths is None else self.paths[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def save(self, out_dir, root=None):
        """Writes `out_dir/masks/<name>.png` (palette PNGs whose pixel values are the class
        indices, VOC colours) and `out_dir/overlays/<name>.png` (the image with its mask
        painted over it), `<name>` the input's name relative to `root`; returns the rows of
        the written files (path, mask, overlay, pixels per class)."""
        names = output_names(self.paths, len(self), root)
        rows = []
        for prediction, name in zip(self, names):
            mask_path = os.path.join(out_dir, "masks", name)
            overlay_path = os.path.join(out_dir, "overlays", name)
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            os.makedirs(os.path.dirname(overlay_path), exist_ok=True)
            indexed = Image.fromarray(prediction.mask, mode="P")
            indexed.putpalette(voc_palette().astype("uint8").reshape(-1).tolist())
            indexed.save(mask_path)
            if prediction.path is not None:
                image = np.asarray(Image.open(prediction.path).convert("RGB"), "float32")
                if image.shape[:2] == prediction.mask.shape:
                    overlay = blend_mask(image, prediction.mask)
                    Image.fromarray(np.clip(overlay, 0, 255).astype("uint8")).save(overlay_path)
            counts = np.bincount(prediction.mask.reshape(-1), minlength=len(self.class_names))
            row = {"path": prediction.path, "mask": mask_path, "overlay": overlay_path}
            row.update({n: int(c) for n, c in zip(self.class_names, counts)})
            rows.append(row)
        rows += [{"path": path, "skipped": reason} for path, reason in self.skipped]
        return rows
