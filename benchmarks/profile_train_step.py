"""Where a model's TensorFlow training step spends its time: op times from TensorFlow's profiler.

Builds a registered model as `vs_timm.py` trains it (`vs_timm.ours_compiled`:
SGD with momentum, one synthetic batch), times `--steps` steps, then records two more
with `tf.profiler` and reads the trace (`*.xplane.pb`) back: the time of
every TensorFlow op, summed over the CPU threads, by op type (and the
slowest single ops). On a CPU the op types tell the story: `MatMul` and
`Conv2D*` are the arithmetic; `_MklNative*`/`_Mkl*` or oneDNN-fused names mean
oneDNN ran them; long lists of `Mul`, `Sub`, `Sum` are element-wise chains
that a fused kernel would replace. docs/benchmarks.md reads ConvNeXt-T's.

Run:
    python benchmarks/profile_train_step.py convnext_tiny
    python benchmarks/profile_train_step.py resnet50 --batch-size 32 --precision bf16
"""

import argparse
import collections
import pathlib
import tempfile
import time

import kerasrecipes  # noqa: F401  (before Keras: it sets TensorFlow's CPU start-up options)

# isort: split
import tensorflow as tf
import vs_timm
from tensorflow.tsl.profiler.protobuf import xplane_pb2


def op_times(trace_folder):
    """{op type: ms} and {op name: ms}, summed over the host threads of the trace."""
    path = next(pathlib.Path(trace_folder).rglob("*.xplane.pb"))
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    by_type, by_name = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if "host" not in plane.name.lower():
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TensorFlow's op events are "op name:OpType"; the executor's and the
                # function call's spans, which hold the ops, are left out.
                if ":" not in name or "::" in name or name.startswith("EagerLocalExecute"):
                    continue
                by_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e9
                by_name[name] += event.duration_ps / 1e9
    return by_type, by_name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", default="float32", choices=vs_timm.PRECISIONS)
    parser.add_argument("--steps", type=int, default=3, help="timed steps before the profile")
    parser.add_argument("--top", type=int, default=25, help="op types and ops to list")
    args = parser.parse_args(argv)

    model, images, labels = vs_timm.ours_compiled(args, args.precision)
    size = args.image_size
    for _ in range(2):  # tracing
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(args.steps):
        float(model.train_on_batch(images, labels))
    seconds = (time.perf_counter() - start) / args.steps
    print(f"{args.model} {args.precision}, batch {args.batch_size} at {size}x{size}: ", end="")
    print(f"{seconds * 1000:.0f} ms a step, {args.batch_size / seconds:.2f} img/s")

    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        for _ in range(2):
            float(model.train_on_batch(images, labels))
        tf.profiler.experimental.stop()
        by_type, by_name = op_times(folder)
    print("ms a step, summed over threads, by op type:")
    total = sum(by_type.values())
    for op_type, ms in by_type.most_common(args.top):
        print(f"  {ms / 2:9.1f}  {100 * ms / total:5.1f}%  {op_type}")
    print("slowest ops, ms a step:")
    for name, ms in by_name.most_common(args.top):
        print(f"  {ms / 2:9.1f}  {name[:140]}")


if __name__ == "__main__":
    main()
