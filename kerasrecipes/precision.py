"""Which precision a machine trains fastest in, and how to compile for it.

`fine_tune`'s `precision="auto"` and `benchmarks/vs_timm.py` both read this
module, so the benchmark measures what a run does. It imports neither
TensorFlow nor the rest of the package at import time (the benchmark's
workers run it on JAX and PyTorch machines without TensorFlow).
"""

import contextlib


def auto_precision(model=None):
    """ "mixed_bfloat16" where this machine trains `model` faster in bf16, else "float32".

    - A GPU of compute capability 8.0 or newer (Ampere, Hopper): bf16.
    - A CPU with AMX (`amx_bf16`), whose oneDNN kernels multiply bf16
      matrices in hardware: bf16, except for networks built on depthwise
      convolutions (MobileNetV2, EfficientNet, ConvNeXt), which trained
      at 0.80x, 0.57x and 0.98x of their float32 speed in bf16 there
      (docs/benchmarks.md). ResNet-50 trained 1.7x faster in bf16.
    - Other CPUs (AVX-512 or AVX2 only) convert bf16 in software and train
      slower than in float32: float32.

    Args:
        model: a registered model name (its card says `depthwise`), a
            `keras.Model` (its layers say), or None: the device alone decides.
    """
    if _gpu_compute_capability() >= (8, 0):
        return "mixed_bfloat16"
    if "amx_bf16" in _cpu_flags() and not _uses_depthwise_convolutions(model):
        return "mixed_bfloat16"
    return "float32"


def _uses_depthwise_convolutions(model):
    if model is None:
        return False
    if isinstance(model, str):
        from kerasrecipes.cards import model_card  # here: see the module docstring

        try:
            return model_card(model).depthwise
        except (KeyError, ValueError):  # a weights file or an unknown name: the device decides
            return False
    import keras

    from kerasrecipes import _compat  # Keras: see the module docstring

    layers = _compat.sublayers(model, recursive=True)
    return any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in layers)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _gpu_compute_capability():
    import keras

    try:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                capability = tf.config.experimental.get_device_details(gpus[0])
                return tuple(capability.get("compute_capability", (0, 0)))
        elif keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return tuple(int(x) for x in device.compute_capability.split("."))
        elif keras.backend.backend() == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except Exception:  # a driver that cannot say: assume no fast bf16
        return (0, 0)
    return (0, 0)


def training_compile_options():
    """The `Model.compile` options that train fastest on this machine's backend and device.

    On TensorFlow without a GPU: `jit_compile=False`. Keras 3 compiles train
    steps with XLA wherever every layer allows it, and XLA's CPU backend
    leaves the oneDNN kernels (AMX on Xeons that have it) that TensorFlow's
    own graph runs: ResNet-50's step ran 3.4x slower with XLA in float32
    and 3.8x slower in `mixed_bfloat16` (docs/benchmarks.md). Everywhere
    else Keras' default (XLA on GPUs and on JAX), i.e. no options.
    """
    import keras

    if keras.backend.backend() == "tensorflow" and _gpu_compute_capability() == (0, 0):
        return {"jit_compile": False}
    return {}


def rebuilt(model, precision=None):
    """A copy of `model` with its weights, built in the current scope (a distribution strategy's);
    with `precision` set as every layer's dtype policy when given (a built layer keeps the
    policy it was made with)."""
    import keras  # here, not at the top: see the module docstring

    serialized = keras.saving.serialize_keras_object(model)
    if precision is not None:
        serialized = _with_policy(serialized, precision)
    try:
        copy = keras.saving.deserialize_keras_object(serialized)
    except Exception as error:
        raise ValueError(
            f"fine_tune: backbone {model.name!r} cannot be rebuilt from its config for the "
            f"strategy or precision ({error}). Pass a function that builds it instead."
        ) from None
    copy.set_weights(model.get_weights())
    return copy


def _with_policy(serialized, precision):
    if isinstance(serialized, list):
        return [_with_policy(item, precision) for item in serialized]
    if not isinstance(serialized, dict):
        return serialized
    if serialized.get("class_name") == "DTypePolicy":
        return {**serialized, "config": {**serialized["config"], "name": precision}}
    return {key: _with_policy(value, precision) for key, value in serialized.items()}


@contextlib.contextmanager
def dtype_policy(precision):
    """Keras' global dtype policy set to `precision` while a model is built."""
    import keras  # here, not at the top: see the module docstring

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
