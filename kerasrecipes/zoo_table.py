"""The zoo at a glance: each registered model's card with its size, read without building anything.

`kerasrecipes models` lists the zoo from `zoo_table.json`, which holds, per
model, the card's family, input size and pretrained tags and the
parameters and multiply-adds of the model built at that size
(`kr.model_info`). Building every model to count them takes about a minute;
reading the table takes no Keras import at all. The table is made from the
cards by this module (`python -m kerasrecipes.zoo_table`, after adding or
changing a model), and the tests check it against the cards and the builds.
"""

import fnmatch
import json
import os
import re
import sys

TABLE_FILE = os.path.join(os.path.dirname(__file__), "models", "zoo_table.json")


def read_table(pattern="*"):
    """`[row, ...]` of the models matching `pattern`, naturally sorted; each row a dict."""
    with open(TABLE_FILE) as file:
        rows = json.load(file)["models"]
    rows = [row for row in rows if fnmatch.fnmatchcase(row["name"], pattern)]
    return sorted(rows, key=lambda row: _natural_key(row["name"]))


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
    """The lines `kerasrecipes models` prints for `rows`."""
    lines = [f"{'model':<18}{'family':<14}{'input':>7}{'params':>14}{'GFLOPs':>9}  pretrained"]
    for row in rows:
        flops = "-" if row.get("flops") is None else f"{row['flops'] / 1e9:.2f}"
        lines.append(
            f"{row['name']:<18}{row['family']:<14}{row['input']:>7}{row['params']:>14,}"
            f"{flops:>9}  {', '.join(row['pretrained']) or '-'}"
        )
    return lines


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


if __name__ == "__main__":
    from kerasrecipes.files import write_json  # the script that writes the table

    write_json(TABLE_FILE, make_table())
    print(f"wrote {TABLE_FILE}", file=sys.stderr)
