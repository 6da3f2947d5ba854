"""
Title: Modern training on a small ResNet vs a bigger ResNet with the baseline training
Shows: the point of Bello et al. 2021 ("Revisiting ResNets: Improved Training
    and Scaling Strategies"), the first source's example of a muddled driver:
    much of what is credited to a new architecture comes from the training
    recipe that came with it. Two networks (ResNet-20 and the 3x deeper
    ResNet-56) x two recipes (the baseline; augmentation, label smoothing,
    decoupled weight decay, stochastic depth and an EMA of the weights), at
    the same number of epochs; validation accuracy, mean over seeds.
Run:
    python recipes/regularization_on_resnets.py                # shapes, ~20 min on 2 cores
    python recipes/regularization_on_resnets.py --data my_images/ --image-size 64
    python recipes/regularization_on_resnets.py --quick        # the test suite's run
Reaches: on the demo's shapes (10 classes, 800 training images at 32x32, 15
    epochs, 2 seeds; 20 minutes on 2 shared cores), the opposite of Bello et al.:
    ResNet-20 0.348 -> 0.218 with the modern training, ResNet-56 0.570 ->
    0.400. At this budget the networks still underfit, so the deeper network
    gains and the regularization costs. Full output and discussion in
    docs/experiments.md. The quick run asserts no direction.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import numpy as np

"""
## The two recipes

Both train from random weights with `kr.fine_tune` (`weights="none"`: one
phase, the whole network at the full rate), SGD with momentum 0.9 and the
rate cosine-decayed to 0, for the same number of epochs. The modern recipe
adds Bello et al.'s kinds of regularization, at strengths common for
small images (not tuned here); each line is a `kr.FineTuneConfig` field, except stochastic
depth, which is the network's own `drop_path_rate`.
"""

BASELINE = {"augment": None, "label_smoothing": 0.0, "weight_decay": 0.0, "ema": False}
MODERN = {"augment": "cifar", "label_smoothing": 0.1, "weight_decay": 5e-4, "ema": True}
MODERN_DROP_PATH = 0.1
NETWORKS = ("resnet20", "resnet56")
QUICK_NETWORKS = ("resnet20", "resnet32")  # --quick: the same 2x2 on a shallower second network
TRAINING = {"optimizer": "sgd", "head_lr": 0.05, "dropout": 0.0, "precision": "float32"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", help="a folder of class folders (default: generated shapes)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1000, help="generated images")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--networks", nargs=2, default=list(NETWORKS), help="small, bigger")
    parser.add_argument(
        "--quick", action="store_true", help="few images and epochs, one seed, ResNet-20 and -32"
    )
    parser.add_argument("--out", default="runs/regularization_on_resnets")
    return parser.parse_args(argv)


def read_data(args, seed):
    """`(train_ds, val_ds, num_classes)`; the seed draws the split and the training order."""
    folder = args.data
    if folder is None:
        # The demo's source task: 10 shapes. (The demo's stripes are too easy: every
        # recipe reaches 100% and there is nothing to compare.)
        folder = kr.data.make_demo_dataset(
            os.path.join(args.out, f"shapes_{args.images}_{args.image_size}px"),
            task="source",
            num_images=args.images,
            image_size=args.image_size,
        )
    size = (args.image_size, args.image_size)
    train_ds, val_ds, info = kr.data.image_folder(
        folder, image_size=size, validation_split=0.2, seed=seed, scan_cache=False
    )
    return train_ds, val_ds, info.num_classes


def train(network, recipe, args, seed):
    train_ds, val_ds, num_classes = read_data(args, seed)
    keras.utils.set_random_seed(seed)
    modern = recipe == "modern"
    backbone = kr.load_backbone(
        network,
        "none",
        args.image_size,
        drop_path_rate=MODERN_DROP_PATH if modern else 0.0,
    )
    _, history = kr.fine_tune(
        backbone,
        train_ds,
        val_ds,
        num_classes=num_classes,
        weights="none",
        finetune_epochs=args.epochs,
        early_stopping_patience=None,
        seed=seed,
        verbose=0,
        **TRAINING,
        **(MODERN if modern else BASELINE),
    )
    return {
        "val_accuracy": history.history["val_accuracy"][-1],
        "train_loss": history.history["loss"][-1],
    }


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.seeds, args.networks = 200, 1, 1, list(QUICK_NETWORKS)
    results = []
    for network in args.networks:
        for recipe in ("baseline", "modern"):
            runs = [train(network, recipe, args, seed) for seed in range(args.seeds)]
            accuracies = [run["val_accuracy"] for run in runs]
            results.append(
                {
                    "network": network,
                    "recipe": recipe,
                    "val_accuracy": float(np.mean(accuracies)),
                    "val_accuracy_std": float(np.std(accuracies)),
                    "runs": runs,
                }
            )
            print(f"{network} + {recipe} training: {np.mean(accuracies):.3f}")
    print(f"{args.epochs} epochs; validation accuracy, mean (std) over {args.seeds} seeds")
    print("| network | baseline training | modern training |")
    print("|---|---|---|")
    for network in args.networks:
        cells = [
            f"{r['val_accuracy']:.3f} ({r['val_accuracy_std']:.3f})"
            for r in results
            if r["network"] == network
        ]
        print(f"| {network} | {' | '.join(cells)} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "regularization_on_resnets.json"), "w") as file:
        json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    main()
