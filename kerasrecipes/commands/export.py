"""`kerasrecipes export`: a trained model as a SavedModel, ONNX or LiteRT file, checked."""

import os

from kerasrecipes.inference import export as export_model
from kerasrecipes.inference import load_model
from kerasrecipes.inference.classifier import run_folder_of
from kerasrecipes.inference.exporting import EXPORT_RECORD, LABELS


def run(args):
    """The `export` command: writes the artifact and prints its agreement with the Keras model."""
    out = args.out
    if out is None:
        folder = run_folder_of(args.model)
        stem = os.path.splitext(args.model)[0]
        out = os.path.join(folder, "export") if folder else f"{stem}_export"
    model = load_model(args.model)
    result = export_model(model, out, args.format, overwrite=args.overwrite, source=args.model)
    print(
        f"Exported {args.format} to {result.path}; on {result.check_images} images its output "
        f"differs from the Keras model's by at most {result.max_abs_difference:.2e} "
        f"({result.relative_difference:.2e} relative). The class names are in "
        f"{os.path.join(out, LABELS)}; with the input it takes, the task and the model it came "
        f"from, in {os.path.join(out, EXPORT_RECORD)}"
    )
    print(_input_note(result))


def _input_note(result):
    """What a caller must do before calling the artifact: resize its input tensor (LiteRT's
    default input shape is 1 where the input is dynamic), or resize its images."""
    name = os.path.basename(result.path)
    _, height, width, _ = result.input_shape
    if height is not None:  # LiteRT exported with static shapes (on PyTorch)
        return (
            f"{name} takes {height}x{width} images (height x width) only; resize before calling it."
        )
    if result.format == "litert":
        return (
            f"{name} takes images of any size: resize its input tensor to your batch's shape "
            "first (interpreter.resize_tensor_input; get_signature_runner() does it for you)."
        )
    return f"{name} takes images of any size and batch: the resize is inside the graph."
