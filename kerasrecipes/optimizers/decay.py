"""Weight decay that skips what it should, L2 in the loss on built models, and an audit table.

The lecture's two forms, for a weight vector w, rate alpha and strength delta:

* L2 regularization adds `delta/2 * ||w||^2` to the loss, so the gradient
  gains `delta * w` and plain gradient descent becomes
  `w <- (1 - alpha*delta) w - alpha * grad L(w)`. `add_l2(model, delta)`.
* Decoupled weight decay leaves the loss alone and subtracts
  `alpha * delta * w` in the update (Loshchilov & Hutter 2019,
  arXiv:1711.05101): `keras.optimizers.AdamW(weight_decay=delta)` or any
  Keras optimizer's `weight_decay`. Under Adam the two differ: the L2
  gradient is divided by Adam's running RMS, so large weights with large
  gradients are barely regularized. Prefer decoupled decay with Adam.

Either way biases and normalization parameters are not decayed ("biases are
not critical, usually not subject to regularization"); `exclude_from_decay`
sets that up.
"""

import re
import warnings

import keras

from kerasrecipes import _compat
from kerasrecipes.optimizers.multipliers import LRMultiplierOptimizer, resolve_multipliers
from kerasrecipes.optimizers.paths import variable_paths

# Position and class embeddings: ViT (ours: `position_embedding`, `class_token`), DeiT/timm
# (`pos_embed`, `cls_token`), keras-hub (`position_embedding*`).
EMBEDDING_NAMES = r"(pos(ition)?_?emb|cls_token|class_token|dist_token)"


def _innermost(optimizer):
    """The optimizer that does the update: under LossScaleOptimizer and our wrapper."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _multiplier_wrapper(optimizer):
    while optimizer is not None and not isinstance(optimizer, LRMultiplierOptimizer):
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return optimizer


def _owning_layers(model):
    """`{id(variable): layer}` for every trainable-capable variable of `model`."""
    owners = {}

    def visit(layer):
        for variable in _compat.own_trainable_variables(layer):
            owners.setdefault(id(variable), layer)
        for sublayer in _compat.sublayers(layer):
            visit(sublayer)

    visit(model)
    return owners


def decay_exclusions(model):
    """The variables weight decay should skip, as `{path: reason}`.

    Skipped: every variable of one dimension or fewer (biases,
    BatchNorm/LayerNorm/GroupNorm scales and offsets, LayerScale gammas, the
    rule timm uses), every variable of a normalization layer, and position
    and class embeddings (by name, `EMBEDDING_NAMES`).

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    >>> skipped = decay_exclusions(model)
    >>> skipped["stem_bn/gamma"], skipped["head_dense/bias"], "stem_conv/kernel" in skipped
    ('normalization', 'bias or 1-D', False)
    """
    owners = _owning_layers(model)
    norm_types = (
        keras.layers.BatchNormalization,
        keras.layers.LayerNormalization,
        keras.layers.GroupNormalization,
        keras.layers.UnitNormalization,
    )
    rms_norm = getattr(keras.layers, "RMSNormalization", None)
    if rms_norm is not None:
        norm_types = norm_types + (rms_norm,)
    excluded = {}
    for path, variable in variable_paths(model):
        layer = owners.get(id(variable))
        if isinstance(layer, norm_types):
            excluded[path] = "normalization"
        elif "LayerScale" in type(layer).__name__:
            excluded[path] = "layer scale"
        elif len(variable.shape) <= 1:
            excluded[path] = "bias or 1-D"
        elif re.search(EMBEDDING_NAMES, variable.name):
            excluded[path] = "embedding"
    return excluded


def exclude_from_decay(optimizer, model, extra_names=()):
    """Make `optimizer` skip weight decay on biases, norms, LayerScale and embeddings of `model`.

    Builds on Keras' `Optimizer.exclude_from_weight_decay(var_list=...)` and
    keeps any exclusion set on the optimizer before. Call it before the
    optimizer is built (before `fit`). An `LRMultiplierOptimizer` is also
    bound to `model` (see `with_lr_multipliers`).

    Args:
        optimizer: a Keras optimizer, an `LRMultiplierOptimizer`, or a
            `LossScaleOptimizer` around either.
        model: the model the optimizer will train.
        extra_names: more variable-name substrings to exclude (regexes, as
            Keras' `var_names`).

    Returns:
        `optimizer`, for chaining.
    """
    inner = _innermost(optimizer)
    if inner.built:
        raise ValueError(
            f"exclude_from_decay: optimizer {inner.name!r} is already built, and Keras fixes "
            "weight-decay exclusions at build time. Call it before compile/fit."
        )
    paths = dict(variable_paths(model))
    skipped = [paths[path] for path in decay_exclusions(model)]
    earlier_ids, earlier_pattern = _compat.weight_decay_exclusions(inner)
    names = list(extra_names) + ([earlier_pattern.pattern] if earlier_pattern is not None else [])
    inner.exclude_from_weight_decay(var_list=skipped, var_names=names or None)
    _compat.add_weight_decay_exclusion_keys(inner, earlier_ids)
    wrapper = _multiplier_wrapper(optimizer)
    if wrapper is not None and wrapper.bound_model() is not model:
        wrapper.bind(model)
    warn_if_double_decay(optimizer, model)
    return optimizer


def _l2_strength(variable):
    regularizer = getattr(variable, "regularizer", None)
    if regularizer is None:
        return 0.0
    return float(getattr(regularizer, "l2", 0.0) or 0.0)


def add_l2(model, delta, include_biases=False):
    """Add the L2 penalty `delta/2 * ||w||^2` to the loss for every kernel of a built model.

    Setting `kernel_regularizer` on a layer after it is built adds nothing in
    Keras 3: the regularizer is read when the weight is created. This sets
    the regularizer on the variables themselves, which `model.losses` reads
    at every step, so the loss really grows and the gradient gains
    `delta * w` (the lecture's form). Kernels are the weights of two or more
    dimensions (dense, conv, depthwise and pointwise kernels, embeddings
    excluded); biases and normalization parameters are left alone unless
    `include_biases`.

    Args:
        model: a built model, e.g. a `keras.applications` backbone.
        delta: the L2 strength; typical values are 1e-4 to 1e-2.
        include_biases: also penalize the 1-D variables.

    Returns:
        the list of paths that received the penalty.

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    >>> len(model.losses), len(add_l2(model, 1e-4)), len(model.losses)
    (0, 20, 20)
    """
    if delta <= 0:
        raise ValueError(f"add_l2: delta must be > 0, got {delta}.")
    if not model.built:
        raise ValueError(f"add_l2: model {model.name!r} is not built; build or call it first.")
    skipped = decay_exclusions(model)
    penalized = []
    for path, variable in variable_paths(model):
        if path in skipped and not (include_biases and skipped[path] != "embedding"):
            continue
        variable.regularizer = keras.regularizers.L2(delta / 2.0)
        penalized.append(path)
    if getattr(model, "optimizer", None) is not None:
        warn_if_double_decay(model.optimizer, model)
    return penalized


def _decays(optimizer, variable):
    wrapper = _multiplier_wrapper(optimizer)
    if wrapper is not None and wrapper.built:
        inner = wrapper.inner_optimizer
        if _compat.optimizer_tracks(inner, variable):
            return wrapper.decays(variable)
    inner = _innermost(optimizer)
    if not inner.weight_decay:
        return False
    return bool(_compat.uses_weight_decay(inner, variable))


def warn_if_double_decay(optimizer, model):
    """Warn when some weights carry both an L2 penalty and the optimizer's decoupled decay."""
    both = [
        path
        for path, variable in variable_paths(model)
        if _l2_strength(variable) > 0 and _decays(optimizer, variable)
    ]
    if both:
        warnings.warn(
            f"{len(both)} weights of {model.name!r} get both an L2 penalty in the loss and "
            f"decoupled weight decay from the optimizer (e.g. {both[:3]}): they are regularized "
            "twice. Use one: `weight_decay` on the optimizer (preferred with Adam) or `add_l2`.",
            stacklevel=3,
        )
    return both


def audit(optimizer, model, print_fn=print):
    """Print and return what `optimizer` will do to each variable of `model`.

    One row per variable that can train: its path, shape, whether it is
    trainable now, its learning-rate multiplier, the effective rate
    (base rate x multiplier, at the current step), whether decoupled weight
    decay applies, and the L2 strength in the loss. Also warns about weights
    regularized twice.

    Returns:
        list of dicts with keys `path, shape, trainable, multiplier, rate, decay, l2`.
    """
    wrapper = _multiplier_wrapper(optimizer)
    pairs = variable_paths(model)
    if wrapper is not None:
        if wrapper.built:
            values = wrapper.multiplier_values()
            built_on = _compat.optimizer_built_variables(wrapper)
            by_id = dict(zip([id(v) for v in built_on], values.values()))
            multipliers = [by_id.get(id(v), 0.0) for _, v in pairs]
        else:
            if wrapper.bound_model() is model:
                paths = [p for p, _ in pairs]
            else:
                paths = [v.path for _, v in pairs]
            multipliers = resolve_multipliers(
                wrapper.multipliers, paths, wrapper.default, strict=False
            )
    else:
        multipliers = [1.0] * len(pairs)
    base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    rows = []
    for (path, variable), multiplier in zip(pairs, multipliers):
        rows.append(
            {
                "path": path,
                "shape": tuple(variable.shape),
                "trainable": bool(variable.trainable),
                "multiplier": float(multiplier),
                "rate": base * float(multiplier),
                "decay": _decays(optimizer, variable),
                "l2": _l2_strength(variable) * 2.0,
            }
        )
    if print_fn is not None:
        width = max([len(row["path"]) for row in rows] + [4])
        print_fn(
            f"{'path':<{width}}  {'shape':<20} {'train':>5} {'mult':>8} {'rate':>10} "
            f"{'decay':>5} {'l2':>8}"
        )
        for row in rows:
            print_fn(
                f"{row['path']:<{width}}  {row['shape']!s:<20} "
                f"{'yes' if row['trainable'] else 'no':>5} {row['multiplier']:>8.4g} "
                f"{row['rate']:>10.3g} {'yes' if row['decay'] else 'no':>5} {row['l2']:>8.2g}"
            )
        decayed = sum(row["decay"] for row in rows)
        print_fn(f"{len(rows)} variables, {decayed} with weight decay, base rate {base:.4g}")
    warn_if_double_decay(optimizer, model)
    return rows
