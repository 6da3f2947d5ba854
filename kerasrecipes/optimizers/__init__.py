"""Optimization tools: per-layer learning rates, weight decay done right, LARS, an audit.

>>> import keras, kerasrecipes as kr
>>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
>>> opt = kr.optimizers.with_lr_multipliers(
...     keras.optimizers.AdamW(1e-3, weight_decay=0.05),
...     kr.optimizers.layer_decay_multipliers(model, rate=0.75), model=model)
>>> opt = kr.optimizers.exclude_from_decay(opt, model)
>>> rows = kr.optimizers.audit(opt, model, print_fn=None)
>>> sum(row["decay"] for row in rows), len(rows)
(20, 59)
"""

from kerasrecipes.optimizers.decay import (
    add_l2,
    audit,
    decay_exclusions,
    exclude_from_decay,
    warn_if_double_decay,
)
from kerasrecipes.optimizers.lars import LARS
from kerasrecipes.optimizers.multipliers import (
    LRMultiplierOptimizer,
    layer_decay_multipliers,
    resolve_multipliers,
    with_group_rates,
    with_lr_multipliers,
)
from kerasrecipes.optimizers.paths import variable_paths

__all__ = [
    "LARS",
    "LRMultiplierOptimizer",
    "add_l2",
    "audit",
    "decay_exclusions",
    "exclude_from_decay",
    "layer_decay_multipliers",
    "resolve_multipliers",
    "variable_paths",
    "warn_if_double_decay",
    "with_group_rates",
    "with_lr_multipliers",
]
