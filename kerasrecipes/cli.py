"""The `kerasrecipes` command: `finetune` a backbone on a folder of images, then `predict`,
`evaluate` and `export` with the result; list the `models`.

    kerasrecipes finetune --data PetImages/ --model efficientnet_b0 --out runs/pets
    kerasrecipes finetune        # no --data: the built-in demo, offline
    kerasrecipes predict runs/pets photo.jpg more_photos/ --top-k 2 --output preds.csv
    kerasrecipes evaluate runs/pets --data PetImagesTest/ --tta
    kerasrecipes export runs/pets --format onnx
    kerasrecipes models 'resnet*'

The options of `finetune` are generated from `kr.FineTuneConfig`'s fields.
A run folder holds `report.json` (the resolved config, accuracy per phase,
timings, skipped files), `history.csv`, `curves.png`, `confusion.png`,
`model.keras` (a `kr.ImageClassifier`: it knows its class names) and the
backups that make an interrupted run resume: run the same command again.
A finished run is not retrained (`--restart` does). Errors are one line on
stderr and exit code 1 (`--debug` shows the traceback and TensorFlow's log
lines). `--help` and `models` do not import TensorFlow.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
import warnings

from kerasrecipes.finetune.config import AUTO_LR, FineTuneConfig, cli_flag

DEMO_OUT = os.path.join("runs", "demo")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerasrecipes",
        description="Fine-tune image classifiers and browse the model zoo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a backbone on a folder of class folders (or the built-in demo)",
        description="Phase 1 trains a new head on the frozen backbone; phase 2 unfreezes it "
        "and trains with per-layer learning rates. BatchNorm stays frozen. Run the same "
        "command again to resume an interrupted run. Every option below is a field of "
        "kr.FineTuneConfig.",
    )
    finetune.add_argument(
        "--data", help="folder with one subfolder per class; without it, the built-in demo"
    )
    add_config_options(finetune)
    finetune.add_argument(
        "--debug", action="store_true", help="show tracebacks and TensorFlow's own log lines"
    )

    predict = commands.add_parser(
        "predict",
        help="classify images with a trained model",
        description="Classifies image files and folders (with class subfolders or not) with "
        "the model of a run folder or a .keras file. Unreadable files are skipped and listed.",
    )
    predict.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder or a .keras file")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--top-k", type=int, default=1, help="classes per image (default: 1)")
    predict.add_argument(
        "--output", help="write the predictions to this .csv or .json file (else print them)"
    )
    _add_inference_options(predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, per-class figures, confusion matrix and top losses on a test folder",
        description="Evaluates the model on a folder of class folders named as its classes, "
        "and writes evaluation.json, evaluation_confusion.png and evaluation_top_losses.png "
        "into the run folder (or --out).",
    )
    evaluate.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder or a .keras file")
    evaluate.add_argument("--data", required=True, help="the test folder, a subfolder per class")
    evaluate.add_argument(
        "--out", help="folder for the files (default: the run folder; none for a bare .keras file)"
    )
    _add_inference_options(evaluate)

    export = commands.add_parser(
        "export",
        help="export the model as a SavedModel, ONNX or LiteRT file, checked against Keras",
        description="Exports through Keras' Model.export, with the preprocessing inside; then "
        "runs the exported artifact on a batch and fails if it differs from the Keras model "
        "by more than 1e-4 (relative). ONNX and LiteRT need: pip install 'kerasrecipes[export]'.",
    )
    export.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder or a .keras file")
    export.add_argument("--format", choices=("saved_model", "onnx", "litert"), required=True)
    export.add_argument(
        "--out", help="folder to write into (default: RUN/export, or MODEL_export beside a file)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    export.add_argument("--debug", action="store_true", help="show tracebacks")

    ablate = commands.add_parser(
        "ablate",
        help="which bucket of a recipe drives accuracy: architecture, data, regularization, "
        "optimization",
        description="Runs a baseline recipe, each bucket's change alone, all together and all "
        "but one, over several seeds, and writes ablation.json, ablation.md and ablation.png. "
        "Every run is a run folder: run the same command again to resume. Without --change, "
        "the demo study: a plain CNN from scratch with SGD against resnet20 (architecture), "
        "the cifar augmentation (data), weight decay and label smoothing (regularization), "
        "AdamW (optimization); without --data, on 1,000 generated images of 10 shapes.",
    )
    ablate.add_argument("--data", help="folder with one subfolder per class; default: the demo")
    ablate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a FineTuneConfig field of the baseline, over the demo baseline (repeatable)",
    )
    ablate.add_argument(
        "--change",
        action="append",
        default=[],
        metavar="BUCKET:FIELD=VALUE",
        help="a bucket's change, e.g. regularization:weight_decay=5e-4 (repeatable; a bucket may "
        "change several fields); replaces the demo study's changes",
    )
    ablate.add_argument("--seeds", type=int, default=3, help="seeds per variant (default: 3)")
    ablate.add_argument("--out", default="runs/ablation", help="default: runs/ablation")
    ablate.add_argument(
        "--shard", default="0/1", metavar="I/N", help="run only every N-th run from the I-th"
    )
    ablate.add_argument("--debug", action="store_true", help="show tracebacks")

    models = commands.add_parser("models", help="list the model zoo with parameters and FLOPs")
    models.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    models.add_argument(
        "--exact", action="store_true", help="build each model to count it (slow; default: table)"
    )
    models.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _add_inference_options(parser):
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average flips and crops"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def add_config_options(parser):
    """One option per `FineTuneConfig` field, its default shown in the help."""
    for field in dataclasses.fields(FineTuneConfig):
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        flags = [cli_flag(field), *meta["aliases"]]
        shown = "none" if field.default is None else field.default
        help_text = meta["help"]
        if "default" not in help_text:
            help_text += f" (default: {shown})"
        if field.type is bool:
            parser.add_argument(
                *flags,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=help_text,
            )
            continue
        parser.add_argument(
            *flags,
            dest=field.name,
            type=_converter(field),
            default=field.default,
            choices=meta["choices"],
            metavar=field.name.upper() if meta["choices"] is None else None,
            help=help_text,
        )


def _converter(field):
    """Parses an option's text into the field's type; "none" gives None for an optional number
    (a text field keeps "none": `--weights none` means random initialization)."""
    kinds = {int: int, float: float, str: str}
    text = str(field.type)
    base = next((kind for name, kind in (("int", int), ("float", float)) if name in text), str)
    base = kinds.get(field.type, base)
    optional = "None" in text and base is not str
    # A number field that also takes a word (`--head-lr auto`).
    words = (AUTO_LR,) if "str" in text and base is not str else ()

    def convert(value):
        if optional and value.lower() == "none":
            return None
        if value.lower() in words:
            return value.lower()
        try:
            return base(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{cli_flag(field)} takes {'an integer' if base is int else 'a number'}"
                f"{''.join(f' or {word}' for word in words)}{' or none' if optional else ''}; "
                f"got {value!r}"
            ) from None

    convert.__name__ = base.__name__
    return convert


def main(argv=None):
    """Runs the command line `argv` (default `sys.argv[1:]`); returns the exit code."""
    args = build_parser().parse_args(argv)
    # Our lines and Keras' progress lines share stdout; keep them in order when it is a file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    if args.command == "models" and not args.exact:
        return _run(args, list_zoo_table, args.pattern)
    if not args.debug:
        from kerasrecipes._startup import import_tensorflow_quietly

        import_tensorflow_quietly()
    import kerasrecipes

    kerasrecipes._load_api()  # registers every layer a saved model may hold, before loading one
    # Keras 3.15 warns on every fit with a tf.data.Dataset, which it does not shuffle anyway.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    commands = {
        "finetune": finetune,
        "predict": predict,
        "evaluate": evaluate,
        "export": export,
        "ablate": run_ablation,
        "models": lambda args: list_zoo(args.pattern),
    }
    return _run(args, commands[args.command], args)


def _run(args, command, *arguments):
    """Runs `command(*arguments)`; an error becomes one line on stderr and exit code 1."""
    try:
        command(*arguments)
    except KeyboardInterrupt:
        again = "; run the same command again to resume" if args.command == "finetune" else ""
        print(f"kerasrecipes: interrupted{again}.", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"kerasrecipes: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(
        error, (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, RuntimeError)
    ):
        return text
    return f"{type(error).__name__}: {text} (run with --debug for the traceback)"


def finetune(args):
    """The `finetune` command; returns the report of the run folder."""
    import kerasrecipes as kr
    from kerasrecipes.finetune import report as reports
    from kerasrecipes.finetune.config import resolve_config
    from kerasrecipes.finetune.run_folder import default_out_dir, is_inside
    from kerasrecipes.finetune.training import FINISHED_EARLIER

    started = time.perf_counter()
    fields = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(FineTuneConfig)
        if f.metadata.get("cli", True)
    }
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(
            f"--data {args.data}: no such folder. Give "
            + (
                {
                    "segmentation": "a folder with images/, masks/ and classes.txt.",
                    "detection": "a folder with images/ and annotations.json (COCO).",
                }.get(args.task, "a folder with one subfolder per class.")
            )
        )
    config = resolve_config(FineTuneConfig(**fields), demo=args.data is None, data=args.data)
    if config.weights == "none" and args.image_size is None and args.data is not None:
        print(
            f"Image size: {config.image_size}x{config.image_size}, from the data's median image "
            f"size (no pretrained weights fix it; --image-size sets it)"
        )
    out = config.out_dir or (
        demo_out_dir(config.task) if args.data is None else default_out_dir(args.data)
    )
    if args.data is not None and is_inside(out, args.data):
        raise ValueError(
            f"--out {out} is inside the data folder {os.path.realpath(args.data)}; the run's "
            "files would be read as images next time. Give an --out outside it."
        )
    config = config.replace(out_dir=out, verbose=1 if sys.stdout.isatty() else 2)
    data = args.data
    dense = config.task != "classification"
    if data is None and dense:
        from kerasrecipes.data.verify import default_cache_dir

        data = kr.data.make_demo_dataset(
            os.path.join(default_cache_dir(), "demo", "scenes"), task=config.task
        )
        print(f"Demo data: {data} (scenes of 1-4 shapes of 3 classes, VOC masks, COCO boxes)")
    elif data is None:
        from kerasrecipes.data.verify import default_cache_dir

        data = kr.data.make_demo_dataset(
            os.path.join(default_cache_dir(), "demo", "target"), task="target", bad_files=True
        )
        print(f"Demo data: {data} (two classes of shapes, with 4 unreadable files)")
    kr.model_card(config.model)  # an unknown name fails before any work
    backbone = kr.load_backbone(
        config.model,
        config.weights,
        # The demo backbone is pre-trained at its own size; a dense head rebuilds it at the data's.
        image_size=None if dense and config.weights == "demo" else config.image_size,
        preprocessing=config.preprocessing,
        verbose=config.verbose,
    )
    print(f"Backbone: {backbone.description}")
    if config.image_size is None:  # a weights file: its model's input size, else the card's
        size = backbone.model.input_shape[1] or kr.model_card(config.model).default_input_shape[0]
        config = config.replace(image_size=int(size))
    train, val, info = read_config_data(data, config)
    _print_data(info, data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{FINISHED_EARLIER}")  # said below
        _, history = kr.fine_tune(backbone, train, val, config=config, info=info)
    with open(os.path.join(out, "report.json")) as file:
        report = json.load(file)
    if history.finished_earlier:
        print(
            f"{out} holds a run that finished earlier ({report['finished_at']}); nothing was "
            "trained. Its result:"
        )
    for line in reports.summary_lines(report, out, saved_now=not history.finished_earlier):
        print(line)
    if history.finished_earlier:
        print("Run with --restart to train again there, or give another --out.")
    else:
        print(f"{time.perf_counter() - started:.0f} s in all")
    return report


def demo_out_dir(task):
    """The demo's run folder: runs/demo, and one per dense task so the demos do not collide."""
    return DEMO_OUT if task == "classification" else f"{DEMO_OUT}-{task}"


def read_config_data(data, config):
    """`image_folder` of `data` at the config's size, batch, split and seed, as a run reads it;
    the scan's warning kept off the terminal (see `quiet_scan_log`)."""
    import kerasrecipes as kr

    dense_readers = {"segmentation": kr.data.mask_folder, "detection": kr.data.coco_folder}
    if config.task in dense_readers:
        with quiet_scan_log():
            return dense_readers[config.task](
                data,
                image_size=(config.image_size, config.image_size),
                batch_size=config.batch_size,
                validation_split=config.validation_split or None,
                seed=config.seed,
            )
    with quiet_scan_log():
        return kr.data.image_folder(
            data,
            image_size=(config.image_size, config.image_size),
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            seed=config.seed,
        )


@contextlib.contextmanager
def quiet_scan_log():
    """Keeps the scan's warning off the terminal: the commands list the skipped files
    themselves, and `kr.ablate` lists them once before its runs scan the same folder."""
    data_logger = logging.getLogger("kerasrecipes.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        data_logger.setLevel(level)


def _print_data(info, folder):
    counts = ", ".join(f"{name} {count}" for name, count in info.counts.items())
    if hasattr(info, "train_images"):
        print(
            f"Data: {len(info.train_images)} training and {len(info.val_images)} validation "
            f"images, {sum(info.counts.values())} training boxes ({counts}); "
            f"{len(info.skipped)} files skipped"
        )
    elif hasattr(info, "train_pairs"):
        print(
            f"Data: {len(info.train_pairs)} training and {len(info.val_pairs)} validation "
            f"image/mask pairs, classes {', '.join(info.class_names)}; {len(info.skipped)} "
            "files skipped"
        )
    else:
        print(
            f"Data: {sum(info.counts.values())} training images ({counts}), "
            f"{sum(info.val_counts.values())} validation images; {len(info.skipped)} files "
            "skipped"
        )
    for path, reason in info.skipped[:10]:
        print(f"  skipped {os.path.relpath(path, folder)}: {reason}")
    if len(info.skipped) > 10:
        print(f"  ... and {len(info.skipped) - 10} more, listed in report.json")


def predict(args):
    """The `predict` command: a line per image (or the --output file), the skipped files listed."""
    from kerasrecipes.finetune.run_folder import write_atomically, write_json
    from kerasrecipes.inference import load_classifier

    if args.output and os.path.splitext(args.output)[1] not in (".csv", ".json"):
        raise ValueError(f"--output {args.output}: give a .csv or .json file name.")
    classifier = load_classifier(args.model)
    rows, read = [], 0
    for path in args.paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or folder.")
    with quiet_scan_log():
        for path in args.paths:
            predictions = classifier.predict_images(
                path if os.path.isdir(path) else [path],
                top_k=args.top_k,
                batch_size=args.batch_size,
                tta=args.tta,
            )
            rows += predictions.rows()
            read += len(predictions)
    predicted = [row for row in rows if "label" in row]
    skipped = [row for row in rows if "skipped" in row]
    if args.output:
        if args.output.endswith(".json"):
            write_json(args.output, predicted + skipped)
        else:
            write_atomically(args.output, _csv_text(predicted + skipped))
        counts = {name: 0 for name in classifier.class_names}
        for row in predicted:
            counts[row["label"]] += 1
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        print(f"{read} images classified ({shown}); written to {args.output}")
    else:
        for row in predicted:
            top = "  ".join(
                f"{row[f'top{rank}_label']} {row[f'top{rank}_probability']:.3f}"
                for rank in range(1, args.top_k + 1)
                if f"top{rank}_label" in row
            )
            print(f"{row['path']}  {top}")
    for row in skipped[:10]:
        print(f"  skipped {row['path']}: {row['skipped']}")
    if len(skipped) > 10:
        print(
            f"  ... and {len(skipped) - 10} more skipped" + (" (in --output)" * bool(args.output))
        )


def _csv_text(rows):
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def evaluate(args):
    """The `evaluate` command: prints the report and writes it to the run folder or --out."""
    from kerasrecipes.finetune.run_folder import is_inside
    from kerasrecipes.inference import evaluate as evaluate_classifier
    from kerasrecipes.inference import load_classifier
    from kerasrecipes.inference.classifier import run_folder_of

    out = args.out or run_folder_of(args.model)
    if out is not None and is_inside(out, args.data):
        raise ValueError(f"--out {out} is inside the test folder {args.data}; give another --out.")
    classifier = load_classifier(args.model)
    with quiet_scan_log():
        evaluation = evaluate_classifier(
            classifier, args.data, tta=args.tta, batch_size=args.batch_size, out_dir=out
        )
    print(evaluation.summary())
    for path, reason in evaluation.skipped[:10]:
        print(f"  skipped {os.path.relpath(path, args.data)}: {reason}")
    if out is None:
        print("Nothing written: the model is not in a run folder; give --out DIR for the files.")
    else:
        print(f"Wrote {', '.join(evaluation.files)} in {out}/")


def export(args):
    """The `export` command: writes the artifact and prints its agreement with the Keras model."""
    from kerasrecipes.inference import export as export_classifier
    from kerasrecipes.inference import load_classifier
    from kerasrecipes.inference.classifier import run_folder_of

    out = args.out
    if out is None:
        folder = run_folder_of(args.model)
        stem = os.path.splitext(args.model)[0]
        out = os.path.join(folder, "export") if folder else f"{stem}_export"
    classifier = load_classifier(args.model)
    result = export_classifier(classifier, out, args.format, overwrite=args.overwrite)
    print(
        f"Exported {args.format} to {result.path}; on {result.check_images} images its output "
        f"differs from the Keras model's by at most {result.max_abs_difference:.2e} "
        f"({result.relative_difference:.2e} relative)"
    )


def run_ablation(args):
    """The `ablate` command: the grid, then the table and where the reports are."""
    from kerasrecipes import ablation

    baseline = dict(ablation.DEMO_BASELINE)
    baseline.update(_field_values(args.set, "--set"))
    changes = {}
    for text in args.change:
        bucket, separator, assignment = text.partition(":")
        if not separator or not bucket:
            raise ValueError(
                f"--change {text!r}: write BUCKET:FIELD=VALUE, e.g. data:augment=basic"
            )
        changes.setdefault(bucket, {}).update(_field_values([assignment], "--change"))
    index, separator, count = args.shard.partition("/")
    if not (separator and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError(f"--shard {args.shard!r}: write I/N with 0 <= I < N, e.g. 0/2")
    result = ablation.ablate(
        baseline,
        changes or None,
        data=args.data,
        seeds=args.seeds,
        out_dir=args.out,
        shard=(int(index), int(count)),
        verbose=0,
    )
    for line in result.table():
        print(line)
    if result.missing:
        print(f"{len(result.missing)} runs are not finished yet (other shards, or interrupted).")
    print(f"Saved ablation.json, ablation.md, ablation.png in {args.out}/")


def _field_values(assignments, option):
    """`{field: value}` from "FIELD=VALUE" texts, each value parsed as its config field's type."""
    fields = {f.name: f for f in dataclasses.fields(FineTuneConfig)}
    values = {}
    for text in assignments:
        name, separator, value = text.partition("=")
        if not separator or name not in fields:
            raise ValueError(
                f"{option} {text!r}: write FIELD=VALUE with a FineTuneConfig field, e.g. "
                f"weight_decay=5e-4. The fields: {', '.join(sorted(fields))}."
            )
        field = fields[name]
        values[name] = (
            None
            if value.lower() == "none" and field.default is None
            else (_converter(field)(value))
        )
    return values


def list_zoo_table(pattern):
    """The `models` command: one line per registered model, from the zoo table (nothing built)."""
    from kerasrecipes.zoo_table import format_rows, read_table

    rows = read_table(pattern)
    if not rows:
        raise ValueError(f"No registered model matches {pattern!r}; try 'kerasrecipes models'.")
    print("\n".join(format_rows(rows)))


def list_zoo(pattern):
    """`models --exact`: one line per registered model, each built at its default input size."""
    import kerasrecipes as kr
    from kerasrecipes.zoo_table import format_rows, table_row

    names = kr.list_models(pattern)
    if not names:
        raise ValueError(f"No registered model matches {pattern!r}; try 'kerasrecipes models'.")
    print(format_rows([])[0])
    for name in names:
        print(format_rows([table_row(name)])[1], flush=True)


def main_exit():
    """The console script's entry point."""
    sys.exit(main())
