"""Training-step speed of our models against timm's, each configuration in its own process.

For each model the configurations are ours on each Keras backend of
`--backends`, in float32 and in bf16, and timm's twin in float32 and in
bf16 (`torch.autocast`, timm's `--amp-dtype bfloat16`). Ours in bf16 is
what `precision="auto"` sets on a machine with fast bf16
(`kerasrecipes.precision`): Keras' `mixed_bfloat16` policy, compiled as
`training_compile_options` says for the backend and device.

Each configuration runs in a fresh process: it builds the model, makes one
synthetic batch on the device, warms up (tracing, compiling), then times
`--steps` training steps (SGD with momentum 0.9, cross-entropy over 1,000
classes) and prints images per second. The parent runs `--repeats` rounds;
each round runs every configuration once, in an order rotated from round
to round, so a slow spell of a shared machine hits every configuration
alike. For each model it prints the medians and ends with one line

    NAME: median ratio ours/timm = X.XX (ours: BACKEND PRECISION, timm: PRECISION)

where each side is at its best configuration (the highest median) and the
ratio is the median over rounds of ours / timm within each round. With a
GPU it also prints the model FLOP utilization (MFU): 6 x multiply-adds per
image (forward + backward, from `kerasrecipes.info.model_info`) x images per
second / the device's peak (`--peak-tflops`, or a known device's bf16 and
float32 dense peaks).

The peers are not dependencies of the package: `pip install -e ".[bench]"`
installs torch, timm and fastai. The worker processes need TensorFlow only
for `--backends tensorflow`: on a JAX or PyTorch machine without it, run
`--backends jax torch`.

Run:
    python benchmarks/vs_timm.py                                  # the four models, on CPU
    python benchmarks/vs_timm.py --models resnet50 mobilenet_v2 --repeats 5
    python benchmarks/vs_timm.py --backends jax torch --device gpu --batch-size 128
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# Our registered name -> timm's name of the same architecture.
TIMM_TWINS = {
    "resnet50": "resnet50",
    "mobilenet_v2": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
    "convnext_tiny": "convnext_tiny",
}
PRECISIONS = ("float32", "bf16")
# Dense tensor-core peaks in TFLOP/s (bf16, float32 without TF32) from the vendors' data sheets.
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(TIMM_TWINS), choices=list(TIMM_TWINS))
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["tensorflow"],
        choices=["tensorflow", "jax", "torch"],
        help="Keras backends to run ours on (default: tensorflow)",
    )
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU on a GPU")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the workers: one configuration, in this process ----------------------------------------------


def synthetic_batch(args, channels_first=False):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.image_size, args.image_size, 3)
    images = rng.uniform(0, 1, shape).astype("float32")
    if channels_first:
        images = images.transpose(0, 3, 1, 2).copy()
    return images, rng.integers(0, 1000, args.batch_size)


def time_steps(step, args, wait):
    for _ in range(args.warmup):
        wait(step())
    start = time.perf_counter()
    for _ in range(args.steps):
        result = step()
    wait(result)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def ours_worker(args, precision):
    """Images per second of our model's training step on the backend this process runs."""
    import keras
    import numpy as np

    import kerasrecipes.models  # noqa: F401  (registers the models, without TensorFlow)
    from kerasrecipes import precision as precisions
    from kerasrecipes.info import model_info
    from kerasrecipes.registry import create_model

    policy = "float32" if precision == "float32" else "mixed_bfloat16"
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = create_model(args.model, input_shape=(args.image_size, args.image_size, 3))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        **precisions.training_compile_options(),
    )
    images, labels = synthetic_batch(args)
    images, labels = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)

    def wait(loss):
        float(np.asarray(keras.ops.convert_to_numpy(loss)))

    speed = time_steps(lambda: model.train_on_batch(images, labels, return_dict=False), args, wait)
    return speed, model_info(model).flops


def timm_worker(args, precision):
    """Images per second of timm's twin, trained as timm's train.py does (autocast for bf16)."""
    import timm
    import torch

    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    torch.manual_seed(0)
    model = timm.create_model(TIMM_TWINS[args.model], num_classes=1000).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, labels = synthetic_batch(args, channels_first=True)
    images = torch.from_numpy(images).to(device)
    labels = torch.from_numpy(labels).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    def wait(loss):
        loss.item()

    return time_steps(step, args, wait), None


def run_worker(args):
    side, precision = args.worker.split(":")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    worker = timm_worker if side == "timm" else ours_worker
    speed, macs = worker(args, precision)
    print(json.dumps({"images_per_second": speed, "macs": macs}))


# -- the parent: rounds of processes, medians, ratios ---------------------------------------------


def configurations(args):
    ours = [(f"ours {b} {p}", b, f"ours:{p}") for b in args.backends for p in args.precisions]
    timm = [(f"timm {p}", "torch", f"timm:{p}") for p in args.precisions]
    return ours + timm


def worker_environment(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if args.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu", KERAS_TORCH_DEVICE="cpu")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), TF_NUM_INTRAOP_THREADS=str(args.threads))
    return env


def run_configuration(model, backend, worker, args):
    command = [sys.executable, __file__, "--worker", worker, "--models", model]
    for flag in ("device", "batch_size", "image_size", "steps", "warmup", "threads"):
        value = getattr(args, flag)
        if value is not None:
            command += [f"--{flag.replace('_', '-')}", str(value)]
    done = subprocess.run(
        command, env=worker_environment(backend, args), capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{model} {worker} on {backend} failed:\n{tail}")
    return json.loads(lines[-1])


def peak_tflops(args, precision):
    if args.peak_tflops:
        return args.peak_tflops
    if args.device != "gpu":
        return None
    name = gpu_name()
    for key, (bf16, float32) in PEAK_TFLOPS.items():
        if key in name:
            return bf16 if precision == "bf16" else float32
    return None


def gpu_name():
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown GPU"


def describe_machine(args):
    name, flags = platform.machine(), []
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    present = set(value.split())
                    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
                    flags = [f for f in wanted if f in present]
                    break
    except OSError:
        pass
    device = gpu_name() if args.device == "gpu" else "CPU"
    return f"{name} ({' '.join(flags)}), {os.cpu_count()} cores; device: {device}"


def benchmark_model(model, args):
    configs = configurations(args)
    speeds = {label: [] for label, _, _ in configs}
    macs = None
    for round_index in range(args.repeats):
        shift = round_index % len(configs)
        for label, backend, worker in configs[shift:] + configs[:shift]:
            result = run_configuration(model, backend, worker, args)
            speeds[label].append(result["images_per_second"])
            macs = result["macs"] or macs
        print(
            f"  round {round_index + 1}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in speeds.items())
        )
    medians = {label: statistics.median(values) for label, values in speeds.items()}
    for label, median in medians.items():
        line = f"  {label}: median {median:.2f} img/s"
        peak = peak_tflops(args, label.split()[-1])
        if macs and peak:
            line += f", MFU {6 * macs * median / (peak * 1e12):.1%} of {peak:g} TFLOP/s"
        elif macs:
            line += f", {6 * macs * median / 1e12:.3f} TFLOP/s"
        print(line)
    best_ours = max((k for k in medians if k.startswith("ours")), key=medians.get)
    best_timm = max((k for k in medians if k.startswith("timm")), key=medians.get)
    ratios = [a / b for a, b in zip(speeds[best_ours], speeds[best_timm])]
    ratio = statistics.median(ratios)
    print(
        f"{model}: median ratio ours/timm = {ratio:.2f} "
        f"(ours: {best_ours[5:]}, timm: {best_timm[5:]})"
    )
    return ratio


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        args.model = args.models[0]
        run_worker(args)
        return
    print(describe_machine(args))
    print(
        f"training step, batch {args.batch_size} at {args.image_size}x{args.image_size}, "
        f"{args.steps} timed steps after {args.warmup} per process, {args.repeats} rounds"
    )
    for model in args.models:
        print(model)
        benchmark_model(model, args)


if __name__ == "__main__":
    main()
