"""`kerasrecipes models`: the model zoo, one line per registered model, then the task heads.

The table needs no Keras (`kerasrecipes.zoo_table`): `kerasrecipes models`
answers without importing TensorFlow.
"""

from kerasrecipes.zoo_table import format_heads, format_rows, read_heads, read_table, table_row


def run(args):
    """`models`: the zoo table, or with `--exact` each model built and counted; then the task
    heads that match, so that a user after a segmenter or a detector finds one here too."""
    list_models = list_zoo if args.exact else list_zoo_table
    listed = list_models(args.pattern)
    heads = read_heads(args.pattern)
    if not listed and not heads:
        raise ValueError(
            f"No registered model matches {args.pattern!r}; try 'kerasrecipes models'."
        )
    if heads:
        print("\n".join(([""] if listed else []) + format_heads(heads)))


def list_zoo_table(pattern):
    """One line per registered model matching `pattern`, from the zoo table (nothing built);
    returns how many, printing nothing for none."""
    rows = read_table(pattern)
    if rows:
        print("\n".join(format_rows(rows)))
    return len(rows)


def list_zoo(pattern):
    """`models --exact`: one line per registered model, each built at its default input size;
    returns how many, printing nothing for none."""
    import kerasrecipes as kr  # builds models: Keras and TensorFlow, only for --exact

    names = kr.list_models(pattern)
    if names:
        print(format_rows([])[0])
    for name in names:
        print(format_rows([table_row(name)])[1], flush=True)
    return len(names)
