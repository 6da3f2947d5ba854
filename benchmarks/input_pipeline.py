"""Input-pipeline speed: `kr.data.image_folder` beside `keras.utils.image_dataset_from_directory`.

Both read the same folder of JPEG class folders at the same image size and
batch size, shuffled, and are iterated to the end for `--epochs` epochs;
each repeat times one pipeline and then the other, swapping which goes
first. It prints images/second for the first epoch (reading and decoding
every file) and for the later epochs (ours reads its in-memory cache of
decoded images there, keras decodes again), and the time our scan of bad
files takes, uncached and cached. Keras stops at the first unreadable file,
so the folder must be clean: the default is a generated demo folder.

Run:
    python benchmarks/input_pipeline.py                     # 3,000 generated 320x320 JPEGs
    python benchmarks/input_pipeline.py --data PetImages/   # your folder, without bad files
    python benchmarks/input_pipeline.py --image-size 160 --batch-size 64 --repeats 5
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
    parser.add_argument("--demo-size", type=int, default=320, help="side of generated images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def epoch_rates(dataset, epochs):
    """Images/second of each full pass over `dataset`."""
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def ours(folder, args):
    train, _, _ = kr.data.image_folder(
        folder, image_size=(args.image_size,) * 2, batch_size=args.batch_size, seed=0
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
        kr.data.make_demo_dataset(folder, task="source", image_size=args.demo_size)
        print(
            f"generated 3,000 {args.demo_size}x{args.demo_size} JPEGs in "
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
        f"epochs of batch {args.batch_size} at {args.image_size}x{args.image_size}, "
        f"{args.epochs} epochs per pipeline per repeat"
    )
    first_ratios, later_ratios = [], []
    for repeat in range(args.repeats):
        order = [("ours", ours), ("keras", theirs)]
        if repeat % 2:
            order.reverse()
        rates = {name: epoch_rates(make(folder, args), args.epochs) for name, make in order}
        first = rates["ours"][0] / rates["keras"][0]
        later = statistics.mean(rates["ours"][1:]) / statistics.mean(rates["keras"][1:])
        first_ratios.append(first)
        later_ratios.append(later)
        print(
            f"  repeat {repeat + 1}: epoch 1 ours {rates['ours'][0]:.0f} img/s, keras "
            f"{rates['keras'][0]:.0f} img/s, ratio {first:.2f}; later epochs ours "
            f"{statistics.mean(rates['ours'][1:]):.0f} img/s, keras "
            f"{statistics.mean(rates['keras'][1:]):.0f} img/s, ratio {later:.2f}"
        )
    print(
        f"median ratio ours / keras: epoch 1 {statistics.median(first_ratios):.2f}, "
        f"later epochs {statistics.median(later_ratios):.2f} over {args.repeats} repeats"
    )


if __name__ == "__main__":
    main()
