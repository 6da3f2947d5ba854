"""`kerasrecipes evaluate`: a trained model on a test folder, its figures printed and written."""

import os

from kerasrecipes.finetune import pipeline
from kerasrecipes.finetune.run_folder import is_inside
from kerasrecipes.inference import evaluate as evaluate_model
from kerasrecipes.inference import load_model
from kerasrecipes.inference.classifier import run_folder_of


def run(args):
    """The `evaluate` command: prints the report and writes it to the run folder or --out."""
    out = args.out or run_folder_of(args.model)
    if out is not None and is_inside(out, args.data):
        raise ValueError(f"--out {out} is inside the test folder {args.data}; give another --out.")
    model = load_model(args.model)
    with pipeline.quiet_scan_log():
        evaluation = evaluate_model(
            model, args.data, tta=args.tta, batch_size=args.batch_size, out_dir=out
        )
    print(evaluation.summary())
    for path, reason in evaluation.skipped[:10]:
        print(f"  skipped {os.path.relpath(path, args.data)}: {reason}")
    if out is None:
        print("Nothing written: the model is not in a run folder; give --out DIR for the files.")
    else:
        print(f"Wrote {', '.join(evaluation.files)} in {out}/")
