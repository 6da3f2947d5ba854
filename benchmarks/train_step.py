"""Training-step speed of our models beside their keras.applications twins, in one process.

For each pair, both models are compiled the same way (SGD with momentum,
sparse cross-entropy), warmed up (the first step traces and compiles),
then timed alternately for several repeats on the same batch: each repeat
runs `--steps` training steps of one model, then of the other, swapping
which goes first. It prints images/second per repeat and the median of
the per-repeat ratios ours / keras (above 1: ours is faster).

Run:
    python benchmarks/train_step.py                       # every pair, batch 16 at 224x224
    python benchmarks/train_step.py --models convnext_tiny
    python benchmarks/train_step.py --batch-size 64 --repeats 7
    KERAS_BACKEND=jax python benchmarks/train_step.py     # e.g. on a GPU machine with JAX
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import numpy as np

PAIRS = {
    "resnet50": keras.applications.ResNet50,
    "mobilenet_v2": keras.applications.MobileNetV2,
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "convnext_tiny": keras.applications.ConvNeXtTiny,
    "vgg16": keras.applications.VGG16,
    "inception_v3": keras.applications.InceptionV3,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def describe_machine():
    backend = keras.backend.backend()
    devices = "unknown"
    if backend == "jax":
        import jax

        devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        devices = f"{len(gpus)} GPU(s)" if gpus else "CPU only"
    return (
        f"{cpu_model()}, {os.cpu_count()} CPU cores, "
        f"devices: {devices}; Keras {keras.__version__}, backend {backend}"
    )


# The CPU flags that decide the speed of float32 and bf16 kernels.
_SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model():
    """The CPU's model name and its speed-relevant flags, from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    present = [flag for flag in _SPEED_FLAGS if flag in flags]
    return f"{name} ({' '.join(present) or 'no AVX2'})"


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def images_per_second(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for asynchronous backends to finish the last step
    return steps * len(x) / (time.perf_counter() - start)


def alternate(first, second, x, y, steps, repeats):
    """Warm both `(label, model)` pairs up, then time them in turns, swapping the order each
    repeat. Prints each repeat and returns the per-repeat ratios first / second."""
    (label_a, model_a), (label_b, model_b) = first, second
    for model in (model_a, model_b):
        images_per_second(model, x, y, 1)  # trace and compile
    ratios = []
    for repeat in range(repeats):
        order = [first, second] if repeat % 2 == 0 else [second, first]
        speed = {label: images_per_second(model, x, y, steps) for label, model in order}
        ratios.append(speed[label_a] / speed[label_b])
        print(
            f"  repeat {repeat + 1}: {label_a} {speed[label_a]:.2f} img/s, "
            f"{label_b} {speed[label_b]:.2f} img/s, ratio {ratios[-1]:.3f}"
        )
    return ratios


def benchmark_pair(name, args):
    shape = (args.image_size, args.image_size, 3)
    keras.utils.set_random_seed(0)
    ours = compiled(kr.create_model(name, input_shape=shape))
    theirs = compiled(PAIRS[name](weights=None, input_shape=shape))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch_size,) + shape).astype("float32")
    y = rng.integers(0, 1000, args.batch_size)
    ratios = alternate(("ours", ours), ("keras", theirs), x, y, args.steps, args.repeats)
    median = statistics.median(ratios)
    print(
        f"{name}: median ratio ours / keras.applications = {median:.3f} over {args.repeats} repeats"
    )
    return median


def main():
    args = parse_args()
    print(describe_machine())
    print(
        f"training step, batch {args.batch_size} at {args.image_size}x{args.image_size}, "
        f"{args.steps} steps per repeat"
    )
    for name in args.models:
        benchmark_pair(name, args)


if __name__ == "__main__":
    main()
