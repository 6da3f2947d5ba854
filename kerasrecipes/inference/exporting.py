"""`export`: a trained model as a TensorFlow SavedModel, an ONNX file or a LiteRT file, checked.

The conversion is Keras' own `Model.export`; what this adds is the check a
user would otherwise write: the exported artifact is loaded with its own
runtime (TensorFlow, onnxruntime, LiteRT) and run on a batch, and its output
compared with the Keras model's. Above `TOLERANCE` relative difference the
artifact is removed and the export fails. The preprocessing and the resize
are inside the model, so the artifact takes RGB images in [0, 255],
float32, `(batch, height, width, 3)`; LiteRT's at the model's image size.

Beside the artifacts, `export.json` lists what export wrote in the folder,
the class names in output order and the input the artifacts take. The
export is made in a fresh folder of its own and moved into place only once
checked; `overwrite=True` replaces a file the user names, but never deletes
a folder that `export.json` does not list.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import warnings

import numpy as np

from kerasrecipes._compat import sublayers
from kerasrecipes.files import write_json
from kerasrecipes.inference.segmenter import ImageSegmenter
from kerasrecipes.precision import rebuilt

FORMATS = {
    # our name: (Keras' format, the file or folder written, packages it needs)
    "saved_model": ("tf_saved_model", "saved_model", ()),
    "onnx": ("onnx", "model.onnx", ("tf2onnx", "onnx", "onnxruntime")),
    "litert": ("litert", "model.tflite", ("ai_edge_litert",)),
}
TOLERANCE = 1e-4
# What export wrote in a folder, with the class names and the input the artifacts take.
EXPORT_RECORD = "export.json"


class ExportError(RuntimeError):
    """An export could not be made, or its output disagrees with the Keras model."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how close the artifact's output is to the Keras model's.

    Attributes:
        path: the file or folder written.
        format: "saved_model", "onnx" or "litert".
        max_abs_difference: the largest absolute difference of the class
            probabilities on the check batch.
        relative_difference: `max_abs_difference` over the largest probability.
        check_images: how many images the check ran.
    """

    path: str
    format: str
    max_abs_difference: float
    relative_difference: float
    check_images: int


def export(model, out_dir, format="saved_model", overwrite=False, check_images=None):
    """Exports `model` into `out_dir` with Keras' `Model.export`, then checks the artifact.

    Args:
        model: a `kr.ImageClassifier`, `kr.ImageSegmenter` (the masks must also be
            identical per pixel) or `kr.ObjectDetector` (its rows of boxes and class
            probabilities per anchor; non-max suppression is the step after it,
            `kr.inference.select_boxes`).
        out_dir: the folder to write into (created if needed): `saved_model/`,
            `model.onnx` or `model.tflite` there.
        format: "saved_model", "onnx" or "litert". Defaults to "saved_model".
        overwrite: replace an existing artifact of that name (a folder only
            if an earlier export wrote it). Defaults to False.
        check_images: `(n, h, w, 3)` images in [0, 255] to compare outputs on;
            None for 8 seeded random images at the model's size. Defaults to None.

    Returns:
        an `ExportResult`.

    Raises:
        ExportError: a missing exporter package (the message names the
            `export` extra), or an artifact that disagrees with the model.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}. Received: {format!r}")
    keras_format, name, packages = FORMATS[format]
    _require(packages, format)
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, name)
    _check_destination(out_dir, path, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    # A fresh folder of our own to write in: nothing of the user's is in it, or deleted with it.
    scratch = tempfile.mkdtemp(prefix=".export-", dir=out_dir)
    try:
        result = _export_checked(model, os.path.join(scratch, name), format, check_images)
        _record(out_dir, name, format, model)  # first: what is in place is always listed
        if os.path.isdir(path) and not os.path.islink(path):
            # An earlier export of ours (export.json lists it): moved aside, deleted below.
            os.replace(path, os.path.join(scratch, f"old.{name}"))
        os.replace(result.path, path)  # a file or a link: replaced in one step
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dataclasses.replace(result, path=path)


def _check_destination(out_dir, path, overwrite):
    """Before any work: a folder to write in, and nothing replaced that the user did not allow."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(
            f"{out_dir} is a file; export writes a folder (saved_model/, model.onnx, ...). "
            "Choose another --out."
        )
    parent = out_dir if os.path.isdir(out_dir) else os.path.dirname(os.path.abspath(out_dir))
    if os.path.isdir(parent) and not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{parent} is not writable; choose another --out.")
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} exists already; pass overwrite=True (--overwrite) to replace it, or "
            "another output folder."
        )
    if (os.path.isdir(path) or os.path.islink(path)) and os.path.basename(path) not in _written(
        out_dir
    ):
        raise FileExistsError(
            f"{path} was not written by kerasrecipes export ({EXPORT_RECORD} does not list "
            "it), so --overwrite leaves it alone; move it away or choose another --out."
        )


def _written(out_dir):
    record = os.path.join(out_dir, EXPORT_RECORD)
    try:
        with open(record) as file:
            return set(json.load(file)["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _record(out_dir, name, format, model):
    """`export.json`: what export wrote here, with the class names and the input the model takes."""
    record = os.path.join(out_dir, EXPORT_RECORD)
    try:
        with open(record) as file:
            existing = json.load(file)
        artifacts = dict(existing["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        artifacts = {}
    height, width = model.image_size
    # LiteRT runs the static size it was exported at; the others resize any size inside.
    size = [height, width] if format == "litert" else [None, None]
    artifacts[name] = {"format": format, "input_shape": [None, *size, 3]}
    write_json(
        record,
        {
            "artifacts": artifacts,
            "class_names": list(getattr(model, "class_names", None) or []),
            "input": {"dtype": "float32", "range": [0, 255], "channels": "RGB"},
            "image_size": [height, width],
        },
    )


def _export_checked(model, writing, format, check_images):
    """Exports `model` to `writing` and compares the artifact's output with the model's."""
    keras_format = FORMATS[format][0]
    height, width = model.image_size
    if check_images is None:
        check_images = np.random.default_rng(0).uniform(0, 255, (8, height, width, 3))
    check_images = np.asarray(check_images, "float32")
    model = computing_in_float32(model)
    # Also the model's first call, which a freshly loaded model needs before `export`.
    expected = np.asarray(model.predict_on_batch(check_images), "float32")
    signature = None
    if format == "litert":  # LiteRT runs one static size best: the one the model was trained at
        import keras

        signature = [keras.InputSpec(shape=(None, height, width, 3), dtype="float32")]
    with warnings.catch_warnings():  # Keras' tf2onnx patch probes numpy's removed `np.object`
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        model.export(writing, format=keras_format, verbose=False, input_signature=signature)
    actual = run_exported(writing, format, check_images)
    difference = float(np.max(np.abs(actual - expected)))
    relative = difference / max(float(np.max(np.abs(expected))), 1e-12)
    if relative > TOLERANCE:
        raise ExportError(
            f"The {format} export disagrees with the Keras model: max difference {difference:.3g} "
            f"({relative:.3g} relative, above {TOLERANCE:g}); nothing was written."
        )
    if isinstance(model, ImageSegmenter):
        changed = int(np.sum(actual.argmax(-1) != expected.argmax(-1)))
        if changed:
            raise ExportError(
                f"The {format} export's masks differ from the Keras model's in {changed} "
                "pixels; nothing was written."
            )
    return ExportResult(writing, format, difference, relative, len(check_images))


def computing_in_float32(model):
    """`model`, or a copy with its weights computing in float32 if any layer computes otherwise.

    A model trained with `precision="mixed_bfloat16"` (`"auto"` on AMX CPUs
    and recent GPUs) keeps that policy in its `.keras` file. Its exports
    break: tf2onnx mixes float16 and bfloat16 types in one node, and LiteRT
    has no bfloat16 division kernel. Mixed precision is a training setting;
    the exported artifact computes in float32, as servers expect.
    """
    if all(layer.dtype_policy.name == "float32" for layer in sublayers(model, recursive=True)):
        return model
    return rebuilt(model, "float32")


def run_exported(path, format, images):
    """Runs an exported artifact on `images` with its own runtime; returns its output."""
    images = np.asarray(images, "float32")
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # kept: its functions need the object alive
        return np.asarray(loaded.serve(tf.constant(images)))
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _require(packages, format):
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f'Exporting to {format} needs {", ".join(missing)}: pip install "kerasrecipes[export]".'
        )
