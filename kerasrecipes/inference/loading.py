"""`load_model`: whatever a run folder holds, as the product of its task; `load_classifier`.

A run's `model.keras` is a `kr.ImageClassifier`, a `kr.ImageSegmenter` or a
`kr.ObjectDetector`, each carrying its class names and input size. Earlier
runs saved the bare network; it is wrapped here with the class names of the
run folder's `report.json`.
"""

import os
import re
import zipfile

import keras

from kerasrecipes import timm
from kerasrecipes.inference.classifier import ImageClassifier, report_value
from kerasrecipes.inference.detector import ObjectDetector
from kerasrecipes.inference.segmenter import ImageSegmenter

MODEL_FILE = "model.keras"
PRODUCTS = (ImageClassifier, ImageSegmenter, ObjectDetector)


def load_model(path):
    """Loads the model of a run folder (its `model.keras`) or a `.keras` file.

    Args:
        path: a run folder of `kerasrecipes finetune` / `kr.run` /
            `kr.fine_tune(out_dir=)`, or a `.keras` file.

    Returns:
        a `kr.ImageClassifier`, `kr.ImageSegmenter` or `kr.ObjectDetector`.
    """
    file = model_file(path)
    model = read_keras_file(file)
    if isinstance(model, PRODUCTS):
        return model
    folder = os.path.dirname(file)
    class_names = report_value(folder, "data", "class_names")
    if hasattr(model, "anchor_generator"):  # a bare RetinaNet
        return ObjectDetector(model, class_names=class_names)
    if len(model.output_shape) == 4:  # per-pixel probabilities: a bare segmentation network
        return ImageSegmenter(model, class_names=class_names)
    return ImageClassifier(model, class_names=class_names)


def read_keras_file(file):
    """`keras.saving.load_model(file, compile=False)`, its failures said plainly: a file that is
    not a whole `.keras` archive, and what Keras' safe mode refused."""
    if not zipfile.is_zipfile(file):
        raise ValueError(
            f"{file} is not a .keras file Keras can read: it is not a zip archive (a copy cut "
            "short, or another format). Copy it again, or train again."
        )
    try:
        return keras.saving.load_model(file, compile=False)
    except (TypeError, ValueError) as error:
        text = str(error)
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            found = re.search(r"(Lambda|lambda)\w*", text)
            raise ValueError(
                f"{file} holds {'a ' + found.group() + ' layer, ' if found else ''}code that "
                "would run when the model loads, and Keras' safe mode refused it. If you trust "
                "the file, load it yourself with keras.saving.load_model(path, safe_mode=False) "
                "and pass the model on."
            ) from None
        raise ValueError(f"{file} could not be loaded as a Keras model: {text[:300]}") from None
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"{file} is a damaged .keras archive ({type(error).__name__}: {error}). Copy it "
            "again, or train again."
        ) from None


def model_file(path):
    """The `.keras` file of `path` (a run folder or the file); errors say what is missing."""
    path = os.fspath(path)
    file = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    if not os.path.exists(file):
        if os.path.isdir(path):
            raise FileNotFoundError(
                f"{path} has no {MODEL_FILE}: it is not a run folder, or its run has not "
                "finished (run the same finetune command again to finish it)."
            )
        raise FileNotFoundError(f"No such model file or run folder: {path}.")
    if not file.endswith(".keras"):
        raise ValueError(f"{file} is not a .keras file; give a run folder or a .keras file.")
    return file


def load_classifier(path):
    """Loads a classifier from a `.keras` file, a run folder (its `model.keras`), or a timm
    checkpoint.

    A file saved as an `ImageClassifier` needs nothing else. A plain Keras
    classifier (an earlier run's `model.keras`, any model with a softmax
    output) is wrapped, with the class names of the run folder's
    `report.json` when there is one. A segmentation or detection run's
    model is an error that says to use `kr.load_model`. A timm checkpoint
    ("timm:resnet50.a1_in1k", or a `.safetensors` path) becomes the ImageNet
    classifier it is: ImageNet's class names, timm's input size, central
    crop and interpolation.

    Args:
        path: a run folder of `kerasrecipes finetune` / `kr.fine_tune(out_dir=)`,
            a `.keras` file, or a timm checkpoint.

    Returns:
        an `ImageClassifier`.
    """
    if timm.is_timm_weights(path):
        return timm_classifier(os.fspath(path))
    model = load_model(path)
    if not isinstance(model, ImageClassifier):
        raise ValueError(
            f"{path} is not a classifier: it holds a kr.{type(model).__name__}. Load it with "
            "kr.load_model(...), which returns whichever model a run holds."
        )
    return model


def timm_classifier(weights):
    """The `ImageClassifier` of the timm checkpoint `weights`, evaluated as timm evaluates it."""
    from kerasrecipes.registry import create_model

    checkpoint = timm.resolve(weights)
    if checkpoint.num_classes == 0:
        raise ValueError(
            f"{weights} has no classifier (timm's num_classes is 0: features only, e.g. a "
            "self-supervised pre-training), so it cannot classify. Fine-tune it on your "
            "classes (--weights), or pick a checkpoint with an ImageNet head "
            "(`kerasrecipes models --weights`)."
        )
    pretrained = checkpoint.pretrained
    network = create_model(checkpoint.architecture.model, weights=weights)
    return ImageClassifier(
        network,
        class_names=timm.class_names(checkpoint.num_classes),
        image_size=(pretrained.input_size, pretrained.input_size),
        preprocessing=pretrained.preprocessing,
        source={
            "model": checkpoint.architecture.model,
            "weights": weights,
            "timm_architecture": checkpoint.config["architecture"],
            "license": pretrained.license,
        },
        crop_fraction=pretrained.crop_pct,
        interpolation=pretrained.interpolation,
        name=f"{checkpoint.architecture.model}_classifier",
    )
