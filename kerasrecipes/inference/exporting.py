"""`export`: a trained model as a TensorFlow SavedModel, an ONNX file or a LiteRT file, checked.

The conversion is Keras' own (`Model.export`; for the SavedModel its
`keras.export.ExportArchive`, with a `class_names` signature added); what
this adds is the check a user would otherwise write: the exported artifact
is loaded with its own runtime (TensorFlow, onnxruntime, LiteRT) and run on
a batch, and its output compared with the Keras model's. Above `TOLERANCE`
relative difference the artifact is removed and the export fails. The
preprocessing and the resize are inside the model, so every artifact takes
RGB images in [0, 255], float32, `(batch, height, width, 3)`, of any size.
LiteRT's too: exported with a dynamic height and width, its resize runs on
whatever size its input tensor is resized to (its default shape is 1x1).
On PyTorch, where Keras exports LiteRT with static shapes, it takes the
model's image size only, and the command says so.

Beside the artifacts, `labels.txt` holds the class names, one a line in
output order, for a reader without JSON; `metadata.json` is the record:
what export wrote in the folder, the task, the class names, the input the
artifacts take, the preprocessing inside them and the run folder or
`.keras` file they came from. The export is made in a fresh folder of its
own and moved into place only once checked, after the record lists it;
`overwrite=True` replaces a file the user names, but never deletes a folder,
nor replaces a `labels.txt`, that the record does not list.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import warnings

import keras
import numpy as np

from kerasrecipes._compat import sublayers
from kerasrecipes.files import write_atomically, write_json
from kerasrecipes.inference.classifier import ImageClassifier
from kerasrecipes.inference.detector import ObjectDetector
from kerasrecipes.inference.segmenter import ImageSegmenter
from kerasrecipes.precision import rebuilt

FORMATS = {
    # our name: (Keras' format, the file or folder written, packages it needs)
    "saved_model": ("tf_saved_model", "saved_model", ()),
    "onnx": ("onnx", "model.onnx", ("tf2onnx", "onnx", "onnxruntime")),
    "litert": ("litert", "model.tflite", ("ai_edge_litert",)),
}
TOLERANCE = 1e-4
# What export wrote in a folder, with the class names, the input and where the model came from.
EXPORT_RECORD = "metadata.json"
# The record kerasrecipes wrote before metadata.json (issue 35). Still read, so that
# `--overwrite` over an export folder of an earlier version replaces what that version wrote;
# merged into metadata.json and removed at the next export there.
EARLIER_RECORD = "export.json"
# The class names, one a line in output order: what a label file reader (LiteRT's tools) expects.
LABELS = "labels.txt"
# Keras exports a LiteRT graph with dynamic height and width on these backends (on PyTorch it
# replaces every None with 1); on the others the artifact takes the model's image size only.
LITERT_ANY_SIZE_BACKENDS = ("tensorflow",)
TASKS = {
    ImageClassifier: "classification",
    ImageSegmenter: "segmentation",
    ObjectDetector: "detection",
}


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
        input_shape: the input the artifact takes: `(None, None, None, 3)` for
            any batch and size, a height and width where it takes that size only.
    """

    path: str
    format: str
    max_abs_difference: float
    relative_difference: float
    check_images: int
    input_shape: tuple = (None, None, None, 3)


def export(model, out_dir, format="saved_model", overwrite=False, check_images=None, source=None):
    """Exports `model` into `out_dir` with Keras' `Model.export`, then checks the artifact.

    Args:
        model: a `kr.ImageClassifier`, `kr.ImageSegmenter` (the masks must also be
            identical per pixel) or `kr.ObjectDetector` (its rows of boxes and class
            probabilities per anchor; non-max suppression is the step after it,
            `kr.inference.select_boxes`).
        out_dir: the folder to write into (created if needed): `saved_model/`,
            `model.onnx` or `model.tflite` there, with `labels.txt` and `metadata.json`.
        format: "saved_model", "onnx" or "litert". Defaults to "saved_model".
        overwrite: replace an existing artifact of that name (a folder only
            if an earlier export wrote it). Defaults to False.
        check_images: `(n, h, w, 3)` images in [0, 255] to compare outputs on;
            None for 8 seeded random images at the model's size. Defaults to None.
        source: the run folder or `.keras` file `model` was loaded from, recorded in
            `metadata.json` (the command passes its argument); None if not known.
            Defaults to None.

    Returns:
        an `ExportResult`.

    Raises:
        ExportError: a missing exporter package (the message names the
            `export` extra), a class name `labels.txt` cannot hold, or an
            artifact that disagrees with the model.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}. Received: {format!r}")
    _, name, packages = FORMATS[format]
    _require(packages, format)
    labels = _labels_text(model.class_names)
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, name)
    _check_destination(out_dir, path, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    input_shape = _artifact_input_shape(model, format)
    # A fresh folder of our own to write in: nothing of the user's is in it, or deleted with it.
    scratch = tempfile.mkdtemp(prefix=".export-", dir=out_dir)
    try:
        writing = os.path.join(scratch, name)
        result = _export_checked(model, writing, format, check_images, input_shape)
        # First the record, then what it lists: what is in place is always listed.
        _record(out_dir, name, format, model, input_shape, source)
        write_atomically(os.path.join(out_dir, LABELS), labels.encode("utf-8"))
        if os.path.isdir(path) and not os.path.islink(path):
            # An earlier export of ours (the record lists it): moved aside, deleted below.
            os.replace(path, os.path.join(scratch, f"old.{name}"))
        os.replace(result.path, path)  # a file or a link: replaced in one step
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dataclasses.replace(result, path=path)


def _labels_text(class_names):
    """`labels.txt`'s text, one class name a line. A name holding a line break is refused before
    any work: the file could not hold it, and a reader would count one class too many."""
    for name in class_names:
        if "".join(name.splitlines()) != name:
            raise ExportError(
                f"The class name {name!r} holds a line break, which {LABELS} (one class name "
                "a line) cannot hold; rename that class and export again."
            )
    return "".join(f"{name}\n" for name in class_names)


def _artifact_input_shape(model, format):
    """The input the artifact takes: images of any size (the resize is inside), but LiteRT's
    only at the model's image size where Keras exports it with static shapes."""
    if format == "litert" and keras.backend.backend() not in LITERT_ANY_SIZE_BACKENDS:
        return (None, *model.image_size, 3)
    return (None, None, None, 3)


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
    _check_own_files(out_dir)
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} exists already; pass overwrite=True (--overwrite) to replace it, or "
            "another output folder."
        )
    if (os.path.isdir(path) or os.path.islink(path)) and os.path.basename(path) not in _listed(
        out_dir
    ):
        raise FileExistsError(
            f"{path} was not written by kerasrecipes export ({EXPORT_RECORD} does not list "
            "it), so --overwrite leaves it alone; move it away or choose another --out."
        )


def _check_own_files(out_dir):
    """`metadata.json` and `labels.txt`, rewritten at every export, are ours if they exist: a
    record export wrote, and the labels it lists. Someone else's are left alone."""
    record_path = os.path.join(out_dir, EXPORT_RECORD)
    record = _read_record(record_path)
    if os.path.lexists(record_path) and record is None:
        raise FileExistsError(
            f"{record_path} was not written by kerasrecipes export (it is not its record), "
            "and export writes its record there; move it away or choose another --out."
        )
    labels = os.path.join(out_dir, LABELS)
    if os.path.lexists(labels) and (record or {}).get("labels") != LABELS:
        raise FileExistsError(
            f"{labels} was not written by kerasrecipes export ({EXPORT_RECORD} does not list "
            "it), and export writes the class names there; move it away or choose another --out."
        )


def _listed(out_dir):
    """The artifacts the folder's record lists; with those of an `export.json` an earlier
    version wrote, still read so that `--overwrite` replaces what that version exported."""
    listed = {}
    for name in (EARLIER_RECORD, EXPORT_RECORD):  # metadata.json's entries win
        listed.update((_read_record(os.path.join(out_dir, name)) or {}).get("artifacts", {}))
    return listed


def _read_record(path):
    """The record at `path` as a dict with its `artifacts`; None if it is missing or is not one."""
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
        record["artifacts"] = dict(record["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def _record(out_dir, name, format, model, input_shape, source):
    """`metadata.json`: what export wrote here, and what using it needs: the task, the class
    names, the input the artifacts take, what they do to it and where the model came from."""
    artifacts = _listed(out_dir)
    artifacts[name] = {"format": format, "input_shape": list(input_shape)}
    height, width = model.image_size
    write_json(
        os.path.join(out_dir, EXPORT_RECORD),
        {
            "artifacts": artifacts,
            "labels": LABELS,
            "task": next((name for kind, name in TASKS.items() if isinstance(model, kind)), None),
            "class_names": list(model.class_names),
            "input": {"dtype": "float32", "range": [0, 255], "channels": "RGB"},
            "image_size": [height, width],
            "preprocessing": _preprocessing(model),
            "source": None if source is None else os.path.abspath(source),
        },
    )
    earlier = os.path.join(out_dir, EARLIER_RECORD)
    if _read_record(earlier) is not None:  # its artifacts are listed above: one record from now
        os.remove(earlier)


def _preprocessing(model):
    """What the artifacts do to the images themselves, so that a caller does none of it."""
    height, width = model.image_size
    return {
        "resize_inside": True,
        "resize_to": [height, width],
        "interpolation": model.get_layer("resize").interpolation,
        "normalization_inside": True,
        # The network's `kr.layers.ImagePreprocessing` mode, where the model records it.
        "normalization": getattr(model, "preprocessing", None),
    }


def _export_checked(model, writing, format, check_images, input_shape):
    """Exports `model` to `writing` and compares the artifact's output with the model's."""
    height, width = model.image_size
    if check_images is None:
        check_images = np.random.default_rng(0).uniform(0, 255, (8, height, width, 3))
    check_images = np.asarray(check_images, "float32")
    class_names = list(model.class_names)
    model = computing_in_float32(model)
    # Also the model's first call, which a freshly loaded model needs before `export`.
    expected = np.asarray(model.predict_on_batch(check_images), "float32")
    if format == "saved_model":
        _write_saved_model(model, writing, input_shape, class_names)
    else:
        _write_with_keras(model, writing, format, input_shape)
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
    return ExportResult(writing, format, difference, relative, len(check_images), input_shape)


def _write_saved_model(model, writing, input_shape, class_names):
    """What `Model.export` writes (its `serve` endpoint, also `serving_default`), plus a
    `class_names` signature: a server holding only the SavedModel can name its outputs."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    # As `Model.export` makes it: the input's name is the signature's input key.
    images = keras.InputSpec(shape=input_shape, dtype="float32", name=model.inputs[0].name)
    archive.track_and_add_endpoint("serve", model, [images])
    names = tf.function(lambda: tf.constant(class_names, tf.string), input_signature=[])
    names.get_concrete_function()  # traced: an endpoint without an input signature must be
    archive.add_endpoint("class_names", names)
    archive.write_out(writing, verbose=False)


def _write_with_keras(model, writing, format, input_shape):
    """ONNX and LiteRT through `Model.export`: ONNX's input as Keras infers it (any size, named
    `images` as the model's input), LiteRT's at `input_shape` (static where the backend needs)."""
    signature = [keras.InputSpec(shape=input_shape, dtype="float32")]
    if format == "onnx":
        signature = None
    with warnings.catch_warnings():  # Keras' tf2onnx patch probes numpy's removed `np.object`
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        model.export(writing, format=FORMATS[format][0], verbose=False, input_signature=signature)


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
