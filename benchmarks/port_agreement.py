"""How closely our models reproduce their keras.applications twins after `port_weights`.

For each twin and input size: build the keras.applications model without
weights, give every normalization layer random statistics (so a mis-ported
statistic shows), port its variables into ours, run both on the same random
0-255 batch (ours preprocesses it itself, the twin gets its
`preprocess_input`'s output) and print the largest absolute difference of
the logits, also relative to the largest logit.

Run:
    python benchmarks/port_agreement.py                     # every twin at 64 and 97 pixels
    python benchmarks/port_agreement.py --models convnext_tiny --sizes 64 224
    python benchmarks/port_agreement.py --models vgg16 vgg19 inception_v3 --sizes 75 107 224

Sizes below a model's smallest input (75 for Inception-v3) are skipped.
"""

import argparse
import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import kerasrecipes as kr
from kerasrecipes import _compat

TWINS = {
    "resnet50": ("resnet50", keras.applications.ResNet50),
    "resnet101": ("resnet101", keras.applications.ResNet101),
    "resnet152": ("resnet152", keras.applications.ResNet152),
    **{
        f"mobilenet_v2_{alpha}": (
            "mobilenet_v2",
            functools.partial(keras.applications.MobileNetV2, alpha=alpha),
            {"alpha": alpha},
        )
        for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    },
    **{
        f"efficientnet_b{i}": (
            f"efficientnet_b{i}",
            getattr(keras.applications, f"EfficientNetB{i}"),
        )
        for i in range(8)
    },
    "vgg16": ("vgg16", keras.applications.VGG16),
    "vgg19": ("vgg19", keras.applications.VGG19),
    "inception_v3": ("inception_v3", keras.applications.InceptionV3),
    **{
        f"convnext_{size}": (f"convnext_{size}", getattr(keras.applications, f"ConvNeXt{cls}"))
        for size, cls in (
            ("tiny", "Tiny"),
            ("small", "Small"),
            ("base", "Base"),
            ("large", "Large"),
            ("xlarge", "XLarge"),
        )
    },
}


def randomize_statistics(model, rng):
    for weight in model.weights:
        path = weight.path
        if "moving_variance" in path or path.endswith("/variance"):
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif "moving_mean" in path or path.endswith("/mean") or "beta" in path:
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
        elif "gamma" in path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    for layer in _compat.sublayers(model, recursive=True):
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # it caches tensors made from its variables


def agreement(label, size, rng):
    name, keras_fn, *extra = TWINS[label]
    kwargs = extra[0] if extra else {}
    shape = (size, size, 3)
    keras.utils.set_random_seed(int(rng.integers(2**31)))  # repeatable initializations
    source = keras_fn(weights=None, input_shape=shape, classifier_activation=None)
    randomize_statistics(source, rng)
    ours = kr.create_model(name, input_shape=shape, classifier_activation=None, **kwargs)
    assert ours.count_params() == source.count_params()
    copied = kr.port_weights(source, ours)
    x = rng.uniform(0, 255, (2,) + shape).astype("float32")
    # Ours preprocesses the 0-255 batch itself; the twin gets its preprocess_input's output.
    twin_inputs = kr.model_card(name).pretrained["imagenet"].twin_preprocess_input(x.copy())
    expected = keras.ops.convert_to_numpy(source(twin_inputs))
    difference = np.abs(keras.ops.convert_to_numpy(ours(x)) - expected).max()
    scale = np.abs(expected).max()
    print(
        f"| {label} | {size}x{size} | {copied} | {difference:.3g} | {scale:.3g} "
        f"| {difference / scale:.3g} |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(TWINS), choices=list(TWINS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 97])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    print("| twin | input | variables | max abs difference | max abs logit | relative |")
    print("|---|---|---|---|---|---|")
    for label in args.models:
        for size in args.sizes:
            min_size = kr.model_card(TWINS[label][0]).min_input_size
            if size < min_size:
                print(f"| {label} | {size}x{size} | skipped: below its minimum {min_size} |")
                continue
            agreement(label, size, rng)


if __name__ == "__main__":
    main()
