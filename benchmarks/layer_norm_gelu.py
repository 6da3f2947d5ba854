"""Our LayerNormalization and GELU against Keras' own, forward and backward, on TensorFlow.

`kerasrecipes.layers.LayerNormalization` and `kerasrecipes.layers.activations.gelu`
compute what Keras' `LayerNormalization` and `ops.gelu(x, approximate=False)`
compute, with the gradient written out instead of derived op by op. This
times one `tf.function` per side that runs the layer and its gradient (of a
weighted sum of the output) on the maps of ConvNeXt-T's first stage at batch
16: the LayerNorm input (16x56x56x96) and the MLP's hidden map (16x56x56x384).
It prints the median of `--repeats` calls for each side, their ratio, and the
largest difference between the two sides' gradients.

Run:
    python benchmarks/layer_norm_gelu.py
"""

import argparse
import statistics
import time

import kerasrecipes  # noqa: F401  (before Keras: it sets TensorFlow's CPU start-up options)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from kerasrecipes.layers import LayerNormalization
from kerasrecipes.layers.activations import gelu


def timed_gradient(function, x, variables, repeats):
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(weights * function(x))
        return tape.gradient(loss, [x, *variables])

    step()  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gradients = step()
        _ = gradients[0].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times), gradients


def compare(name, ours, keras_side, x, repeats):
    """`ours` and `keras_side`: (function, the variables it differentiates) each."""
    ours_time, ours_gradients = timed_gradient(ours[0], x, ours[1], repeats)
    keras_time, keras_gradients = timed_gradient(keras_side[0], x, keras_side[1], repeats)
    difference = max(
        float(np.abs(a.numpy() - b.numpy()).max() / max(1.0, np.abs(b.numpy()).max()))
        for a, b in zip(ours_gradients, keras_gradients)
    )
    print(
        f"{name}: ours {ours_time * 1000:.1f} ms, Keras {keras_time * 1000:.1f} ms, "
        f"ratio Keras/ours = {keras_time / ours_time:.2f}; "
        f"largest gradient difference {difference:.1e} (relative to the largest value)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 56, 56, 96)).astype("float32"))
    ours, theirs = LayerNormalization(epsilon=1e-6), keras.layers.LayerNormalization(epsilon=1e-6)
    for layer in (ours, theirs):
        layer.build(x.shape)
    gamma, beta = rng.uniform(0.5, 2, 96), rng.uniform(-1, 1, 96)
    for layer in (ours, theirs):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    ours_side = (ours, [ours.gamma.value, ours.beta.value])
    keras_side = (theirs, [theirs.gamma.value, theirs.beta.value])
    compare("LayerNorm 16x56x56x96", ours_side, keras_side, x, args.repeats)
    hidden = tf.constant(rng.normal(size=(16, 56, 56, 384)).astype("float32"))
    keras_gelu = (lambda t: keras.ops.gelu(t, approximate=False), [])
    compare("GELU 16x56x56x384", (gelu, []), keras_gelu, hidden, args.repeats)


if __name__ == "__main__":
    main()
