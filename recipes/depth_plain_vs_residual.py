"""
Title: Plain networks vs ResNets as they get deeper
Shows: the experiment behind residual connections (He et al. 2015, Sec. 4.2,
    Fig. 6): CIFAR networks of depth 6n+2 with and without shortcuts, the same
    layers, data and training otherwise. The lecture: plain networks improve
    "up to a depth of around 20", then get worse, and not from overfitting: their
    training error rises too. ResNets keep improving with depth.
Run:
    python recipes/depth_plain_vs_residual.py                  # stripes, ~17 min on 2 cores
    python recipes/depth_plain_vs_residual.py --data my_images/ --depths 20 32 44 56
    python recipes/depth_plain_vs_residual.py --quick          # the test suite's run
Reaches: on the demo's stripes (10 classes, 3,200 training images at 32x32,
    10 epochs of 50 steps, no augmentation so the training error shows
    optimization alone), plain-56 ends at 5.7% training error and 5.6%
    validation error (11.5% training error during its last epoch), ResNet-56
    at 0.0% and 0.0% (0.3%); at depths 8 and 20 both kinds reach 0. During
    training, plain-20 needed 8 epochs to get under 1% error, ResNet-20 three.
    The plot is in docs/experiments.md.
    With CIFAR-10 and the full schedule the paper reports 8.75% test error for
    ResNet-20 and 6.97% for ResNet-56 (Table 6), and plain-56 above plain-20 in
    both training and test error (Fig. 6).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import matplotlib
import tensorflow as tf

matplotlib.use("Agg")
import matplotlib.pyplot as plt

"""
## Settings

The paper's optimizer: SGD with momentum 0.9 from a rate of 0.1, divided by
10 at 50% and 75% of training, batch 128. Both kinds start from the
paper's initialization (`zero_init_residual=False`): starting the ResNet's
blocks at the identity is a later trick (Goyal et al. 2017) that a plain
network cannot use, and it would blur the comparison.
"""

LEARNING_RATE = 0.1
LR_DROPS = (0.5, 0.75)
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-3  # decoupled; about the paper's 1e-4 L2 through momentum 0.9
KINDS = {"plain": "none", "ResNet": "zero_pad"}  # the `shortcut` of `cifar_resnet`
QUICK_DEPTHS = (8, 20)  # --quick: 500 images at 16x16, 4 epochs of 7 steps
QUICK_IMAGE_SIZE = 16


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", help="a folder of class folders (default: generated shapes)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=4000, help="generated images")
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 20, 56], help="6n+2 each")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="the paper: 128, on 50k images")
    parser.add_argument("--quick", action="store_true", help="few images, depths and epochs")
    parser.add_argument("--out", default="runs/depth_plain_vs_residual")
    return parser.parse_args(argv)


def read_data(args):
    """`(train_ds, val_ds, num_classes)`: the folder's images, or generated stripes."""
    size = (args.image_size, args.image_size)
    if args.data:
        train_ds, val_ds, info = kr.data.image_folder(
            args.data, image_size=size, batch_size=args.batch_size, validation_split=0.2
        )
        return train_ds, val_ds, info.num_classes
    # The demo's CIFAR-shaped stripes: 10 classes of gratings, 20% held out.
    # (The demo's shapes need far more steps from scratch than a CPU run allows.)
    images, labels = kr.data.demo_images(args.images, args.image_size, num_classes=10)
    split = int(0.8 * len(images))

    def batches(x, y, shuffle):
        data = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
        data = data.shuffle(len(x), seed=0) if shuffle else data
        return data.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

    return (
        batches(images[:split], labels[:split], True),
        batches(images[split:], labels[split:], False),
        10,
    )


"""
## One network, trained and measured

The training error is measured at the end on the training images in
inference mode (BatchNorm's moving statistics, no dropout), as the
validation error is, so the two compare directly.
"""


def train(depth, kind, train_ds, val_ds, num_classes, epochs, image_size):
    keras.utils.set_random_seed(0)
    model = kr.models.resnet.cifar_resnet(
        depth,
        shortcut=KINDS[kind],
        zero_init_residual=False,
        num_classes=num_classes,
        input_shape=(image_size, image_size, 3),
    )
    steps = int(train_ds.cardinality()) * epochs
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(steps * f) for f in LR_DROPS],
        [LEARNING_RATE, LEARNING_RATE / 10, LEARNING_RATE / 100],
    )
    optimizer = keras.optimizers.SGD(schedule, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0)
    train_eval = model.evaluate(train_ds, verbose=0, return_dict=True)
    val_eval = model.evaluate(val_ds, verbose=0, return_dict=True)
    return {
        "depth": depth,
        "kind": kind,
        "parameters": model.count_params(),
        "train_error": 1.0 - train_eval["accuracy"],
        "val_error": 1.0 - val_eval["accuracy"],
        "train_loss": train_eval["loss"],
        "val_error_per_epoch": [1.0 - a for a in history.history["val_accuracy"]],
        "train_error_per_epoch": [1.0 - a for a in history.history["accuracy"]],
    }


"""
## The plot: Fig. 6 of the paper

Per kind, the error per epoch for each depth: thin dashed lines for
training error (measured on the fly, in training mode), bold lines for
validation error.
"""


def plot(results, path):
    figure, axes = plt.subplots(1, len(KINDS), figsize=(10, 4), sharey=True)
    for axis, kind in zip(axes, KINDS, strict=True):
        for r in (r for r in results if r["kind"] == kind):
            line = axis.plot(r["val_error_per_epoch"], lw=2, label=f"{kind}-{r['depth']}")
            axis.plot(r["train_error_per_epoch"], "--", lw=1, color=line[0].get_color())
        axis.set(title=kind, xlabel="epoch", ylabel="error (dashed: training)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.images, args.depths, args.epochs, args.batch_size = 500, list(QUICK_DEPTHS), 4, 64
        args.image_size = QUICK_IMAGE_SIZE
    train_ds, val_ds, num_classes = read_data(args)
    results = [
        train(depth, kind, train_ds, val_ds, num_classes, args.epochs, args.image_size)
        for depth in args.depths
        for kind in KINDS
    ]
    steps = int(train_ds.cardinality()) * args.epochs
    print(f"{args.epochs} epochs, {steps} steps of {args.batch_size} images")
    print("| depth | kind | parameters | training error | validation error |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['depth']} | {r['kind']} | {r['parameters'] / 1e6:.2f} M | "
            f"{r['train_error']:.3f} | {r['val_error']:.3f} |"
        )
    os.makedirs(args.out, exist_ok=True)
    plot(results, os.path.join(args.out, "depth_plain_vs_residual.png"))
    with open(os.path.join(args.out, "depth_plain_vs_residual.json"), "w") as file:
        json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
