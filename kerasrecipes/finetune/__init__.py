"""Fine-tuning: one config, phases as data, run folders that resume and never lie."""

from kerasrecipes.finetune.config import (
    FineTuneConfig,
    Phase,
    plan_phases,
    resolve_budget,
    resolve_config,
)

__all__ = [
    "FineTuneConfig",
    "FineTuneHistory",
    "Phase",
    "fine_tune",
    "plan_phases",
    "resolve_budget",
    "resolve_config",
]


def __getattr__(name):
    # The training module imports Keras; the command's option parser reads the config only.
    if name in ("FineTuneHistory", "fine_tune"):
        from kerasrecipes.finetune import training  # see above

        return getattr(training, name)
    raise AttributeError(f"module 'kerasrecipes.finetune' has no attribute {name!r}")
