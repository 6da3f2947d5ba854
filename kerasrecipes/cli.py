"""The `kerasrecipes` command: `finetune` a backbone on a folder of images, list the `models`.

    kerasrecipes finetune --data PetImages/ --model efficientnet_b0 --out runs/pets
    kerasrecipes finetune        # no --data: the built-in demo, offline
    kerasrecipes models 'resnet*'

The options of `finetune` are generated from `kr.FineTuneConfig`'s fields.
A run folder holds `report.json` (the resolved config, accuracy per phase,
timings, skipped files), `history.csv`, `curves.png`, `confusion.png`,
`model.keras` and the backups that make an interrupted run resume: run the
same command again. A finished run is not retrained (`--restart` does).
Errors are one line on stderr and exit code 1 (`--debug` shows the
traceback and TensorFlow's log lines).
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import warnings

from kerasrecipes.finetune.config import FineTuneConfig, cli_flag

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

    models = commands.add_parser("models", help="list the model zoo with parameters and FLOPs")
    models.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    models.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


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

    def convert(value):
        if optional and value.lower() == "none":
            return None
        try:
            return base(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{cli_flag(field)} takes {'an integer' if base is int else 'a number'}"
                f"{' or none' if optional else ''}; got {value!r}"
            ) from None

    convert.__name__ = base.__name__
    return convert


def main(argv=None):
    """Runs the command line `argv` (default `sys.argv[1:]`); returns the exit code."""
    args = build_parser().parse_args(argv)
    # Our lines and Keras' progress lines share stdout; keep them in order when it is a file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    if not args.debug:
        from kerasrecipes._startup import import_tensorflow_quietly

        import_tensorflow_quietly()  # done already when this process is the command
    # Keras 3.15 warns on every fit with a tf.data.Dataset, which it does not shuffle anyway.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    try:
        if args.command == "finetune":
            finetune(args)
        else:
            list_zoo(args.pattern)
    except KeyboardInterrupt:
        print("kerasrecipes: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"kerasrecipes: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError)):
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
    config = resolve_config(FineTuneConfig(**fields), demo=args.data is None)
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(
            f"--data {args.data}: no such folder. Give a folder with one subfolder per class."
        )
    out = config.out_dir or (DEMO_OUT if args.data is None else default_out_dir(args.data))
    if args.data is not None and is_inside(out, args.data):
        raise ValueError(
            f"--out {out} is inside the data folder {os.path.realpath(args.data)}; the run's "
            "files would be read as images next time. Give an --out outside it."
        )
    config = config.replace(out_dir=out, verbose=1 if sys.stdout.isatty() else 2)
    data = args.data
    if data is None:
        from kerasrecipes.data.verify import default_cache_dir

        data = kr.data.make_demo_dataset(
            os.path.join(default_cache_dir(), "demo", "target"), task="target", bad_files=True
        )
        print(f"Demo data: {data} (two classes of shapes, with 4 unreadable files)")
    kr.model_card(config.model)  # an unknown name fails before any work
    backbone = kr.load_backbone(
        config.model,
        config.weights,
        image_size=config.image_size,
        preprocessing=config.preprocessing,
        verbose=config.verbose,
    )
    print(f"Backbone: {backbone.description}")
    if config.image_size is None:  # a weights file: its model's input size, else the card's
        size = backbone.model.input_shape[1] or kr.model_card(config.model).default_input_shape[0]
        config = config.replace(image_size=int(size))
    train, val, info = _read_data(kr, data, config)
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


def _read_data(kr, data, config):
    data_logger = logging.getLogger("kerasrecipes.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # the skipped files are listed below instead
    try:
        return kr.data.image_folder(
            data,
            image_size=(config.image_size, config.image_size),
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            seed=config.seed,
        )
    finally:
        data_logger.setLevel(level)


def _print_data(info, folder):
    counts = ", ".join(f"{name} {count}" for name, count in info.counts.items())
    print(
        f"Data: {sum(info.counts.values())} training images ({counts}), "
        f"{sum(info.val_counts.values())} validation images; {len(info.skipped)} files skipped"
    )
    for path, reason in info.skipped[:10]:
        print(f"  skipped {os.path.relpath(path, folder)}: {reason}")
    if len(info.skipped) > 10:
        print(f"  ... and {len(info.skipped) - 10} more, listed in report.json")


def list_zoo(pattern):
    """The `models` command: one line per registered model, built at its default input size."""
    import keras

    import kerasrecipes as kr

    names = kr.list_models(pattern)
    if not names:
        raise ValueError(f"No registered model matches {pattern!r}; try 'kerasrecipes models'.")
    print(f"{'model':<18}{'family':<14}{'input':>7}{'params':>14}{'GFLOPs':>9}  pretrained")
    for name in names:
        entry = kr.model_card(name)
        info = kr.model_info(kr.create_model(name))
        flops = "-" if info.flops is None else f"{info.flops / 1e9:.2f}"
        print(
            f"{name:<18}{entry.family:<14}{entry.default_input_shape[0]:>7}"
            f"{info.params:>14,}{flops:>9}  {', '.join(entry.pretrained) or '-'}",
            flush=True,
        )
        keras.backend.clear_session()


def main_exit():
    """The console script's entry point."""
    sys.exit(main())
