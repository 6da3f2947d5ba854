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
import dataclasses
import importlib
import os
import re
import sys
import warnings

from kerasrecipes.finetune.config import AUTO_LR, FineTuneConfig, cli_flag


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerasrecipes",
        description="Fine-tune image classifiers and browse the model zoo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    _add_run_command(
        commands,
        "finetune",
        help="fine-tune a backbone on a folder of class folders (or the built-in demo)",
        description="Phase 1 trains a new head on the frozen backbone; phase 2 unfreezes it "
        "and trains with per-layer learning rates. BatchNorm stays frozen. Run the same "
        "command again to resume an interrupted run. Every option below is a field of "
        "kr.FineTuneConfig.",
    )
    _add_run_command(
        commands,
        "lr-find",
        help="the LR range test: the learning rate to train at, and its curve",
        description="Builds the model finetune would train, with the same options, and runs "
        "the LR range test (Smith 2017; fastai's lr_find) on its first phase: 100 steps at "
        "rates growing from 1e-7 to 10. Prints the suggested rate and writes the curve to "
        "the run folder's lr_find/. Train with --lr RATE, or --lr auto to run it inside the "
        "run.",
    )
    _add_run_command(
        commands,
        "show-batch",
        help="a grid of training images as the model sees them, with their labels",
        description="Reads the data as finetune would, with the same options (augmentation "
        "included), and writes batch.png into the run folder: 16 training images with their "
        "class, or their masks or boxes for the dense tasks (fastai's show_batch). Nothing "
        "trains.",
    )

    predict = commands.add_parser(
        "predict",
        help="classify, segment or find objects in images with a trained model",
        description="Runs the model of a run folder or a .keras file on image files and "
        "folders (with class subfolders or not): the classes of a classifier, the masks of a "
        "segmenter, the boxes of a detector. Unreadable files are skipped and listed.",
    )
    predict.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder or a .keras file")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument(
        "--top-k",
        type=_positive_int("--top-k"),
        default=1,
        help="classes per image, for a classifier (default: 1)",
    )
    predict.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help="for a detector: the lowest class probability a box keeps (default: the model's, 0.3)",
    )
    predict.add_argument(
        "--output",
        help="write the predictions to this .csv or .json file (classes; boxes: a CSV, or COCO "
        "results in JSON) or, for masks, a new folder of PNGs and overlays (else print them)",
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file"
    )
    _add_inference_options(predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, IoU or COCO mAP on a test folder, with the figures of where it fails",
        description="Evaluates the model on a test folder in its task's layout: class folders "
        "named as its classes (accuracy, per-class figures, confusion matrix, top losses), "
        "images/, masks/ and classes.txt (mean and per-class IoU, confusion matrix, worst "
        "images), or images/ and annotations.json (COCO mAP, mAP@.5, AP per class, worst "
        "images); writes evaluation.json and the figures into the run folder (or --out).",
    )
    evaluate.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder or a .keras file")
    evaluate.add_argument("--data", required=True, help="the test folder, in the task's layout")
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
    ablate.add_argument(
        "--seeds", type=_positive_int("--seeds"), default=3, help="seeds per variant (default: 3)"
    )
    ablate.add_argument("--out", default="runs/ablation", help="default: runs/ablation")
    ablate.add_argument(
        "--shard", default="0/1", metavar="I/N", help="run only every N-th run from the I-th"
    )
    ablate.add_argument("--debug", action="store_true", help="show tracebacks")

    models = commands.add_parser(
        "models", help="list the model zoo (parameters, multiply-adds) and the task heads"
    )
    models.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    models.add_argument(
        "--exact", action="store_true", help="build each model to count it (slow; default: table)"
    )
    models.add_argument(
        "--weights",
        action="store_true",
        help="list the pretrained weights each model takes (keras.applications, timm "
        "checkpoints) with their ImageNet top-1 and licence",
    )
    models.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _add_run_command(commands, name, help, description):
    """A command that reads `--data` as `finetune` does and takes every `FineTuneConfig`
    option: `finetune`, `lr-find`, `show-batch`."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.add_argument(
        "--data", help="the data folder, in the task's layout; without it, the built-in demo"
    )
    add_config_options(parser)
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and TensorFlow's own log lines"
    )


def _add_inference_options(parser):
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average flips and crops"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int("--batch-size"),
        default=32,
        help="images per batch (default: 32)",
    )
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


def _positive_int(flag):
    def positive(value):
        if not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer of 1 or more; got {value!r}")
        return int(value)

    positive.__name__ = "int"
    return positive


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _converter(field):
    """Parses an option's text into the field's type; "none" gives None for an optional number
    (a text field keeps "none": `--weights none` means random initialization). A true/false
    field takes only true/false words: any other text is an error, never true."""
    if field.type is bool or str(field.type) in ("bool", "bool | None"):

        def boolean(value):
            if value.lower() in TRUE_WORDS:
                return True
            if value.lower() in FALSE_WORDS:
                return False
            raise argparse.ArgumentTypeError(
                f"{field.name} is true or false ({'/'.join(TRUE_WORDS)} or "
                f"{'/'.join(FALSE_WORDS)}); got {value!r}"
            )

        return boolean
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
        # The zoo table needs no Keras: this command starts without TensorFlow.
        return _run(args, lambda: importlib.import_module("kerasrecipes.commands.models").run(args))
    if not args.debug:
        from kerasrecipes._startup import import_tensorflow_quietly  # TF-free itself

        import_tensorflow_quietly()
    import kerasrecipes  # the package's __init__ loads no Keras until `_load_api`

    kerasrecipes._load_api()  # registers every layer a saved model may hold, before loading one
    # Keras 3.15 warns on every fit with a tf.data.Dataset, which it does not shuffle anyway.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    # The command's module imports TensorFlow; it is loaded once the command is known, so that
    # `--help` starts without it.
    command = importlib.import_module(f"kerasrecipes.commands.{args.command.replace('-', '_')}")
    return _run(args, lambda: command.run(*_command_arguments(args)))


def _command_arguments(args):
    """What the command's `run` takes: the options, and the config or the ablation grid that
    the command line describes."""
    if args.command in ("finetune", "lr-find", "show-batch"):
        fields = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(FineTuneConfig)
            if f.metadata.get("cli", True)
        }
        return args, FineTuneConfig(**fields)
    if args.command == "ablate":
        return args, *_ablation_grid(args)
    return (args,)


def _ablation_grid(args):
    """`(baseline, changes, shard)` from `--set`, `--change` and `--shard`."""
    from kerasrecipes.ablation import DEMO_BASELINE  # after TensorFlow: see `main`

    baseline = dict(DEMO_BASELINE)
    baseline.update(_field_values(args.set, "--set"))
    changes = {}
    for text in args.change:
        bucket, separator, assignment = text.partition(":")
        if not separator or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", bucket):
            raise ValueError(
                f"--change {text!r}: write BUCKET:FIELD=VALUE, e.g. data:augment=basic; the "
                "bucket names the cell's folder, so letters, digits, '_', '-' and '.' only"
            )
        changes.setdefault(bucket, {}).update(_field_values([assignment], "--change"))
    index, separator, count = args.shard.partition("/")
    if not (separator and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError(f"--shard {args.shard!r}: write I/N with 0 <= I < N, e.g. 0/2")
    return baseline, changes, (int(index), int(count))


def _run(args, command):
    """Runs `command()`; an error becomes one line on stderr and exit code 1."""
    try:
        command()
    except BrokenPipeError:  # stdout closed early (`| head`): not an error of the command
        _stdout_to_devnull()
        return 0
    except KeyboardInterrupt:
        resumable = args.command in ("finetune", "ablate")
        again = "; run the same command again to resume" if resumable else ""
        print(f"kerasrecipes: interrupted{again}.", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"kerasrecipes: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _stdout_to_devnull():
    """Points stdout at devnull, so that Python's flush at exit finds no closed pipe to
    complain about (the recipe of the `signal` module's docs, on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(
        error,
        (
            ValueError,
            FileNotFoundError,
            FileExistsError,
            NotADirectoryError,
            IsADirectoryError,
            PermissionError,
            RuntimeError,
        ),
    ):
        return text
    return f"{type(error).__name__}: {text} (run with --debug for the traceback)"


def _field_values(assignments, option):
    """`{field: value}` from "FIELD=VALUE" texts, each value read as the field's own flag reads
    it (the same converter and choices)."""
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
        try:
            values[name] = (
                None
                if value.lower() == "none" and field.default is None
                else (_converter(field)(value))
            )
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"{option} {text!r}: {error}") from None
        choices = field.metadata.get("choices")
        if choices is not None and values[name] is not None and values[name] not in choices:
            raise ValueError(
                f"{option} {text!r}: {name} is one of {list(choices)}, as {cli_flag(field)}."
            )
    return values


def read_config_data(data, config):
    """Deprecated alias of `kerasrecipes.finetune.pipeline.read_data`."""
    from kerasrecipes.finetune.pipeline import read_data  # imports TensorFlow: only when called

    warnings.warn(
        "kerasrecipes.cli.read_config_data is deprecated; use "
        "kerasrecipes.finetune.pipeline.read_data",
        DeprecationWarning,
        stacklevel=2,
    )
    return read_data(data, config)


def main_exit():
    """The console script's entry point."""
    sys.exit(main())
