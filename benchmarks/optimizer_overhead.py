"""Cost of per-layer learning rates: a training step with `with_lr_multipliers` beside plain AdamW.

Two copies of the same model (same weights) are compiled with AdamW
(weight decay 0.05): one plain, one wrapped with layer-wise decay
multipliers (one per block) and `exclude_from_decay`. Both are warmed up,
then timed alternately on the same batch for several repeats, swapping which
goes first. Prints images/second per repeat and the median ratio
wrapped / plain (1.0: no overhead). Many small variables are the worst case
for a per-variable multiplier, hence ResNet-20 on CIFAR-sized images.

Run:
    python benchmarks/optimizer_overhead.py
    python benchmarks/optimizer_overhead.py --models resnet50 --image-size 128 --batch-size 16
    KERAS_BACKEND=jax python benchmarks/optimizer_overhead.py
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import alternate, describe_machine

import kerasrecipes as kr


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "convnext_tiny"])
    parser.add_argument(
        "--image-size", type=int, default=None, help="default: 32 for CIFAR models, 64 otherwise"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def build(name, size, wrapped):
    keras.utils.set_random_seed(0)
    model = kr.create_model(name, input_shape=(size, size, 3), num_classes=10)
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.05)
    if wrapped:
        multipliers = kr.optimizers.layer_decay_multipliers(model, rate=0.8)
        optimizer = kr.optimizers.with_lr_multipliers(optimizer, multipliers, model=model)
    optimizer = kr.optimizers.exclude_from_decay(optimizer, model)
    model.compile(optimizer, loss="sparse_categorical_crossentropy")
    return model


def benchmark(name, args):
    size = args.image_size or (32 if kr.model_card(name).default_input_shape[0] == 32 else 64)
    plain, wrapped = build(name, size, False), build(name, size, True)
    groups = len(wrapped.optimizer.multipliers)
    variables = len(wrapped.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (args.batch_size, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, args.batch_size)
    ratios = alternate(
        ("with multipliers", wrapped), ("AdamW", plain), x, y, args.steps, args.repeats
    )
    print(
        f"{name} ({variables} variables, {groups} groups, {size}x{size}, batch "
        f"{args.batch_size}): median ratio with multipliers / AdamW = "
        f"{statistics.median(ratios):.3f} over {args.repeats} repeats"
    )


def main():
    args = parse_args()
    print(describe_machine())
    for name in args.models:
        benchmark(name, args)


if __name__ == "__main__":
    main()
