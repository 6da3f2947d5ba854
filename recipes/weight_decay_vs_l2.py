"""
Title: Weight decay vs L2 regularization: one thing for SGD, two for Adam
Shows: the lecture's update rules, checked on real weights. L2 in the loss adds
    lambda * w to the gradient; decoupled weight decay subtracts lr * lambda * w
    from the weights after the step. For plain SGD the two updates are the same;
    for Adam the L2 term goes through the adaptive scaling, so large-gradient
    weights are barely regularized (Loshchilov & Hutter 2019, "Decoupled Weight
    Decay Regularization"). Then the four set-ups train on the same data.
Run:
    python recipes/weight_decay_vs_l2.py                  # generated shapes, ~2 min on 2 cores
    python recipes/weight_decay_vs_l2.py --data PetImages/ --image-size 64
    python recipes/weight_decay_vs_l2.py --quick          # the test suite's run
Reaches: part 1 on any data: after one step from the same weights, SGD + L2 and
    SGD + weight decay agree to float32 rounding (about 1e-7), while Adam + L2 and
    AdamW differ by about 1e-3, four orders of magnitude more.
    Part 2 prints the validation accuracy of the four set-ups; the figures of a
    full run are in docs/experiments.md.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import numpy as np
import tensorflow as tf

"""
## Settings

lambda = 5e-4, the CIFAR weight decay of He et al. 2015. The rates are the
usual ones of each optimizer.
"""

WEIGHT_DECAY = 5e-4
RATES = {"sgd": 0.05, "adam": 1e-3}
STEPS = 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", help="a folder of class folders (default: generated shapes)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="few images and epochs")
    parser.add_argument("--out", default="runs/weight_decay_vs_l2")
    return parser.parse_args(argv)


def read_data(args):
    folder = args.data
    if folder is None:
        images = 300 if args.quick else 1000
        folder = kr.data.make_demo_dataset(
            os.path.join(args.out, "shapes"), task="source", num_images=images, image_size=32
        )
    size = (args.image_size, args.image_size)
    return kr.data.image_folder(folder, image_size=size, validation_split=0.2, scan_cache=False)


"""
## Part 1: the update rules, step by step

Both runs start from the same weights and take one step on the same batch.
The forward pass runs with `training=False`, so dropout draws no random
mask and the two runs see exactly the same gradients of the data loss.
(After more steps, float32 rounding differences grow through the network:
about 5e-6 after 2 steps and 1e-4 after 5 with SGD, still far below Adam's.)
"""


def l2_penalty(model):
    return (
        0.5
        * WEIGHT_DECAY
        * sum(keras.ops.sum(keras.ops.square(v)) for v in model.trainable_variables)
    )


def take_steps(model, weights, optimizer, with_l2, images, labels):
    model.set_weights(weights)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy()
    for _ in range(STEPS):
        with tf.GradientTape() as tape:
            loss = cross_entropy(labels, model(images, training=False))
            if with_l2:
                loss = loss + l2_penalty(model)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    return [np.array(v) for v in model.trainable_variables]


def update_rules(model, images, labels):
    """Max weight difference after `STEPS` steps: SGD + L2 vs SGD + decay, Adam + L2 vs AdamW."""
    weights = model.get_weights()
    pairs = {
        "sgd": (
            lambda: keras.optimizers.SGD(RATES["sgd"]),
            # Keras' decay is decoupled (w -= lr * lambda * w), the L2 gradient's twin for SGD.
            lambda: keras.optimizers.SGD(RATES["sgd"], weight_decay=WEIGHT_DECAY),
        ),
        "adam": (
            lambda: keras.optimizers.Adam(RATES["adam"]),
            lambda: keras.optimizers.AdamW(RATES["adam"], weight_decay=WEIGHT_DECAY),
        ),
    }
    differences = {}
    for name, (with_l2, decoupled) in pairs.items():
        a = take_steps(model, weights, with_l2(), True, images, labels)
        b = take_steps(model, weights, decoupled(), False, images, labels)
        differences[name] = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
    model.set_weights(weights)
    return differences


"""
## Part 2: training with each

The same initial weights and data order for all four. L2 goes into the
compiled loss as the penalty above; weight decay is the optimizer's.
"""


def train(setup, train_ds, val_ds, weights, epochs, num_classes, image_size):
    optimizer_name, regularizer = setup
    model = kr.create_model(
        "baseline_cnn", num_classes=num_classes, input_shape=(image_size, image_size, 3)
    )
    model.set_weights(weights)
    rate = RATES[optimizer_name]
    cross_entropy = keras.losses.SparseCategoricalCrossentropy()
    if regularizer == "L2 in the loss":
        optimizer = (keras.optimizers.SGD if optimizer_name == "sgd" else keras.optimizers.Adam)(
            rate
        )

        def loss(y_true, y_pred):
            return cross_entropy(y_true, y_pred) + l2_penalty(model)
    else:
        kind = keras.optimizers.SGD if optimizer_name == "sgd" else keras.optimizers.AdamW
        optimizer = kind(rate, weight_decay=WEIGHT_DECAY)
        loss = cross_entropy
    model.compile(optimizer, loss, metrics=["accuracy"])
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0)
    return {
        "optimizer": optimizer_name,
        "regularizer": regularizer,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "train_loss": float(history.history["loss"][-1]),
    }


SETUPS = [
    ("sgd", "L2 in the loss"),
    ("sgd", "weight decay"),
    ("adam", "L2 in the loss"),
    ("adam", "weight decay"),
]


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.epochs = 2
    keras.utils.set_random_seed(0)
    train_ds, val_ds, info = read_data(args)
    size = args.image_size
    model = kr.create_model(
        "baseline_cnn", num_classes=info.num_classes, input_shape=(size, size, 3)
    )
    images, labels = next(iter(train_ds))
    differences = update_rules(model, images, labels)
    print("Part 1: largest weight difference after one step, L2 in the loss vs weight decay")
    print(f"  SGD:  {differences['sgd']:.2e}   (the same update)")
    print(f"  Adam: {differences['adam']:.2e}   (Adam + L2 is not AdamW)")
    weights = model.get_weights()
    results = [
        train(setup, train_ds, val_ds, weights, args.epochs, info.num_classes, size)
        for setup in SETUPS
    ]
    print(f"Part 2: {args.epochs} epochs, {sum(info.counts.values())} training images")
    print("| optimizer | regularization | val accuracy | train loss |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['optimizer']} | {r['regularizer']} | {r['val_accuracy']:.3f} | "
            f"{r['train_loss']:.3f} |"
        )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "weight_decay_vs_l2.json"), "w") as file:
        json.dump({"update_rules": differences, "training": results}, file, indent=1)
    return differences, results


if __name__ == "__main__":
    main()
