"""The same fine-tuning job in kerasrecipes and in fastai: seconds per epoch, time to a target.

Both sides train the same architecture (ResNet-18: ours, and torchvision's in
fastai's `vision_learner`) from scratch on the same image folder (by default
the demo's ten-class source folder of shapes, 3,000 JPEGs written here), at the same image size
and batch size, with the same phases: one epoch with the body frozen, then
`--epochs` epochs with everything trained, the body at 1/`--lr-mult` of the
head's rate. The schedules are each library's own: fastai's `fine_tune`
runs one-cycle schedules (Adam, decoupled weight decay 0.01), ours `fine_tune` a
constant rate then a cosine decay (AdamW, weight decay 0.01). Both keep
BatchNorm training (fastai's `train_bn=True`, our `train_bn=True`).
Pre-trained weights cannot be matched across the two libraries offline, hence
from scratch on both sides.

Each side runs in its own process, alternating, `--repeats` times. Each
prints per-epoch wall-clock seconds (training and validation, after the
first epoch, which includes tracing) and validation accuracy; the summary
gives, per side, the median seconds per epoch, the time to the first epoch
at or above `--target` accuracy (from the start of training), the best
accuracy, and the ratios fastai / ours (above 1: ours is faster).

Run (in an environment with the `bench` extra: `pip install -e ".[bench]"`):
    python benchmarks/vs_fastai.py
    python benchmarks/vs_fastai.py --data PetImages/ --image-size 128 --epochs 5 --target 0.9
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="class folders (default: the demo's)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6, help="epochs after the frozen one")
    parser.add_argument("--lr", type=float, default=2e-3, help="the head's rate (fastai's base_lr)")
    parser.add_argument("--lr-mult", type=float, default=10.0, help="head rate / body rate")
    parser.add_argument("--target", type=float, default=0.8, help="validation accuracy to reach")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    parser.add_argument(
        "--worker", default=None, choices=["ours", "fastai"], help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def ours_worker(args):
    import keras

    import kerasrecipes as kr

    size = (args.image_size, args.image_size)
    train, val, info = kr.data.image_folder(
        args.data, image_size=size, batch_size=args.batch_size, validation_split=0.2, seed=0
    )
    epochs = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append((time.perf_counter(), float(logs["val_accuracy"])))

    keras.utils.set_random_seed(0)
    backbone = kr.create_model("resnet18", input_shape=size + (3,), include_top=False)
    config = kr.FineTuneConfig(
        head_epochs=1,
        finetune_epochs=args.epochs,
        head_lr=args.lr,
        finetune_lr=args.lr / 2,
        backbone_lr_mult=1 / args.lr_mult,
        train_bn=True,
        weight_decay=0.01,
        precision="mixed_bfloat16" if args.precision == "bf16" else "float32",
        seed=0,
        verbose=0,
    )
    start = time.perf_counter()
    kr.fine_tune(backbone, train, val, config=config, info=info, callbacks=[EpochClock()])
    return start, epochs


def fastai_worker(args):
    import torch
    from fastai.vision.all import (
        Callback,
        ImageDataLoaders,
        Resize,
        accuracy,
        resnet18,
        vision_learner,
    )

    torch.manual_seed(0)
    epochs = []

    class EpochClock(Callback):
        order = 60  # after the Recorder, which writes the epoch's metrics

        def after_epoch(self):
            valid_loss, valid_accuracy = self.learn.recorder.values[-1][1:3]
            epochs.append((time.perf_counter(), float(valid_accuracy)))

    loaders = ImageDataLoaders.from_folder(
        args.data,
        valid_pct=0.2,
        seed=0,
        item_tfms=Resize(args.image_size),
        bs=args.batch_size,
        num_workers=0,
    )
    learner = vision_learner(loaders, resnet18, pretrained=False, metrics=accuracy)
    if args.precision == "bf16":
        learner.to_bf16()
    start = time.perf_counter()
    with learner.no_bar(), learner.no_logging():
        learner.fine_tune(
            args.epochs, base_lr=args.lr, freeze_epochs=1, lr_mult=args.lr_mult, cbs=[EpochClock()]
        )
    return start, epochs


def run_worker(args):
    start, epochs = (ours_worker if args.worker == "ours" else fastai_worker)(args)
    times = [t - start for t, _ in epochs]
    print(json.dumps({"times": times, "accuracy": [a for _, a in epochs]}))


def run_side(side, args):
    command = [sys.executable, __file__, "--worker", side, "--data", args.data]
    for flag in ("image_size", "batch_size", "epochs", "lr", "lr_mult", "precision"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"the {side} run failed:\n{tail}")
    return json.loads(lines[-1])


def summarize(run, target):
    times, accuracy = run["times"], run["accuracy"]
    per_epoch = statistics.median(b - a for a, b in zip(times, times[1:]))
    reached = next((t for t, a in zip(times, accuracy) if a >= target), None)
    return {"per_epoch": per_epoch, "to_target": reached, "best": max(accuracy)}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    if args.data is None:
        import kerasrecipes as kr

        args.data = kr.data.make_demo_dataset(os.path.join(tempfile.mkdtemp(), "source"), "source")
    print(
        f"fine-tuning ResNet-18 from scratch on {args.data}: {args.image_size}px, batch "
        f"{args.batch_size}, 1 frozen epoch + {args.epochs}, {args.precision}, "
        f"target accuracy {args.target}"
    )
    results = {"ours": [], "fastai": []}
    for repeat in range(args.repeats):
        for side in ("ours", "fastai") if repeat % 2 == 0 else ("fastai", "ours"):
            run = run_side(side, args)
            summary = summarize(run, args.target)
            results[side].append(summary)
            accuracy = " ".join(f"{a:.3f}" for a in run["accuracy"])
            print(
                f"  {side} run {repeat + 1}: {summary['per_epoch']:.2f} s/epoch, accuracy by epoch "
                f"{accuracy}, end of each epoch at "
                + " ".join(f"{t:.1f}" for t in run["times"])
                + " s"
            )
    for side, summaries in results.items():
        per_epoch = statistics.median(s["per_epoch"] for s in summaries)
        reached = [s["to_target"] for s in summaries if s["to_target"] is not None]
        to_target = f"{statistics.median(reached):.1f} s" if reached else "not reached"
        best = max(s["best"] for s in summaries)
        print(
            f"{side}: median {per_epoch:.2f} s/epoch; to {args.target}: {to_target} "
            f"({len(reached)} of {len(summaries)} runs); best accuracy {best:.3f}"
        )
    ours = statistics.median(s["per_epoch"] for s in results["ours"])
    theirs = statistics.median(s["per_epoch"] for s in results["fastai"])
    print(f"seconds per epoch, fastai / ours = {theirs / ours:.2f}")
    ours_reached = [s["to_target"] for s in results["ours"] if s["to_target"] is not None]
    theirs_reached = [s["to_target"] for s in results["fastai"] if s["to_target"] is not None]
    if ours_reached and theirs_reached:
        ratio = statistics.median(theirs_reached) / statistics.median(ours_reached)
        print(f"time to {args.target}, fastai / ours = {ratio:.2f}")


if __name__ == "__main__":
    main()
