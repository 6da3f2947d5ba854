"""Prints the markdown table of parameters and multiply-adds that docs/architectures.md shows.

Every figure comes from `kerasrecipes.model_info` on the model built at its
default input size.

Run:
    python docs/model_table.py "efficientnet*" "convnext*" mobilenet_v2
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # noqa: E402


def main(patterns):
    print("| model | input | params (`count_params`) | learned params | multiply-adds |")
    print("|---|---|---|---|---|")
    for pattern in patterns or ["*"]:
        for name in kr.list_models(pattern):
            info = kr.model_info(kr.create_model(name))
            height, width, _ = info.input_shape
            print(
                f"| {name} | {height}x{width} | {info.params:,} | {info.trainable_params:,} "
                f"| {info.flops / 1e9:.3f}G |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
