"""The zoo at a glance: each registered model's card with its size, read without building anything.

`kerasrecipes models` lists the zoo from `zoo_table.json`, which holds, per
model, the card's family, input size and pretrained tags and the
parameters and multiply-adds of the model built at that size
(`kr.model_info`). Building every model to count them takes about a minute;
reading the table takes no Keras import at all. The table is made from the
cards by this module (`python -m kerasrecipes.zoo_table`, after adding or
changing a model), and the tests check it against the cards and the builds.
The task heads follow the models, from `TASK_HEADS` (checked against
`kr.list_heads()` by the tests): the modules that register them import Keras.
"""

import fnmatch
import json
import os
import re
import sys

TABLE_FILE = os.path.join(os.path.dirname(__file__), "models", "zoo_table.json")
# Each registered task head (`kr.list_heads()`) and the `finetune --task` it serves.
TASK_HEADS = {"retinanet": "detection", "unet": "segmentation"}


def read_table(pattern="*"):
    """`[row, ...]` of the models matching `pattern`, naturally sorted; each row a dict."""
    with open(TABLE_FILE) as file:
        rows = json.load(file)["models"]
    rows = [row for row in rows if fnmatch.fnmatchcase(row["name"], pattern)]
    return sorted(rows, key=lambda row: _natural_key(row["name"]))


def read_heads(pattern="*"):
    """`[(head, task), ...]` of the task heads matching `pattern`, sorted by name."""
    heads = sorted(TASK_HEADS.items())
    return [(name, served) for name, served in heads if fnmatch.fnmatchcase(name, pattern)]


def table_row(name, build=True):
    """The row of registered model `name`: from its card, and from a build when `build`."""
    import keras

    import kerasrecipes as kr  # builds the model: Keras, only when the table is made

    card = kr.model_card(name)
    row = {
        "name": name,
        "family": card.family,
        "input": card.default_input_shape[0],
        "pretrained": sorted(card.pretrained),
    }
    if build:
        info = kr.model_info(kr.create_model(name))
        row.update(params=info.params, flops=info.flops)
        keras.backend.clear_session()
    return row


def make_table():
    import kerasrecipes as kr  # as in `table_row`

    return {"models": [table_row(name) for name in kr.list_models()]}


def format_rows(rows):
    """The lines `kerasrecipes models` prints for `rows`. The cost column is GMACs, billions
    of multiply-adds: what `kr.model_info` counts as `flops`, as the papers do, named here for
    what it holds (one multiply-add is two floating-point operations)."""
    lines = [f"{'model':<18}{'family':<14}{'input':>7}{'params':>14}{'GMACs':>9}  pretrained"]
    for row in rows:
        macs = "-" if row.get("flops") is None else f"{row['flops'] / 1e9:.2f}"
        lines.append(
            f"{row['name']:<18}{row['family']:<14}{row['input']:>7}{row['params']:>14,}"
            f"{macs:>9}  {', '.join(row['pretrained']) or '-'}"
        )
    return lines


def format_heads(heads):
    """The lines `kerasrecipes models` prints for the task `heads`: a user looking for a
    segmenter or a detector finds it here, and how to train one."""
    lines = ["task heads, on a CNN of the zoo (kerasrecipes finetune --task TASK --model CNN):"]
    return lines + [f"{name:<18}{served}" for name, served in heads]


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


if __name__ == "__main__":
    from kerasrecipes.files import write_json  # the script that writes the table

    write_json(TABLE_FILE, make_table())
    print(f"wrote {TABLE_FILE}", file=sys.stderr)
