"""Prediction speed on a folder: `classifier.predict_images(folder)` beside plain Keras.

The peer is what a Keras user writes without us:
`keras.utils.image_dataset_from_directory(folder, shuffle=False)` (bilinear
resize, batches of 32) and `model.predict` on the same network. Ours scans
the files first (the training pipeline's scan, so unreadable files are
skipped rather than fatal) and decodes through `tf.data` in parallel. Each
repeat times both, swapping which goes first, after reading every file once
so both find the folder in the OS page cache; the scan cache is cleared
before each of ours, so every repeat pays for a full scan. It prints
images per second for each and their ratio.

The classifier is the demo's (`baseline_cnn` on 32x32 images, as `make demo`
trains) unless `--model` names a registered model, built with random weights
at `--image-size`.

Run:
    python benchmarks/predict_throughput.py                 # 1,000 demo images, the demo model
    python benchmarks/predict_throughput.py --model efficientnet_b0 --image-size 224
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from input_pipeline import read_all
from train_step import describe_machine

import kerasrecipes as kr


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="demo images in the folder")
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def main():
    args = parse_args()
    work = tempfile.mkdtemp()
    os.environ["KERASRECIPES_CACHE"] = os.path.join(work, "cache")
    folder = kr.data.make_demo_dataset(os.path.join(work, "demo"), num_images=args.images)
    read_all(folder)
    size = args.image_size
    network = kr.create_model(args.model, num_classes=2, input_shape=(size, size, 3))
    classifier = kr.ImageClassifier(network, class_names=["ellipse", "pentagon"])

    def ours():
        shutil.rmtree(os.environ["KERASRECIPES_CACHE"], ignore_errors=True)
        return len(classifier.predict_images(folder, batch_size=args.batch_size))

    def keras_alone():
        dataset = keras.utils.image_dataset_from_directory(
            folder,
            image_size=(size, size),
            batch_size=args.batch_size,
            shuffle=False,
            labels=None,
            verbose=False,
        )
        return len(network.predict(dataset, verbose=0))

    ours(), keras_alone()  # warm-up: traces both predict functions
    rates = {"ours": [], "keras": []}
    for repeat in range(args.repeats):
        order = [("ours", ours), ("keras", keras_alone)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - started))
    print(describe_machine())
    print(
        f"{args.images} demo JPEGs (64x64) -> {args.model} at {size}x{size}, batch {args.batch_size}"
    )
    for name, label in (("ours", "predict_images (scan + tf.data)"), ("keras", "keras alone")):
        print(
            f"{label:<34} {statistics.median(rates[name]):8.0f} images/s (median of {args.repeats})"
        )
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["keras"])
    print(f"ratio ours/keras: {ratio:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
