"""A 7x7 depthwise convolution as `DepthwiseConv2D` vs as `Conv2D(groups=channels)`, one process.

ConvNeXt's block uses the first, keras.applications' ConvNeXt the second;
the arithmetic and the parameter count are the same. Times a forward and
backward pass (gradient of a sum of squares) of each, compiled with
`tf.function`, alternating, and prints the median time per step.

Run:
    python benchmarks/depthwise_conv.py
    python benchmarks/depthwise_conv.py --shape 32 28 28 192 --steps 10
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def train_step_fn(layer):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs=4, type=int, default=[16, 56, 56, 96])
    parser.add_argument("--kernel-size", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x = np.random.default_rng(0).uniform(-1, 1, args.shape).astype("float32")
    channels, size = args.shape[-1], args.kernel_size
    layers = {
        "DepthwiseConv2D": keras.layers.DepthwiseConv2D(size, padding="same"),
        "Conv2D(groups=channels)": keras.layers.Conv2D(
            channels, size, padding="same", groups=channels
        ),
    }
    steps = {}
    for label, layer in layers.items():
        layer.build(x.shape)
        steps[label] = train_step_fn(layer)
        steps[label](x)  # trace and compile
    times = {label: [] for label in layers}
    for _ in range(args.repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x)
            times[label].append((time.perf_counter() - start) / args.steps)
    print(f"Keras {keras.__version__}, TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores")
    print(f"input {tuple(args.shape)}, kernel {size}x{size}, forward + backward")
    for label, values in times.items():
        print(f"  {label}: {statistics.median(values) * 1000:.1f} ms per step")
    ratio = statistics.median(times["Conv2D(groups=channels)"]) / statistics.median(
        times["DepthwiseConv2D"]
    )
    print(f"grouped / depthwise time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
