"""Classification: a new head on the pooled features of the backbone.

The head is the lecture's (and the Keras transfer-learning guide's): global
pooling, dropout, one dense softmax layer. The data are class folders
(`kr.data.image_folder`); `balance` reweights or oversamples rare classes,
MixUp and CutMix mix one-hot labels. The run folder holds `confusion.png`
and `model.keras`, a `kr.ImageClassifier` that knows its class names.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from kerasrecipes import plots
from kerasrecipes._compat import sublayers
from kerasrecipes.cards import find_card, list_models, model_card
from kerasrecipes.data.augment import PRESETS, augment
from kerasrecipes.data.demo import make_demo_dataset
from kerasrecipes.data.folder import image_folder
from kerasrecipes.data.imbalance import class_weights, oversample
from kerasrecipes.files import replaced_atomically
from kerasrecipes.inference.classifier import ImageClassifier
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.losses import SparseCategoricalCrossentropy
from kerasrecipes.model_parts import HEAD_PREFIX, record_head
from kerasrecipes.models.common import classification_head
from kerasrecipes.tasks.base import Task, TaskDefaults, register_task

MIXING_PRESETS = ("mixup", "cutmix")


class Classification(Task):
    name = "classification"
    main_metric = "accuracy"
    metric_words = "accuracy"
    defaults = TaskDefaults(demo_image_size=32)
    run_files = ("confusion.png",)
    result_keys = ("val_accuracy", "confusion_matrix")

    def check_config(self, config, fail):
        if isinstance(config.augment, str) and config.augment not in PRESETS:
            fail("augment", f"must be one of {list(PRESETS)} or an augmentation layer")

    def demo_data(self, cache_dir):
        folder = make_demo_dataset(
            os.path.join(cache_dir, "demo", "target"), task="target", bad_files=True
        )
        return folder, "two classes of shapes, with 4 unreadable files"

    def read(self, folder, config):
        return image_folder(
            folder,
            image_size=(config.image_size, config.image_size),
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            seed=config.seed,
        )

    demo_run_suffix = ""

    def describe_data(self, info):
        counts = ", ".join(f"{name} {count}" for name, count in info.counts.items())
        return (
            f"{sum(info.counts.values())} training images ({counts}), "
            f"{sum(info.val_counts.values())} validation images"
        ) + "".join(f". WARNING: {line}" for line in _small_classes(info))

    def training_data(self, train_ds, val_ds, config, class_counts, num_classes):
        train_ds, class_weight = balanced(
            train_ds, config.balance, class_counts, num_classes, config.seed
        )
        population_ds = train_ds  # what PreciseBN reads: the training data, unaugmented
        if config.augment in MIXING_PRESETS and not _one_hot(train_ds):
            # MixUp and CutMix mix the labels too, so they need them one-hot.
            train_ds, val_ds = (to_one_hot(d, num_classes) for d in (train_ds, val_ds))
        if config.augment is not None:
            size = tuple(train_ds.element_spec[0].shape[1:3])
            train_ds = augment(train_ds, config.augment, image_size=size, seed=config.seed)
        return train_ds, val_ds, population_ds, class_weight

    def build_model(self, backbone, num_classes, config, train_ds):
        check_image_size(backbone, train_ds)
        return classifier(
            backbone, num_classes, config.preprocessing, config.pooling, config.dropout
        )

    def loss(self, config, train_ds):
        if _one_hot(train_ds):
            return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        return SparseCategoricalCrossentropy(label_smoothing=config.label_smoothing)

    def metrics(self, num_classes):
        return ["accuracy"]

    def save_results(self, folder, model, val_ds, class_names, config, backbone):
        matrix = None
        if val_ds is not None:
            labels, predictions = predict_labels(model, val_ds)
            matrix = plots.confusion_matrix(labels, predictions, model.output_shape[-1])
            plots.plot_confusion(matrix, class_names, folder.file("confusion.png"))
        save_inference_model(
            model,
            folder.file("model.keras"),
            class_names=class_names,
            source={"model": config.model, "weights": config.weights, "backbone": backbone},
        )
        if matrix is None:
            return {}
        return {
            "val_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "confusion_matrix": matrix.tolist(),
        }

    def plot_batch(self, images, targets, class_names, path):
        titles = [_label_words(np.asarray(target), class_names) for target in targets]
        return plots.plot_image_grid(images, titles, path)

    def summary_lines(self, report):
        if report.get("val_accuracy") is None:
            return []
        return [f"Final validation accuracy {report['val_accuracy']:.3f} (best weights restored)"]


def _label_words(target, class_names):
    """A label as words: its class, or for a mixed one-hot label (MixUp, CutMix) its two
    largest classes with their weights."""
    if target.ndim == 0:
        return class_names[int(target)]
    order = np.argsort(target)[::-1]
    if target[order[1]] < 0.01:
        return class_names[int(order[0])]
    return " + ".join(f"{class_names[int(i)]} {target[i]:.2f}" for i in order[:2])


def _small_classes(info):
    """What the scan logs about classes with fewer than 2 images in a split, for the command,
    which keeps the scan's log off the terminal."""
    small = [
        f"{name!r} ({count} {split})"
        for split, counts in (("training", info.counts), ("validation", info.val_counts))
        if counts
        for name, count in counts.items()
        if count < 2
    ]
    if not small:
        return []
    return [
        f"classes with fewer than 2 images in a split: {', '.join(small)}; their accuracy and "
        "recall rest on one image or none"
    ]


def classifier(backbone, num_classes, preprocessing=None, pooling="avg", dropout=0.0):
    """Images -> [preprocessing] -> backbone -> head_pool -> head_dropout -> head_dense
    (`kr.models.common.classification_head`, in float32)."""
    if backbone.name.startswith(HEAD_PREFIX):
        raise ValueError(
            f"fine_tune: the backbone is named {backbone.name!r}; names starting with "
            f"{HEAD_PREFIX!r} are kept for the new classifier. Rename the backbone "
            "(backbone.name = ...)."
        )
    inputs = keras.Input(backbone.input_shape[1:], name="images")
    x = inputs
    if preprocessing not in ("auto", "none", None):
        x = ImagePreprocessing(preprocessing, name="preprocessing")(x)
    x = backbone(x)
    if len(x.shape) not in (2, 4):
        raise ValueError(
            f"fine_tune: the backbone's output has shape {x.shape}; expected a feature map "
            "(batch, height, width, channels) or vectors (batch, features). Build it with "
            "include_top=False."
        )
    outputs = classification_head(
        x,
        num_classes=num_classes,
        include_top=True,
        pooling=pooling,
        dropout=dropout or 0.0,
        classifier_activation="softmax",
        dense_dtype="float32",
    )
    model = keras.Model(inputs, outputs, name=f"{backbone.name}_finetuned")
    return record_head(model, x)


def save_inference_model(model, path, class_names=None, source=None):
    """Saves `model` as a `kr.ImageClassifier` for inference, without optimizer state, atomically.

    A new functional model over the same layers shares the weights without a
    copy and has no optimizer; the classifier around it records the class
    names, input size, preprocessing and `source`, so
    `kr.load_classifier(run_folder)` needs nothing else.
    """
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) == 1 and len(outputs) == 1:  # one tensor each, called with one tensor
        inputs, outputs = inputs[0], outputs[0]
    inference = keras.Model(inputs, outputs, name=model.name)
    classifier = ImageClassifier(
        inference,
        class_names=class_names,
        preprocessing=preprocessing_of(model, (source or {}).get("model")),
        source=source,
    )
    with replaced_atomically(path, ".keras") as writing:
        classifier.save(writing)


def preprocessing_of(model, model_name=None):
    """The input scaling inside `model`: its `ImagePreprocessing` layer's mode, else the card's."""
    for layer in sublayers(model, recursive=True):
        if isinstance(layer, ImagePreprocessing):
            return layer.mode
    card = model_card(model_name) if model_name in list_models() else find_card(model)
    return card.preprocessing if card else None


def check_image_size(backbone, train_ds):
    """A `ValueError` when the images' size is not the one the backbone was built for."""
    expected = tuple(backbone.input_shape[1:3])
    given = tuple(train_ds.element_spec[0].shape[1:3])
    if None in expected or None in given or expected == given:
        return
    raise ValueError(
        f"fine_tune: the training images are {given[0]}x{given[1]} but backbone "
        f"{backbone.name!r} takes {expected[0]}x{expected[1]}. Read the data at the "
        f"backbone's size (kr.data.image_folder(..., image_size={expected})) or load the "
        f"backbone at the data's (kr.load_backbone(..., image_size={given[0]}))."
    )


def predict_labels(model, dataset):
    """`(true labels, predicted labels)` over a dataset of `(images, labels)`, one-hot or not."""
    labels, predictions = [], []
    for images, batch_labels in dataset:
        probabilities = keras.ops.convert_to_numpy(model(images, training=False))
        batch_labels = np.asarray(batch_labels)
        if batch_labels.ndim == 2:
            batch_labels = batch_labels.argmax(-1)
        labels.append(batch_labels.reshape(-1))
        predictions.append(probabilities.argmax(-1))
    if not labels:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(labels), np.concatenate(predictions)


def balanced(train_ds, balance, class_counts, num_classes, seed):
    """`(dataset, class_weight)` for `balance` None, "class_weight" or "oversample"."""
    if balance is None:
        return train_ds, None
    counts = _counts(class_counts, train_ds, num_classes)
    if balance == "class_weight":
        return train_ds, class_weights(counts)
    return oversample(train_ds, counts, seed=seed), None


def _counts(class_counts, train_ds, num_classes):
    if class_counts is not None:
        if isinstance(class_counts, dict):
            return [int(count) for count in class_counts.values()]
        return [int(count) for count in class_counts]
    counts = np.zeros(num_classes, dtype=int)
    for _, labels in train_ds:
        labels = np.asarray(labels)
        labels = labels.argmax(-1) if labels.ndim == 2 else labels.reshape(-1)
        counts += np.bincount(labels.astype(int), minlength=num_classes)[:num_classes]
    return counts.tolist()


def _one_hot(dataset):
    return len(dataset.element_spec[1].shape) == 2


def to_one_hot(dataset, num_classes):
    if dataset is None:
        return None
    return dataset.map(lambda images, labels: (images, tf.one_hot(labels, num_classes)))


register_task(Classification())
