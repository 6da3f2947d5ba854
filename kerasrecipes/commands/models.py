"""`kerasrecipes models`: the model zoo, one line per registered model, then the task heads.

The table needs no Keras (`kerasrecipes.zoo_table`): `kerasrecipes models`
answers without importing TensorFlow, and so does `--weights`, which reads the
timm catalog (`kerasrecipes.timm.catalog`).
"""

from kerasrecipes import timm
from kerasrecipes.timm.catalog import KERAS_APPLICATIONS_TOP1, checkpoints_of
from kerasrecipes.zoo_table import format_heads, format_rows, read_heads, read_table, table_row


def run(args):
    """`models`: the zoo table, or with `--exact` each model built and counted; then the task
    heads that match, so that a user after a segmenter or a detector finds one here too."""
    list_models = list_zoo if args.exact else list_zoo_table
    if getattr(args, "weights", False):
        list_models = list_weights
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


def list_weights(pattern):
    """`models --weights`: per model matching `pattern`, each weights string it takes, best
    top-1 first, or why it takes none; returns how many models."""
    rows = read_table(pattern)
    if rows:
        print(f"{'model / weights':<52}{'top-1':>6}{'input':>7}  licence or source")
    for row in rows:
        print(row["name"])
        lines = []
        if "imagenet" in row["pretrained"]:
            top1 = KERAS_APPLICATIONS_TOP1.get(row["name"])
            lines.append(("imagenet", top1, row["input"], "keras.applications"))
        lines += checkpoints_of(row["name"])
        for weights, top1, size, licence in sorted(lines, key=lambda line: -(line[1] or 0)):
            shown = "-" if top1 is None else f"{top1:.1f}"
            print(f"  {weights:<50}{shown:>6}{size:>7}  {licence or '-'}")
        if not lines:
            why = timm.why_no_checkpoint(row["family"], row["input"])
            print(f"  none: {why or 'no pretrained weights yet'}")
    return len(rows)
