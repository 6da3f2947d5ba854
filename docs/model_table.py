"""Prints the markdown tables of docs/architectures.md: cost per model, or the model cards.

The cost table comes from `kerasrecipes.model_info` on the model built at
its default input size; the cards table from `kerasrecipes.model_card`
alone (nothing is built).

Run:
    python docs/model_table.py "efficientnet*" "convnext*" mobilenet_v2
    python docs/model_table.py --cards             # every registered model's card
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # noqa: E402


def names_matching(patterns):
    return [name for pattern in patterns or ["*"] for name in kr.list_models(pattern)]


def cost_table(patterns):
    print("| model | input | params (`count_params`) | learned params | multiply-adds |")
    print("|---|---|---|---|---|")
    for name in names_matching(patterns):
        info = kr.model_info(kr.create_model(name))
        height, width, _ = info.input_shape
        print(
            f"| {name} | {height}x{width} | {info.params:,} | {info.trainable_params:,} "
            f"| {info.flops / 1e9:.3f}G |"
        )


def cards_table(patterns):
    print("| model | family | input | preprocessing | ImageNet twin | blocks | tap reductions |")
    print("|---|---|---|---|---|---|---|")
    for name in names_matching(patterns):
        card = kr.model_card(name)
        twin = card.pretrained["imagenet"].twin if "imagenet" in card.pretrained else "-"
        reductions = ", ".join(str(tap.reduction) for tap in card.feature_taps)
        print(
            f"| {name} | {card.family} | {card.default_input_shape[0]} | {card.preprocessing} "
            f"| {twin} | {len(card.blocks)} | {reductions} |"
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if "--cards" in arguments:
        cards_table([argument for argument in arguments if argument != "--cards"])
    else:
        cost_table(arguments)
