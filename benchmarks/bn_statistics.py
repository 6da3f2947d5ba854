"""BatchNorm statistics after short runs: inference-mode accuracy against batch statistics.

The measurement behind `fine_tune`'s BatchNorm defaults (docs/regularization.md).
A two-class job of 32-px stripe images (classes 2 and 5 of
`kr.data.demo_images`, 272 images, 218 for training) is trained from scratch
with `resnet20` through `kr.fine_tune`, under each remedy: Keras' momentum
0.99 or ours 0.9, with and without `PreciseBN`, for 6 epochs (42 steps) and
for the default step budget. Each run prints its validation accuracy in
inference mode (the moving statistics, what a saved model uses) and with
batch statistics (shuffled batches of 32, `model(x, training=True)`, the
network as it trained). Each run takes 7-30 s on 2 CPU cores.

    python benchmarks/bn_statistics.py
"""

import itertools
import time

import keras
import numpy as np
import tensorflow as tf

import kerasrecipes as kr


def stripes(num_images=272, classes=(2, 5), seed=7):
    images, labels = kr.data.demo_images(num_images=num_images * 5, num_classes=10, seed=seed)
    keep = np.isin(labels, classes)
    images, labels = images[keep][:num_images].astype("float32"), labels[keep][:num_images]
    return images, (labels == classes[1]).astype("int64")


def batch_statistics_accuracy(model, images, labels, batch_size=32):
    saved = [keras.ops.convert_to_numpy(v) for v in model.weights]
    order = np.random.default_rng(0).permutation(len(labels))
    hits = 0
    for start in range(0, len(labels), batch_size):
        batch = order[start : start + batch_size]
        predicted = keras.ops.convert_to_numpy(model(images[batch], training=True)).argmax(-1)
        hits += int((predicted == labels[batch]).sum())
    for variable, value in zip(model.weights, saved):
        variable.assign(value)
    return hits / len(labels)


def run(images, labels, momentum, precise_bn, epochs):
    train = tf.data.Dataset.from_tensor_slices((images[:218], labels[:218])).batch(32)
    val_images, val_labels = images[218:], labels[218:]
    val = tf.data.Dataset.from_tensor_slices((val_images, val_labels)).batch(32)
    backbone = kr.load_backbone("resnet20", "none", image_size=32, verbose=0)
    started = time.perf_counter()
    model, history = kr.fine_tune(
        backbone,
        train,
        val,
        num_classes=2,
        weights="none",
        finetune_epochs=epochs,
        bn_momentum=momentum,
        precise_bn=precise_bn,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    inference = float((model.predict(val_images, verbose=0).argmax(-1) == val_labels).mean())
    batch = batch_statistics_accuracy(model, val_images, val_labels)
    return len(history.epoch), inference, batch, seconds


def main():
    images, labels = stripes()
    print("| epochs | momentum | PreciseBN | inference | batch statistics | seconds |")
    print("|---|---|---|---|---|---|")
    for epochs, momentum, precise in itertools.product((6, None), (0.99, 0.9), (False, True)):
        ran, inference, batch, seconds = run(images, labels, momentum, precise, epochs)
        budget = f"{ran}" if epochs else f"{ran} (default budget)"
        print(
            f"| {budget} | {momentum} | {'yes' if precise else 'no'} | {inference:.3f} | "
            f"{batch:.3f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
