"""Our training step under TensorFlow's CPU start-up options, each configuration in its own process.

`import kerasrecipes` sets two TensorFlow options before TensorFlow loads
(`kerasrecipes._startup.tune_tensorflow_for_cpus`): oneDNN's kernels on x86
(`TF_ENABLE_ONEDNN_OPTS=1`; TensorFlow turns them on by itself only on CPUs
with AVX-512 VNNI, BF16 or AMX) and its pooling (BFC) allocator for CPU
tensors (`TF_CPU_ALLOCATOR_USE_BFC=true`). This script times the float32
training step of `benchmarks/vs_timm.py` (SGD with momentum, batch 16 at
224x224) with TensorFlow's own defaults (the worker imports Keras before
kerasrecipes, so nothing is set), with each option alone and with both, and
prints each median with its spread and its ratio to the defaults. Each
round runs every configuration once, every other round backwards (ABBA),
after the same load check as vs_timm.py.

Run:
    python benchmarks/tf_cpu_options.py                     # ConvNeXt-T and EfficientNet-B0
    python benchmarks/tf_cpu_options.py --models resnet50 mobilenet_v2 --repeats 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import vs_timm

OPTIONS = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC")
CONFIGURATIONS = {
    "tensorflow defaults": None,
    "pooling allocator, oneDNN off": {
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "TF_CPU_ALLOCATOR_USE_BFC": "true",
    },
    "oneDNN, malloc": {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "false"},
    "both (kerasrecipes' default)": {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "TF_CPU_ALLOCATOR_USE_BFC": "true",
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["convnext_tiny", "efficientnet_b0"],
        choices=vs_timm.TIMM_TWINS,
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every configuration")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--on-busy", default="refuse", choices=["refuse", "mark"])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # What vs_timm's worker and load check read.
    args.batch_size, args.image_size, args.device, args.threads = 16, 224, "cpu", None
    args.busy_threshold, args.quiet_window = 0.1, 1.0
    return args


def run_worker(args):
    """Times our step in this process; TensorFlow comes first for its defaults."""
    import warnings

    if CONFIGURATIONS[args.worker] is None:
        import keras  # noqa: F401  (TensorFlow before kerasrecipes: it sets nothing)

        warnings.filterwarnings("ignore", message="TensorFlow was imported before kerasrecipes")
    speed, _ = vs_timm.ours_worker(args, "float32")
    from kerasrecipes import _compat

    onednn = _compat.tensorflow_onednn_enabled()
    allocator = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "unset")
    print(json.dumps({"images_per_second": speed, "onednn": onednn, "bfc": allocator}))


def run_configuration(args, model, name):
    env = {key: value for key, value in os.environ.items() if key not in OPTIONS}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", **(CONFIGURATIONS[name] or {}))
    command = [sys.executable, __file__, "--worker", name, "--model", model]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{model} / {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    print(vs_timm.describe_machine(args))
    steps = f"{args.steps} timed steps after {args.warmup} per process, {args.repeats} rounds"
    print(f"float32 training step, batch 16 at 224x224, {steps}")
    names = list(CONFIGURATIONS)
    for model in args.models:
        print(model)
        speeds = {name: [] for name in names}
        for round_index in range(args.repeats):
            line = []
            for name in vs_timm.round_order(names, round_index):
                quiet = vs_timm.check_quiet(args)
                result = run_configuration(args, model, name)
                if quiet or not any(speeds.values()):
                    speeds[name].append(result["images_per_second"])
                line.append(
                    f"{name} {result['images_per_second']:.2f} "
                    f"(oneDNN {'on' if result['onednn'] else 'off'}, BFC {result['bfc']})"
                )
            print(f"  round {round_index + 1}: " + ", ".join(line))
        base = statistics.median(speeds[names[0]])
        for name in names:
            median = statistics.median(speeds[name])
            print(
                f"  {name}: median {median:.2f} img/s ({min(speeds[name]):.2f} to "
                f"{max(speeds[name]):.2f}), {median / base:.2f}x the defaults"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
