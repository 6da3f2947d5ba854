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

With `--presets` it measures the augmentation presets instead: images/s of
the cached training pipeline with each preset (per-image draws, as now),
beside the batch-wide layers the presets used before (Keras' `RandomCrop`
and `RandAugment`, keras-cv's `RandomCropAndResize`; keras-cv must be
installed for those: `pip install keras-cv`), and beside
`image_dataset_from_directory` without augmentation.

Run:
    python benchmarks/input_pipeline.py                     # 2,000 generated 320x320 JPEGs
    python benchmarks/input_pipeline.py --presets --image-size 160
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
import tensorflow as tf

tf.get_logger().setLevel("ERROR")  # keras-cv's per-image while_loop warnings

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
    parser.add_argument(
        "--presets", action="store_true", help="measure the augmentation presets, before and after"
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


def batch_wide_preset(preset, image_size, seed=0):
    """The preset as it was before it drew per image: one crop and one RandAugment choice a batch.

    None when keras-cv, which the old presets used for their crop, is not installed.
    """
    try:
        import keras_cv
    except ImportError:
        return None
    flip = keras.layers.RandomFlip("horizontal", seed=seed + 1)
    if preset == "cifar":
        crop = keras.layers.RandomCrop(*image_size, seed=seed)
        layers = [lambda x: crop(keras.ops.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]])), flip]
    else:
        layers = [
            keras_cv.layers.RandomCropAndResize(
                target_size=image_size,
                crop_area_factor=(0.08 if preset == "randaugment" else 0.25, 1.0),
                aspect_ratio_factor=(3 / 4, 4 / 3),
                seed=seed,
            ),
            flip,
        ]
        if preset == "randaugment":
            layers.append(keras.layers.RandAugment(seed=seed + 2))
    mixer = {"mixup": keras.layers.MixUp(alpha=0.2, seed=seed + 10)}.get(preset)
    if preset == "cutmix":
        mixer = keras.layers.CutMix(factor=1.0, seed=seed + 10)

    def augment(images, labels):
        for layer in layers:
            images = layer(images, training=True) if hasattr(layer, "built") else layer(images)
        if mixer is not None:
            mixed = mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    return augment


def preset_rates(folder, args):
    """Images/s of the cached pipeline with each preset: batch-wide (before), per image (now)."""
    size = (args.image_size,) * 2
    plain, _, _ = kr.data.image_folder(
        folder, image_size=size, batch_size=args.batch_size, label_mode="categorical", cache=True
    )
    for _ in plain:  # fills the cache of decoded images
        pass

    def rate(dataset):
        counts = []
        for _ in range(args.epochs):
            start, count = time.perf_counter(), 0
            for images, _ in dataset:
                count += int(images.shape[0])
            counts.append(count / (time.perf_counter() - start))
        return statistics.median(counts)

    keras_plain = theirs(folder, args)
    rate(keras_plain.take(2))
    print(f"image_dataset_from_directory, no augmentation: {rate(keras_plain):.0f} img/s")
    print(f"cached image_folder, no augmentation: {rate(plain):.0f} img/s")
    print("preset: before (batch-wide) img/s, after (per image) img/s, after / before")
    for preset in kr.data.PRESETS[1:]:
        after_layer = kr.data.augmentation(preset, image_size=size, seed=0)
        variants = {"after": lambda x, y, layer=after_layer: layer((x, y), training=True)}
        before = batch_wide_preset(preset, size)
        if before is not None:
            variants["before"] = before
        rates = {name: [] for name in variants}
        for repeat in range(args.repeats):
            order = list(variants.items())
            if repeat % 2:
                order.reverse()
            for name, function in order:
                dataset = plain.map(function, num_parallel_calls=tf.data.AUTOTUNE)
                rates[name].append(rate(dataset.prefetch(tf.data.AUTOTUNE)))
        after = statistics.median(rates["after"])
        if "before" in rates:
            before = statistics.median(rates["before"])
            print(f"  {preset}: {before:.0f}, {after:.0f}, {after / before:.2f}")
        else:
            print(f"  {preset}: (keras-cv not installed), {after:.0f}")


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
    if args.presets:
        print(f"batch {args.batch_size} at {args.image_size}x{args.image_size}")
        preset_rates(folder, args)
        return
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
