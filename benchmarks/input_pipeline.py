"""Input-pipeline speed: `kr.data.image_folder` beside `keras.utils.image_dataset_from_directory`.

Both read the same folder of JPEG class folders at the same image size and
batch size, shuffled, and are iterated to the end for `--epochs` epochs;
each repeat times one pipeline and then the other, swapping which goes
first, after reading every file once so that both find them in the OS page
cache. For the first epoch (reading and decoding every file) and for the
later ones (ours reads its in-memory cache of decoded images, keras decodes
again) it prints images per second of wall-clock time and images per
CPU-second of the process (all threads); on a shared machine whose CPU
share varies, the second is the steadier measure of each pipeline's work.
It also prints the time our scan of bad files takes, uncached and cached.
Keras stops at the first unreadable file, so the folder must be clean: the
default is a generated demo folder.

Run:
    python benchmarks/input_pipeline.py                     # 2,000 generated 320x320 JPEGs
    python benchmarks/input_pipeline.py --image-size 160 --batch-size 64
    python benchmarks/input_pipeline.py --no-cache           # ours without its cache
    python benchmarks/input_pipeline.py --data PetImages/   # your folder, without bad files
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import describe_machine  # noqa: E402

import kerasrecipes as kr  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder of class folders; default: a generated one")
    parser.add_argument("--demo-images", type=int, default=2000, help="generated images")
    parser.add_argument("--demo-size", type=int, default=320, help="side of generated images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--no-cache", action="store_true", help="run ours with cache=False, as keras runs"
    )
    return parser.parse_args()


def read_all(folder):
    """Reads every file once, so both pipelines find the folder in the OS page cache."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                f.read()


def epoch_rates(dataset, epochs, folder):
    """(images per wall-clock second, images per CPU-second) of each full pass over `dataset`."""
    read_all(folder)
    rates = []
    for _ in range(epochs):
        wall, cpu, count = time.perf_counter(), time.process_time(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        rates.append((count / (time.perf_counter() - wall), count / (time.process_time() - cpu)))
    return rates


def ours(folder, args):
    train, _, _ = kr.data.image_folder(
        folder,
        image_size=(args.image_size,) * 2,
        batch_size=args.batch_size,
        seed=0,
        cache=not args.no_cache and "auto",
    )
    return train


def theirs(folder, args):
    return keras.utils.image_dataset_from_directory(
        folder,
        image_size=(args.image_size,) * 2,
        batch_size=args.batch_size,
        seed=0,
        verbose=False,
    )


def main():
    args = parse_args()
    folder = args.data
    if folder is None:
        folder = os.path.join(tempfile.mkdtemp(), "shapes")
        start = time.perf_counter()
        kr.data.make_demo_dataset(
            folder, task="source", num_images=args.demo_images, image_size=args.demo_size
        )
        print(
            f"generated {args.demo_images} {args.demo_size}x{args.demo_size} JPEGs in "
            f"{time.perf_counter() - start:.1f} s"
        )
    os.environ["KERASRECIPES_CACHE"] = tempfile.mkdtemp()
    print(describe_machine())
    for label, cache in (("uncached", False), ("cached", True), ("cached", True)):
        start = time.perf_counter()
        report = kr.data.verify_images(folder, cache=cache)
        if label == "cached" and report.decoded:
            continue  # the first cached call fills the cache
        print(f"scan of {len(report.valid)} files ({label}): {time.perf_counter() - start:.2f} s")
    print(
        f"batch {args.batch_size} at {args.image_size}x{args.image_size}, {args.epochs} epochs "
        "per pipeline per repeat; img/s of wall-clock time (img per CPU-second)"
    )
    for make in (ours, theirs):  # warm-up: thread pools, traced map functions
        for _ in make(folder, args).take(2):
            pass
    ratios = {"epoch 1": [], "epoch 1 CPU": [], "later": [], "later CPU": [], "whole run": []}
    for repeat in range(args.repeats):
        order = [("ours", ours), ("keras", theirs)]
        if repeat % 2:
            order.reverse()
        rates = {name: epoch_rates(make(folder, args), args.epochs, folder) for name, make in order}
        summary = {}
        for name, per_epoch in rates.items():
            later = per_epoch[1:]
            summary[name] = {
                "epoch 1": per_epoch[0][0],
                "epoch 1 CPU": per_epoch[0][1],
                "later": statistics.mean(r[0] for r in later),
                "later CPU": statistics.mean(r[1] for r in later),
                "whole run": len(per_epoch) / sum(1 / r[0] for r in per_epoch),
            }
        for key in ratios:
            ratios[key].append(summary["ours"][key] / summary["keras"][key])
        line = "; ".join(
            f"{stage} ours {summary['ours'][stage]:.0f} ({summary['ours'][stage + ' CPU']:.0f}), "
            f"keras {summary['keras'][stage]:.0f} ({summary['keras'][stage + ' CPU']:.0f})"
            for stage in ("epoch 1", "later")
        )
        line += (
            f"; whole run ours {summary['ours']['whole run']:.0f}, "
            f"keras {summary['keras']['whole run']:.0f}"
        )
        print(f"  repeat {repeat + 1}: {line}")
    medians = ", ".join(f"{key} {statistics.median(values):.2f}" for key, values in ratios.items())
    print(f"median ratios ours / keras over {args.repeats} repeats: {medians}")


if __name__ == "__main__":
    main()
