"""`kerasrecipes show-batch`: training images as the model sees them, in a PNG."""

from kerasrecipes.finetune.pipeline import show_batch


def run(args, config):
    """Writes `batch.png` into the run folder the options describe; returns its path."""
    return show_batch(config.replace(verbose=0), args.data, echo=print)
