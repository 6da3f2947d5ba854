"""Training-step speed of our models against timm's, each configuration in its own process.

For each model the configurations are ours on each Keras backend of
`--backends`, in float32 and in bf16, and timm's twin in float32 and in
bf16 (`torch.autocast`, timm's `--amp-dtype bfloat16`), each in
channels_last (what timm's train.py runs with `--channels-last`, PyTorch's
faster layout on CPUs) and in NCHW (PyTorch's default), printed side by
side. Ours in bf16 is what `precision="auto"` sets on a machine with fast
bf16 (`kerasrecipes.precision`): Keras' `mixed_bfloat16` policy, compiled
as `training_compile_options` says for the backend and device.

Each configuration runs in a fresh process: it builds the model, makes one
synthetic batch on the device, warms up (tracing, compiling), then times
`--steps` training steps (SGD with momentum 0.9, cross-entropy over 1,000
classes) and prints images per second. The parent runs `--repeats` rounds;
each round runs every configuration once, ours and timm's alternating,
and every other round runs the one before it backwards (ABBA), so a slow
spell of the machine hits both sides alike. For each model it prints the medians
with their spread (lowest to highest) and ends with one line

    NAME: median ratio ours/timm = X.XX (ours: BACKEND PRECISION, timm: PRECISION LAYOUT)

where each side is at its best configuration (the highest median) and the
ratio is the median over rounds of ours / timm within each round. With a
GPU it also prints the model FLOP utilization (MFU): 6 x multiply-adds per
image (forward + backward, from `kerasrecipes.info.model_info`) x images per
second / the device's peak (`--peak-tflops`, or a known device's bf16 and
float32 dense peaks).

A shared machine makes the figures lie, and not evenly: when another
process takes a core, PyTorch's OpenMP threads stall at every barrier
while TensorFlow's thread pool degrades gracefully, so a contended run
flatters ours (ratios 2-4x the quiet ones were seen). Before every
configuration the parent samples each process's CPU time for
`--quiet-window` seconds; any other process above `--busy-threshold` of a
core makes the machine busy. By default (`--on-busy refuse`) the run stops
there, naming the processes; `--on-busy mark` runs anyway, marks the
round "contended" and leaves it out of the medians and ratios while any
quiet round exists.

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
    "vit_small16": "vit_small_patch16_224",
    "inception_v3": "inception_v3",
}
DEFAULT_MODELS = ["resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny"]
PRECISIONS = ("float32", "bf16")
TIMM_LAYOUTS = ("channels_last", "nchw")
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
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(TIMM_TWINS))
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["tensorflow"],
        choices=["tensorflow", "jax", "torch"],
        help="Keras backends to run ours on (default: tensorflow)",
    )
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument(
        "--timm-layouts",
        nargs="+",
        default=list(TIMM_LAYOUTS),
        choices=TIMM_LAYOUTS,
        help="memory formats to run timm in (default: both)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU on a GPU")
    parser.add_argument(
        "--on-busy",
        default="refuse",
        choices=["refuse", "mark"],
        help="when another process uses the CPU: stop (default) or mark the round contended",
    )
    parser.add_argument(
        "--busy-threshold",
        type=float,
        default=0.1,
        help="share of one core above which another process counts as busy (default 0.1)",
    )
    parser.add_argument(
        "--quiet-window", type=float, default=1.0, help="seconds to sample the machine for"
    )
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


def ours_compiled(args, precision):
    """Our `args.model` compiled as a `model.fit` user trains it (SGD with momentum, 1,000
    classes), with one synthetic batch on the device: (model, images, labels)."""
    # First: it sets TensorFlow's CPU start-up options, as a user's `import kerasrecipes` does.
    import kerasrecipes.models  # noqa: F401  (registers the models, without TensorFlow)

    # isort: split
    import keras

    from kerasrecipes import precision as precisions
    from kerasrecipes.registry import create_model

    policy = "float32" if precision == "float32" else "mixed_bfloat16"
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    size = args.image_size
    model = create_model(args.model, num_classes=1000, input_shape=(size, size, 3))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        **precisions.training_compile_options(),
    )
    images, labels = synthetic_batch(args)
    return model, keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)


def ours_worker(args, precision):
    """Images per second of our model's training step on the backend this process runs."""
    model, images, labels = ours_compiled(args, precision)  # first: it imports kerasrecipes

    import keras
    import numpy as np

    from kerasrecipes.info import model_info

    def wait(loss):
        float(np.asarray(keras.ops.convert_to_numpy(loss)))

    speed = time_steps(lambda: model.train_on_batch(images, labels, return_dict=False), args, wait)
    return speed, model_info(model).flops


def timm_worker(args, precision, layout):
    """Images per second of timm's twin, trained as timm's train.py does.

    bf16 is `torch.autocast` (`--amp-dtype bfloat16`); channels_last converts the
    model and the batch as train.py's `--channels-last` does.
    """
    import timm
    import torch

    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    torch.manual_seed(0)
    model = timm.create_model(TIMM_TWINS[args.model], num_classes=1000).to(device).train()
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, labels = synthetic_batch(args, channels_first=True)
    images = torch.from_numpy(images).to(device).contiguous(memory_format=memory_format)
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
    side, precision, *layout = args.worker.split(":")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if side == "timm":
        speed, macs = timm_worker(args, precision, layout[0])
    else:
        speed, macs = ours_worker(args, precision)
    print(json.dumps({"images_per_second": speed, "macs": macs}))


# -- the load check: is any other process using the CPU? ------------------------------------------


def cpu_seconds_by_process():
    """{pid: (command, user + system CPU seconds)} for every process /proc shows."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:  # the process ended while we looked
            continue
        # The command sits in parentheses and may itself hold spaces or parentheses.
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (command, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def busy_processes(window=1.0, threshold=0.1):
    """Other processes that used more than `threshold` of a core over `window` seconds.

    Returns [(pid, command, share of one core)], busiest first. This process is
    left out; the load average is not used, as it lags by a minute and counts
    the workers this script itself just ran.
    """
    before = cpu_seconds_by_process()
    time.sleep(window)
    after = cpu_seconds_by_process()
    busy = []
    for pid, (command, seconds) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        share = (seconds - before[pid][1]) / window
        if share > threshold:
            busy.append((pid, command, share))
    return sorted(busy, key=lambda item: -item[2])


class BusyMachineError(RuntimeError):
    pass


def check_quiet(args):
    """True when the cores are free; with `--on-busy refuse`, raises when they are not."""
    if not os.path.isdir("/proc"):
        return True  # no /proc to look in (macOS): the user vouches for the machine
    busy = busy_processes(args.quiet_window, args.busy_threshold)
    if not busy:
        return True
    listed = ", ".join(
        f"pid {pid} ({command}) at {share:.0%} of a core" for pid, command, share in busy
    )
    if args.on_busy == "refuse":
        raise BusyMachineError(
            f"the machine is not quiet: {listed}. A contended run flatters TensorFlow over "
            "PyTorch. Stop those processes and rerun, or pass --on-busy mark to run anyway "
            "and leave contended rounds out of the ratios."
        )
    print(f"  contended: {listed}")
    return False


# -- the parent: rounds of processes, medians, ratios ---------------------------------------------


def configurations(args):
    """(label, backend, worker) for each configuration, ours and timm's alternating."""
    ours = [(f"ours {b} {p}", b, f"ours:{p}") for b in args.backends for p in args.precisions]
    timm = [
        (f"timm {p} {layout}", "torch", f"timm:{p}:{layout}")
        for p in args.precisions
        for layout in args.timm_layouts
    ]
    alternating = []
    for index in range(max(len(ours), len(timm))):
        alternating += ours[index : index + 1] + timm[index : index + 1]
    return alternating


def round_order(configs, round_index):
    """ABBA: each odd round runs the previous round's order backwards, so within each
    pair of rounds every configuration runs both before and after every other one;
    each pair starts one place further along."""
    shift = (round_index // 2) % len(configs)
    order = configs[shift:] + configs[:shift]
    return order[::-1] if round_index % 2 else order


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


def spread(values):
    return f"{min(values):.2f} to {max(values):.2f}"


def run_rounds(model, args):
    """{label: [images per second by round]} and the rounds that ran on a busy machine."""
    configs = configurations(args)
    speeds = {label: [] for label, _, _ in configs}
    contended, macs = set(), None
    for round_index in range(args.repeats):
        for label, backend, worker in round_order(configs, round_index):
            if not check_quiet(args):
                contended.add(round_index)
            result = run_configuration(model, backend, worker, args)
            speeds[label].append(result["images_per_second"])
            macs = result["macs"] or macs
        mark = " (contended)" if round_index in contended else ""
        print(
            f"  round {round_index + 1}{mark}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in speeds.items())
        )
    return speeds, contended, macs


def benchmark_model(model, args):
    speeds, contended, macs = run_rounds(model, args)
    kept = [i for i in range(args.repeats) if i not in contended] or list(range(args.repeats))
    if len(kept) < args.repeats:
        print(f"  medians over the {len(kept)} quiet round(s) of {args.repeats}")
    speeds = {label: [values[i] for i in kept] for label, values in speeds.items()}
    medians = {label: statistics.median(values) for label, values in speeds.items()}
    for label, median in medians.items():
        line = f"  {label}: median {median:.2f} img/s ({spread(speeds[label])})"
        peak = peak_tflops(args, label.split()[2 if label.startswith("ours") else 1])
        if macs and peak:
            line += f", MFU {6 * macs * median / (peak * 1e12):.1%} of {peak:g} TFLOP/s"
        elif macs:
            line += f", {6 * macs * median / 1e12:.3f} TFLOP/s"
        print(line)
    best_ours = max((k for k in medians if k.startswith("ours")), key=medians.get)
    best_timm = max((k for k in medians if k.startswith("timm")), key=medians.get)
    ratios = [a / b for a, b in zip(speeds[best_ours], speeds[best_timm])]
    ratio = statistics.median(ratios)
    print(f"  ratio by round: {' '.join(f'{r:.2f}' for r in ratios)} ({spread(ratios)})")
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
    try:
        for model in args.models:
            print(model)
            benchmark_model(model, args)
    except BusyMachineError as error:
        sys.exit(f"vs_timm.py refused: {error}")


if __name__ == "__main__":
    main()
