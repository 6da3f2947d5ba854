"""`kerasrecipes lr-find`: the LR range test of the run the options describe."""

from kerasrecipes.finetune.pipeline import lr_find


def run(args, config):
    """Prints the suggested rate of the first phase; writes the curve into the run folder."""
    return lr_find(config.replace(verbose=0), args.data, echo=print)
