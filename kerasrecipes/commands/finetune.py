"""`kerasrecipes finetune`: `kr.run` on the config the options make, printing as it goes."""

import sys

from kerasrecipes.finetune.pipeline import run as run_pipeline


def run(args, config):
    """Trains `config` (from the options) on `--data`; returns the run folder's report."""
    config = config.replace(verbose=1 if sys.stdout.isatty() else 2)
    return run_pipeline(config, args.data, echo=print).report
