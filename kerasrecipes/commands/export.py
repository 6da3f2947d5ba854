"""`kerasrecipes export`: a trained model as a SavedModel, ONNX or LiteRT file, checked."""

import os

from kerasrecipes.inference import export as export_model
from kerasrecipes.inference import load_model
from kerasrecipes.inference.classifier import run_folder_of


def run(args):
    """The `export` command: writes the artifact and prints its agreement with the Keras model."""
    out = args.out
    if out is None:
        folder = run_folder_of(args.model)
        stem = os.path.splitext(args.model)[0]
        out = os.path.join(folder, "export") if folder else f"{stem}_export"
    model = load_model(args.model)
    result = export_model(model, out, args.format, overwrite=args.overwrite)
    print(
        f"Exported {args.format} to {result.path}; on {result.check_images} images its output "
        f"differs from the Keras model's by at most {result.max_abs_difference:.2e} "
        f"({result.relative_difference:.2e} relative). The class names and the input it "
        f"takes are in {os.path.join(out, 'export.json')}"
    )
