"""
Title: Fine-tuning vs training from scratch, as the training set grows
Shows: the lecture's "fine-tuning almost always helps", measured: the same
    network trained on 5 to 100 images per class, once from random weights and
    once fine-tuned from weights pre-trained on a related task (freeze, train
    the head, unfreeze), with the same number of steps; accuracy on the same
    held-out images, and the plot of accuracy against the number of images.
Run:
    python recipes/finetune_vs_scratch.py                  # generated shapes, ~5 min on 2 cores
    python recipes/finetune_vs_scratch.py --data PetImages/ --model efficientnet_b0 \
        --weights imagenet --image-size 224
    python recipes/finetune_vs_scratch.py --quick          # the test suite's run (16x16, the
                                                           # demo backbone pre-trained 2 epochs)
Reaches: on the demo (ellipses vs pentagons at 32x32, 150 test images; the
    backbone pre-trained on the ten other shapes of the demo's source task),
    fine-tuned vs from scratch: 0.820 vs 0.427 with 5 images per class, 0.980
    vs 0.527 with 25, 1.000 vs 0.913 with 100. Fine-tuning is ahead at every
    size; the gap shrinks once the scratch network has enough images. Full
    output and plot in docs/experiments.md.
"""

import argparse
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import matplotlib
import numpy as np
import tensorflow as tf

matplotlib.use("Agg")
import matplotlib.pyplot as plt

"""
## Settings

Every run takes `STEPS` optimizer steps, however small its training set,
so a small set is not also a short training. The fine-tuned network spends
the first third of them on the new head (backbone frozen) and the rest
with the backbone unfrozen at a tenth of the head's rate, `kr.fine_tune`'s
defaults; from scratch, every step trains the whole network at the full
rate (what `weights="none"` means to `kr.fine_tune`).
"""

SIZES = (5, 10, 25, 50, 100)  # training images per class
STEPS = 150
BATCH_SIZE = 32
# A small set is repeated within an epoch: 5 images per class make one batch, and without
# this a run would measure the test set after each of its 150 steps.
MIN_STEPS_PER_EPOCH = 10
QUICK_PRETRAIN_EPOCHS = 2  # --quick: the demo backbone's pre-training (DEMO_EPOCHS, 6, otherwise)
QUICK_IMAGE_SIZE = 16  # --quick: a quarter of the pixels of the full run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", help="a folder of class folders (default: the demo's shapes)")
    parser.add_argument("--model", default="baseline_cnn")
    parser.add_argument("--weights", default="demo", help="demo, imagenet or a weights file")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer steps")
    parser.add_argument("--out", default="runs/finetune_vs_scratch")
    return parser.parse_args(argv)


"""
## The data: one pool, nested subsets, one test set

The folder is split once: 30% of each class is the test set every run is
measured on; the first n images of each class in the rest train the run
of size n, so each larger set contains the smaller ones. An epoch passes
over the training set as many times as it takes to make `MIN_STEPS_PER_EPOCH`
batches, each pass shuffled anew.
"""


def read_pool(args):
    folder = args.data
    if folder is None:
        folder = kr.data.make_demo_dataset(
            os.path.join(args.out, f"shapes_{args.image_size}px"),
            task="target",
            num_images=2 * (max(args.sizes) + 150),
            image_size=args.image_size,
        )
    size = (args.image_size, args.image_size)
    train, test, info = kr.data.image_folder(
        folder, image_size=size, validation_split=0.3, shuffle=False, scan_cache=False
    )
    images, labels = (np.concatenate(part) for part in zip(*train.as_numpy_iterator()))
    too_small = {name: n for name, n in info.counts.items() if n < max(args.sizes)}
    if too_small:
        raise SystemExit(
            f"{folder}: after holding out 30% for testing, these classes have fewer than "
            f"{max(args.sizes)} images: {too_small}. Pass smaller --sizes."
        )
    return images, labels, test, info


def first_per_class(images, labels, n, seed):
    chosen = np.concatenate([np.flatnonzero(labels == k)[:n] for k in np.unique(labels)])
    data = tf.data.Dataset.from_tensor_slices((images[chosen], labels[chosen]))
    passes = math.ceil(MIN_STEPS_PER_EPOCH / math.ceil(len(chosen) / BATCH_SIZE))
    return data.cache().shuffle(len(chosen), seed=seed).batch(BATCH_SIZE).repeat(passes)


"""
## One run

`kr.fine_tune` with a fixed number of epochs (no early stopping, so the
test set picks nothing); the test accuracy is that of the last epoch.
"""


def train(start, train_ds, test_ds, num_classes, args):
    steps_per_epoch = int(train_ds.cardinality())
    epochs = math.ceil(args.steps / steps_per_epoch)
    keras.utils.set_random_seed(0)
    weights = args.weights if start == "fine-tuned" else "none"
    backbone = kr.load_backbone(args.model, weights, args.image_size, verbose=0)
    head_epochs = epochs // 3 if start == "fine-tuned" else 0
    _, history = kr.fine_tune(
        backbone,
        train_ds,
        test_ds,
        num_classes=num_classes,
        model=args.model,
        weights=weights,
        image_size=args.image_size,
        head_epochs=head_epochs,
        finetune_epochs=epochs - head_epochs,
        early_stopping_patience=None,
        verbose=0,
    )
    return float(history.history["val_accuracy"][-1])


def plot(results, path):
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for start in ("from scratch", "fine-tuned"):
        axis.plot(
            [r["images_per_class"] for r in results],
            [r[start] for r in results],
            "o-",
            label=start,
        )
    axis.set(xscale="log", xlabel="training images per class", ylabel="test accuracy")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.image_size = [5, 50], 60, QUICK_IMAGE_SIZE
        if args.weights == "demo":  # a shorter pre-training, cached apart from the full one
            _, report = kr.demo_backbone(args.model, args.image_size, QUICK_PRETRAIN_EPOCHS)
            args.weights = report["path"]
    images, labels, test_ds, info = read_pool(args)
    print(f"Test set: {sum(info.val_counts.values())} images; {args.steps} steps per run")
    results = []
    for n in args.sizes:
        train_ds = first_per_class(images, labels, n, seed=0)
        row = {"images_per_class": n}
        for start in ("from scratch", "fine-tuned"):
            row[start] = train(start, train_ds, test_ds, info.num_classes, args)
        results.append(row)
        print(
            f"{n:4d} images per class: from scratch {row['from scratch']:.3f}, "
            f"fine-tuned {row['fine-tuned']:.3f}"
        )
    print("| images per class | from scratch | fine-tuned | gain |")
    print("|---|---|---|---|")
    for r in results:
        gain = r["fine-tuned"] - r["from scratch"]
        print(
            f"| {r['images_per_class']} | {r['from scratch']:.3f} | {r['fine-tuned']:.3f} | "
            f"{gain:+.3f} |"
        )
    os.makedirs(args.out, exist_ok=True)
    plot(results, os.path.join(args.out, "finetune_vs_scratch.png"))
    with open(os.path.join(args.out, "finetune_vs_scratch.json"), "w") as file:
        json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
