"""`kerasrecipes models`: the model zoo, one line per registered model.

The table needs no Keras (`kerasrecipes.zoo_table`): `kerasrecipes models`
answers without importing TensorFlow.
"""

from kerasrecipes.zoo_table import format_rows, read_table, table_row


def run(args):
    """`models`: the zoo table, or with `--exact` each model built and counted."""
    if args.exact:
        return list_zoo(args.pattern)
    return list_zoo_table(args.pattern)


def list_zoo_table(pattern):
    """The `models` command: one line per registered model, from the zoo table (nothing built)."""
    rows = read_table(pattern)
    if not rows:
        raise ValueError(f"No registered model matches {pattern!r}; try 'kerasrecipes models'.")
    print("\n".join(format_rows(rows)))


def list_zoo(pattern):
    """`models --exact`: one line per registered model, each built at its default input size."""
    import kerasrecipes as kr  # builds models: Keras and TensorFlow, only for --exact

    names = kr.list_models(pattern)
    if not names:
        raise ValueError(f"No registered model matches {pattern!r}; try 'kerasrecipes models'.")
    print(format_rows([])[0])
    for name in names:
        print(format_rows([table_row(name)])[1], flush=True)
