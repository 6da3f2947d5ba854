"""A trained classifier that knows its classes, and predictions on files, folders and arrays.

`ImageClassifier` wraps a fine-tuned network with what using it needs: its
class names, its input size, the preprocessing inside it and where its
backbone came from, all in the model's config, so a `.keras` file carries
them (keras-hub's `ImageClassifier` keeps its preprocessor the same way;
Keras users have asked for class names saved with the model since
keras#9061). It takes RGB images of any size in [0, 255] and resizes them
itself, with the resize of the training pipeline.

`load_classifier(path_or_run_folder)` loads one; `predict_images` reads
files through the training pipeline's scan and decoder, so a file that
would have been skipped in training is skipped and reported here too.
"""

import dataclasses
import json
import os
import typing

import keras
import numpy as np

from kerasrecipes.inference.inputs import image_batches
from kerasrecipes.inference.tta import predict_with_tta


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ImageClassifier(keras.Model):
    """An image classifier that records its class names, input size and origin.

    Images of any size go in (RGB, [0, 255], batched), class probabilities
    come out: a `Resizing` layer brings them to `image_size` with the
    bilinear resize `kr.data.image_folder` trains with, then `network` (the
    fine-tuned model, its preprocessing inside) classifies them. A
    `crop_fraction` below 1 evaluates as timm and torchvision do (a timm
    checkpoint's `crop_pct`): the central square is resized to
    `image_size / crop_fraction` and its central `image_size` kept.

    Args:
        network: the classifier at its training size, `(batch, h, w, 3)` in
            [0, 255] to `(batch, num_classes)` probabilities.
        class_names: the name of each output, in order; None for "0", "1", ...
        image_size: `(height, width)` the network takes; None for the
            network's input shape.
        preprocessing: what the network does to [0, 255] input itself (an
            `ImagePreprocessing` mode), recorded for the reader.
        source: a dict saying where the network came from (model name,
            weights, backbone description); recorded, not used.
        crop_fraction: the part of the image's shorter side the network sees.
            Defaults to 1.0 (the whole image, squashed to `image_size`).
        interpolation: the resize's method ("bilinear", "bicubic", ...).
            Defaults to "bilinear".
        **kwargs: `keras.Model` arguments such as `name`.

    Example:

    >>> network = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
    ...                             keras.layers.Dense(2, activation="softmax")])
    >>> classifier = ImageClassifier(network, class_names=["cat", "dog"])
    >>> classifier.predict_images(np.zeros((20, 30, 3), "uint8")).label in ("cat", "dog")
    True
    """

    def __init__(
        self,
        network,
        class_names=None,
        image_size=None,
        preprocessing=None,
        source=None,
        crop_fraction=1.0,
        interpolation="bilinear",
        **kwargs,
    ):
        class_names = checked_class_names(network.output_shape[-1], class_names, "ImageClassifier")
        image_size = network_image_size(network, image_size, "ImageClassifier")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(
                f"ImageClassifier: crop_fraction must be in (0, 1]. Received: {crop_fraction!r}"
            )
        self.image_size = image_size
        self.crop_fraction = float(crop_fraction)
        images = keras.Input((None, None, 3), name="images")
        resized = keras.layers.Resizing(
            *self.read_size,
            interpolation=interpolation,
            crop_to_aspect_ratio=self.crop_fraction < 1.0,
            name="resize",
            dtype="float32",
        )(images)
        if self.crop_fraction < 1.0:
            resized = keras.layers.CenterCrop(*image_size, name="crop", dtype="float32")(resized)
        kwargs.setdefault("name", network.name.removesuffix("_finetuned") + "_classifier")
        super().__init__(inputs=images, outputs=network(resized), **kwargs)
        self.network = network
        self.class_names = class_names
        self.preprocessing = preprocessing
        self.source = dict(source or {})
        self.interpolation = interpolation

    @property
    def read_size(self):
        """`(height, width)` images are resized to before the central crop (`image_size` when
        `crop_fraction` is 1): `predict_images` and `evaluate` read files at this size."""
        return tuple(int(round(side / self.crop_fraction)) for side in self.image_size)

    def call(self, inputs, training=False, mask=None):
        # Keras' image preprocessing layers (`Resizing`) default to `training=True`; called
        # without `training`, that default would reach the network's Dropout through the
        # shared call context (Keras 3.15), and `Model.export` would trace dropout in.
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "preprocessing": self.preprocessing,
            "source": self.source,
            "crop_fraction": self.crop_fraction,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

    def predict_images(self, images, top_k=1, batch_size=32, tta=False):
        """Classifies image files, a folder, a numpy batch or PIL images.

        Args:
            images: a file path, a folder (its images, in class subfolders or
                not), a list of paths, an `(h, w, 3)` image or `(n, h, w, 3)`
                batch (uint8 or float in [0, 255]), or PIL images.
            top_k: how many classes each prediction lists, most likely first.
                Defaults to 1.
            batch_size: images per forward pass. Defaults to 32.
            tta: average over flips and crops (`kr.inference.TTA_VIEWS`).
                Defaults to False.

        Returns:
            One `Prediction` for one image (a path to a file, an `(h, w, 3)`
            array, a PIL image), else `Predictions`: one per image read, the
            skipped files in `skipped` with their reasons.
        """
        batches, paths, skipped, single = image_batches(
            images, self.read_size, batch_size, crop_to_aspect_ratio=self.crop_fraction < 1.0
        )
        probabilities = self.probabilities(batches, tta=tta)
        top_k = max(1, min(int(top_k), len(self.class_names)))
        predictions = Predictions(self.class_names, probabilities, paths, skipped, top_k)
        if single:
            if not len(predictions):
                path, reason = skipped[0]
                raise ValueError(f"predict_images: {path} cannot be read as an image: {reason}.")
            return predictions[0]
        return predictions

    def probabilities(self, batches, tta=False):
        """Class probabilities `(n, num_classes)` for an iterable of image batches."""
        if tta:
            return predict_with_tta(self, batches)
        outputs = [keras.ops.convert_to_numpy(self.predict_on_batch(b)) for b in batches]
        if not outputs:
            return np.zeros((0, len(self.class_names)), "float32")
        return np.concatenate(outputs).astype("float32")


def checked_class_names(num_classes, class_names, owner, unit="output"):
    """`class_names` as strings ("0", "1", ... when None), one per `unit` of the network; a
    `ValueError` naming `owner` otherwise."""
    class_names = [str(i) for i in range(num_classes)] if class_names is None else class_names
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"{owner}: {len(class_names)} class_names for a network with {num_classes} "
            f"{unit}s. Give one name per {unit}, in the order of the labels."
        )
    return class_names


def network_image_size(network, image_size, owner):
    """`(height, width)` the network takes: `image_size`, else its input shape's."""
    if image_size is None:
        image_size = network.input_shape[1:3]
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(image_size)
    if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
        raise ValueError(
            f"{owner}: the network {network.name!r} takes input of shape "
            f"{network.input_shape}; pass image_size=(height, width), the size it was trained at."
        )
    return image_size


class Prediction(typing.NamedTuple):
    """One image's prediction.

    Attributes:
        label: the most likely class name.
        probability: its probability.
        top_k: `[(class name, probability), ...]`, most likely first.
        path: the file it was read from, or None.
    """

    label: str
    probability: float
    top_k: list
    path: str | None = None


@dataclasses.dataclass
class Predictions:
    """The predictions for many images: one `Prediction` per image read.

    Attributes:
        class_names: the classifier's class names.
        probabilities: `(n, num_classes)` float32.
        paths: the files read, in order of the rows, or None for arrays.
        skipped: `(path, reason)` of the files that could not be read.
        top_k: how many classes each `Prediction` lists.
    """

    class_names: list
    probabilities: np.ndarray
    paths: list | None
    skipped: list
    top_k: int = 1

    def __len__(self):
        return len(self.probabilities)

    def __getitem__(self, index):
        row = self.probabilities[index]
        order = np.argsort(-row, kind="stable")[: self.top_k]
        top = [(self.class_names[i], float(row[i])) for i in order]
        path = None if self.paths is None else self.paths[index]
        return Prediction(top[0][0], top[0][1], top, path)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def labels(self):
        """The most likely class name of each image."""
        return [self.class_names[i] for i in self.probabilities.argmax(-1)]

    def rows(self):
        """One dict per image (path, label, probability, top-k), then one per skipped file."""
        rows = []
        for prediction in self:
            row = {"path": prediction.path, "label": prediction.label}
            row["probability"] = round(prediction.probability, 6)
            for rank, (name, probability) in enumerate(prediction.top_k, start=1):
                row[f"top{rank}_label"] = name
                row[f"top{rank}_probability"] = round(probability, 6)
            rows.append(row)
        rows += [{"path": path, "skipped": reason} for path, reason in self.skipped]
        return rows


def report_value(folder, *keys):
    """`report.json`'s value at `keys` in `folder`, or None without a report or that key."""
    path = os.path.join(folder, "report.json")
    if not os.path.exists(path):
        return None
    with open(path) as file:
        value = json.load(file)
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def run_folder_of(path):
    """The run folder a classifier path belongs to (the folder, or the file's folder), or None."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    return folder if os.path.exists(os.path.join(folder, "run.json")) else None
