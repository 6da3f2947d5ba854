"""The `kerasrecipes` command: `finetune` a backbone on a folder of images, list the `models`.

    kerasrecipes finetune --data PetImages/ --model efficientnet_b0 --out runs/pets
    kerasrecipes finetune        # no --data: the built-in demo, offline
    kerasrecipes models 'resnet*'

A run folder holds `report.json` (accuracy per phase, timings, skipped
files, arguments), `curves.png`, `confusion.png`, `model.keras`, the
per-phase histories and the backups that make an interrupted run resume:
run the same command with the same `--out` again. Errors are one line on
stderr and exit code 1 (`--debug` shows the traceback).
"""

import argparse
import json
import logging
import os
import sys
import time
import warnings

DEMO_DEFAULTS = {"model": "baseline_cnn", "weights": "demo", "image_size": 32, "out": "runs/demo"}
DATA_DEFAULTS = {"model": "efficientnet_b0", "weights": "imagenet"}


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
        "and trains with per-layer learning rates. BatchNorm stays frozen.",
    )
    finetune.add_argument(
        "--data", help="folder with one subfolder per class; without it, the built-in demo"
    )
    finetune.add_argument(
        "--model", help="registered model name (default: efficientnet_b0; demo: baseline_cnn)"
    )
    finetune.add_argument(
        "--weights",
        help="imagenet (default with --data), demo (default without), none, or a path to a "
        ".keras or .weights.h5 file",
    )
    finetune.add_argument("--out", help="run folder (default: runs/<data folder name>)")
    finetune.add_argument("--image-size", type=int, help="input height and width")
    finetune.add_argument("--batch-size", type=int, default=32)
    finetune.add_argument("--validation-split", type=float, default=0.2)
    finetune.add_argument("--head-epochs", type=int, default=4)
    finetune.add_argument("--head-lr", type=float, default=3e-3)
    finetune.add_argument("--finetune-epochs", type=int, default=6)
    finetune.add_argument(
        "--finetune-lr", type=float, help="the head's rate in phase 2 (default: --head-lr)"
    )
    finetune.add_argument("--backbone-lr-mult", type=float, default=0.1)
    finetune.add_argument("--layer-decay", type=float, help="per-block rate decay, e.g. 0.75")
    finetune.add_argument(
        "--unfreeze", default="all", help="'all' or the number of top blocks to unfreeze"
    )
    finetune.add_argument("--train-bn", action="store_true", help="let BatchNorm train")
    finetune.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    finetune.add_argument("--augment", help="augmentation preset, e.g. basic or randaugment")
    finetune.add_argument("--balance", choices=["class_weight", "oversample"])
    finetune.add_argument(
        "--preprocessing",
        default="auto",
        choices=["auto", "caffe", "tf", "torch", "unit", "none"],
        help="input scaling (auto: what the weights expect)",
    )
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--debug", action="store_true", help="show tracebacks")

    models = commands.add_parser("models", help="list the model zoo with parameters and FLOPs")
    models.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    models.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv=None):
    """Runs the command line `argv` (default `sys.argv[1:]`); returns the exit code."""
    args = build_parser().parse_args(argv)
    # Our lines and Keras' progress lines share stdout; keep them in order when it is a file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    """The `finetune` command; returns the report it writes."""
    started = time.perf_counter()
    defaults = DATA_DEFAULTS if args.data else DEMO_DEFAULTS
    weights = args.weights or defaults["weights"]
    if weights == "demo":  # the demo backbone's architecture and size, also with --data
        defaults = {**defaults, "model": DEMO_DEFAULTS["model"], "image_size": 32}
    model_name = args.model or defaults["model"]
    out = args.out or (
        defaults.get("out") or os.path.join("runs", os.path.basename(os.path.normpath(args.data)))
    )
    if args.data and not os.path.isdir(args.data):
        raise FileNotFoundError(
            f"--data {args.data}: no such folder. Give a folder with one subfolder per class."
        )
    unfreeze = "all" if args.unfreeze == "all" else _positive_int("--unfreeze", args.unfreeze)

    import keras

    import kerasrecipes as kr
    from kerasrecipes.registry import model_card

    model_card(model_name)  # an unknown name fails before any work
    keras.utils.set_random_seed(args.seed)
    verbose = 1 if sys.stdout.isatty() else 2
    data = args.data
    if data is None:
        from kerasrecipes.data.verify import default_cache_dir

        data = kr.data.make_demo_dataset(
            os.path.join(default_cache_dir(), "demo", "target"), task="target", bad_files=True
        )
        print(f"Demo data: {data} (two classes of shapes, with 4 unreadable files)")

    backbone = kr.load_backbone(
        model_name,
        weights,
        image_size=args.image_size or defaults.get("image_size"),
        preprocessing=args.preprocessing,
        verbose=verbose,
    )
    print(f"Backbone: {backbone.description}")
    image_size = tuple(backbone.model.input_shape[1:3])
    if None in image_size:
        size = args.image_size or model_card(model_name).default_input_shape[0]
        image_size = (size, size)
    data_logger = logging.getLogger("kerasrecipes.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # the skipped files are listed below instead
    try:
        train, val, info = kr.data.image_folder(
            data,
            image_size=image_size,
            batch_size=args.batch_size,
            validation_split=args.validation_split,
            seed=args.seed,
        )
    finally:
        data_logger.setLevel(level)
    _print_data(info, data)

    from_scratch = weights in (None, "none")
    model, history = kr.fine_tune(
        backbone.model,
        train,
        val,
        num_classes=info.num_classes,
        head_epochs=0 if from_scratch else args.head_epochs,
        head_lr=args.head_lr,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        backbone_lr_mult=1.0 if from_scratch else args.backbone_lr_mult,
        layer_decay=args.layer_decay,
        unfreeze=unfreeze,
        train_bn=args.train_bn or from_scratch,
        preprocessing=backbone.preprocessing,
        augment=args.augment,
        balance=args.balance,
        class_counts=info.counts,
        early_stopping_patience=args.patience,
        out_dir=out,
        seed=args.seed,
        verbose=verbose,
    )

    probabilities = model.predict(val, verbose=0)
    labels = [int(label) for label in info.val_labels]
    predictions = probabilities.argmax(-1).tolist()
    matrix = kr.plots.confusion_matrix(labels, predictions, info.num_classes)
    kr.plots.plot_confusion(matrix, info.class_names, os.path.join(out, "confusion.png"))
    resolved = {"model": model_name, "weights": weights, "data": data, "out": out}
    report = _report(args, resolved, backbone, info, history, matrix)
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    with open(os.path.join(out, "report.json"), "w") as file:
        json.dump(report, file, indent=1)
    _print_summary(report, out)
    return report


def _positive_int(flag, value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{flag} must be 'all' or a number of blocks >= 1. Received: {value!r}")
    return number


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


def _report(args, resolved, backbone, info, history, matrix):
    phases = {}
    names = {"head": "head (backbone frozen)", "finetune": "fine-tune (backbone unfrozen)"}
    for phase in history.phases:
        logs = history.phase_logs(phase)
        start, end = history.phase_range(phase)
        epochs = end - start
        phases[phase] = {
            "description": names[phase],
            "first_epoch": start + 1,
            "epochs": epochs,
            "accuracy": logs.get("accuracy"),
            "val_accuracy": logs.get("val_accuracy"),
            "val_loss": logs.get("val_loss"),
            "seconds": round(history.timings[phase], 1) if phase in history.timings else None,
        }
    return {
        "arguments": {**vars(args), **resolved},
        "backbone": backbone.description,
        "data": {
            "class_names": info.class_names,
            "train_counts": info.counts,
            "val_counts": info.val_counts,
            "skipped": [[path, reason] for path, reason in info.skipped],
        },
        "phases": phases,
        "val_accuracy": float(matrix.trace() / max(matrix.sum(), 1)),
        "confusion_matrix": matrix.tolist(),
        "phases_finished_earlier": [p for p in history.phases if p not in history.timings],
        "seconds": {phase: round(s, 1) for phase, s in history.timings.items()},
        "files": ["report.json", "curves.png", "confusion.png", "model.keras"],
    }


def _print_summary(report, out):
    for phase in report["phases"].values():
        accuracy = phase["val_accuracy"]
        shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
        print(
            f"Phase {phase['description']}: epochs {phase['first_epoch']}-"
            f"{phase['first_epoch'] + phase['epochs'] - 1}, validation accuracy {shown}"
        )
    print(
        f"Final validation accuracy {report['val_accuracy']:.3f} "
        f"(best weights restored); {report['seconds']['total']:.0f} s in all"
    )
    print(f"Saved {', '.join(report['files'])} in {out}/")


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
