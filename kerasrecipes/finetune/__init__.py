"""Fine-tuning: one config, phases as data, run folders that resume and never lie."""

from kerasrecipes.finetune.config import (
    FineTuneConfig,
    Phase,
    plan_phases,
    resolve_config,
)
from kerasrecipes.finetune.training import FineTuneHistory, fine_tune

__all__ = [
    "FineTuneConfig",
    "FineTuneHistory",
    "Phase",
    "fine_tune",
    "plan_phases",
    "resolve_config",
]
