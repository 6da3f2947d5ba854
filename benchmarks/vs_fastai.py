"""Time to accuracy, kerasrecipes against fastai, each with its own defaults, on three jobs.

The jobs (all generated here, offline):

- `scratch`: ResNet-18 from scratch on the demo's ten-class source task
  (3,000 shapes, 64 px on disk).
- `finetune`: the two-class demo target (ellipses vs pentagons), fine-tuned
  from a backbone each library pre-trained on the source task with its own
  defaults (ours: `weights="demo"`, `baseline_cnn` for 6 epochs, cached;
  fastai: ResNet-18, `fit_one_cycle(6)`). The pre-training is not timed.
- `stripes`: a job neither library was tuned on: `kr.data.demo_images`'
  ten classes of stripe images (2,000 at 32 px), ResNet-18 from scratch.

Each side uses its library's defaults, as a new user would:

- ours: `kr.fine_tune` with `kr.resolve_config(weights=..., data=...)`: the
  step budget, the rates, warm-up and cosine, PreciseBN, early stopping;
- fastai: `vision_learner(..., metrics=accuracy)`, then `fine_tune(epochs)`
  on a pre-trained body and `fit_one_cycle(epochs)` from scratch, with
  fastai's default rates; `epochs` is the number of epochs ours runs and the
  images are resized to the size ours chose (`config.image_size`, from the
  data's size), so both train equally long on equally large images.

Each side runs in its own process, alternating, `--repeats` times. The
threshold of a job is the highest of 0.50, 0.55, ..., 0.95, 0.99 that every
run of both sides reached; the time to it counts from the start of training
to the end of the first epoch whose validation accuracy reaches it. Printed
per job: `JOB: time-to-accuracy ratio ours/fastai = X.XX` (below 1: ours
is sooner) and each side's final accuracy. Run on a quiet machine: a second
process on the cores slows PyTorch far more than TensorFlow.

Run (in an environment with the `bench` extra: `pip install -e ".[bench]"`):
    python benchmarks/vs_fastai.py
    python benchmarks/vs_fastai.py --jobs stripes --repeats 3
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

JOBS = ("scratch", "finetune", "stripes")
THRESHOLDS = [0.5 + 0.05 * k for k in range(10)] + [0.99]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=JOBS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folder", default=None, help="where the jobs' data go (default: temp)")
    parser.add_argument(
        "--worker", default=None, choices=["ours", "fastai"], help=argparse.SUPPRESS
    )
    parser.add_argument("--job", default=None, choices=JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the data -------------------------------------------------------------------------------------


def make_data(root):
    """`{job: folder}`, written once under `root`."""
    import numpy as np
    from PIL import Image

    import kerasrecipes as kr

    paths = data_paths(root)
    kr.data.make_demo_dataset(paths["source"], task="source")
    kr.data.make_demo_dataset(paths["finetune"], task="target")
    stripes = paths["stripes"]
    if not os.path.isdir(stripes):
        images, labels = kr.data.demo_images(num_images=2000, image_size=32, seed=11)
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = os.path.join(stripes, f"class{label}")
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(np.asarray(image)).save(os.path.join(folder, f"{index}.png"))
    return paths


def data_paths(root):
    """`{job: folder}` under `root`; the workers read them without importing the generators
    (TensorFlow and PyTorch in one process crash on this machine: a segfault on import)."""
    source = os.path.join(root, "source")
    return {
        "scratch": source,
        "finetune": os.path.join(root, "target"),
        "stripes": os.path.join(root, "stripes"),
        "source": source,
    }


# -- the workers: one training run each, printing its epochs as JSON ------------------------------


def ours_worker(job, data):
    import keras

    import kerasrecipes as kr

    epochs = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append((time.perf_counter(), float(logs["val_accuracy"])))

    weights = "demo" if job == "finetune" else "none"
    model = None if job == "finetune" else "resnet18"
    config = kr.resolve_config(
        model=model, weights=weights, demo=job == "finetune", data=data[job], verbose=0
    )
    backbone = kr.load_backbone(config.model, weights, image_size=config.image_size, verbose=0)
    size = (config.image_size, config.image_size)
    train, val, info = kr.data.image_folder(
        data[job], image_size=size, batch_size=config.batch_size, validation_split=0.2
    )
    start = time.perf_counter()
    model, _ = kr.fine_tune(
        backbone, train, val, config=config, info=info, callbacks=[EpochClock()]
    )
    # What the user gets: the model fine_tune returns (best epoch, PreciseBN statistics).
    final = float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])
    return start, epochs, final, config.image_size


def fastai_worker(job, data, epochs_to_run, size):
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
            epochs.append((time.perf_counter(), float(self.learn.recorder.values[-1][2])))

    def loaders(folder):
        return ImageDataLoaders.from_folder(
            folder, valid_pct=0.2, seed=0, item_tfms=Resize(size), num_workers=0
        )

    if job == "finetune":
        # fastai's own pre-training on the source task: its default recipe, not timed.
        source = vision_learner(loaders(data["source"]), resnet18, pretrained=False)
        with source.no_bar(), source.no_logging():
            source.fit_one_cycle(6)
        learner = vision_learner(loaders(data[job]), resnet18, pretrained=False, metrics=accuracy)
        body, source_body = learner.model[0], source.model[0]
        body.load_state_dict(source_body.state_dict())
        learner.freeze()
        start = time.perf_counter()
        with learner.no_bar(), learner.no_logging():
            learner.fine_tune(epochs_to_run - 1, cbs=[EpochClock()])
    else:
        learner = vision_learner(loaders(data[job]), resnet18, pretrained=False, metrics=accuracy)
        start = time.perf_counter()
        with learner.no_bar(), learner.no_logging():
            learner.fit_one_cycle(epochs_to_run, cbs=[EpochClock()])
    return start, epochs, epochs[-1][1], size


def run_worker(args):
    data = data_paths(args.folder)
    if args.worker == "ours":
        start, epochs, final, size = ours_worker(args.job, data)
    else:
        start, epochs, final, size = fastai_worker(args.job, data, args.epochs, args.size)
    times = [t - start for t, _ in epochs]
    accuracy = [a for _, a in epochs]
    print(json.dumps({"times": times, "accuracy": accuracy, "final": final, "size": size}))


def run_side(side, job, args, epochs=None, size=None):
    command = [sys.executable, __file__, "--worker", side, "--job", job, "--folder", args.folder]
    if epochs:
        command += ["--epochs", str(epochs), "--size", str(size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"the {side} run of {job} failed:\n{tail}")
    return json.loads(lines[-1])


# -- the comparison ---------------------------------------------------------------------------------


def time_to(run, threshold):
    return next((t for t, a in zip(run["times"], run["accuracy"]) if a >= threshold), None)


def compare(job, runs):
    """The threshold every run reached, and the median time to it and final accuracy per side."""
    bests = [max(run["accuracy"]) for side in runs.values() for run in side]
    reached = [t for t in THRESHOLDS if t <= min(bests) + 1e-9]
    threshold = reached[-1] if reached else None
    summary = {}
    for side, side_runs in runs.items():
        times = [time_to(run, threshold) for run in side_runs] if threshold else []
        summary[side] = {
            "time": statistics.median(times) if times else None,
            "final": statistics.median(run["final"] for run in side_runs),
            "epochs": len(side_runs[0]["accuracy"]),
            "size": side_runs[0]["size"],
        }
    return threshold, summary


def describe_machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as file:
            lines = file.read().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        model += " (" + " ".join(f for f in flags if f in ("avx512f", "avx512_bf16", "amx_bf16"))
        model += ")"
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    args.folder = args.folder or tempfile.mkdtemp(prefix="vs_fastai_")
    make_data(args.folder)
    print(f"machine: {describe_machine()}; data in {args.folder}")
    for job in args.jobs:
        runs = {"ours": [], "fastai": []}
        for repeat in range(args.repeats):
            # fastai trains as many epochs as ours chose for the job, at the size ours chose.
            if not runs["ours"]:
                runs["ours"].append(run_side("ours", job, args))
            epochs = len(runs["ours"][0]["accuracy"])
            size = runs["ours"][0]["size"]
            order = ("fastai", "ours") if repeat % 2 == 0 else ("ours", "fastai")
            for side in order:
                if side == "ours" and len(runs["ours"]) > repeat:
                    continue
                runs[side].append(run_side(side, job, args, epochs, size))
            for side in ("ours", "fastai"):
                run = runs[side][repeat]
                accuracy = " ".join(f"{a:.3f}" for a in run["accuracy"])
                print(f"  {job} {side} run {repeat + 1}: accuracy by epoch {accuracy}")
                print(f"    end of each epoch at {' '.join(f'{t:.1f}' for t in run['times'])} s")
        threshold, summary = compare(job, runs)
        for side in ("ours", "fastai"):
            line = summary[side]
            shown = "-" if line["time"] is None else f"{line['time']:.1f} s"
            print(
                f"{job} {side}: {line['epochs']} epochs at {line['size']} px, to {threshold:.2f} "
                f"in {shown}, final accuracy {line['final']:.3f}"
            )
        ours, theirs = summary["ours"]["time"], summary["fastai"]["time"]
        if ours is not None and theirs:
            print(f"{job}: time-to-accuracy ratio ours/fastai = {ours / theirs:.2f}")
        else:
            print(f"{job}: no threshold both reached in every run")


if __name__ == "__main__":
    main()
