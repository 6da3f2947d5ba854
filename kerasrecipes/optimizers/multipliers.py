"""Per-layer learning rates for any Keras optimizer.

Why our own: Keras 3.15's `MultiOptimizer` needs one optimizer per group,
matches its keys with `re.fullmatch` on variable paths that omit nested
models' names (so a plausible key silently matches nothing), and has no
`learning_rate`, so `ReduceLROnPlateau` and `LearningRateScheduler` cannot
drive it. Here one optimizer keeps one learning rate (or schedule), and each
variable's update and decoupled weight decay are scaled by its multiplier.
"""

import re
import weakref

import keras
import numpy as np
from keras import ops

from kerasrecipes import _compat
from kerasrecipes.optimizers.paths import block_of, depth_groups, layer_path, variable_paths


def resolve_multipliers(patterns, paths, default=1.0, strict=True):
    """The multiplier of each path, by the matching rule of `with_lr_multipliers`.

    Args:
        patterns: dict of regular expression -> multiplier, tried in order; see
            `with_lr_multipliers` for the matching rule.
        paths: list of variable paths.
        default: the multiplier of a path no pattern matches.
        strict: raise `ValueError` when a pattern matches no path.

    Returns:
        list of floats aligned with `paths`.

    >>> resolve_multipliers({"head": 10.0, "stage1": 0.1},
    ...                     ["stem/kernel", "stage1_conv/kernel", "head_dense/bias"])
    [1.0, 0.1, 10.0]
    """
    compiled = []
    for pattern, multiplier in patterns.items():
        try:
            compiled.append((pattern, re.compile(pattern), float(multiplier)))
        except re.error as error:
            raise ValueError(
                f"Learning-rate multiplier pattern {pattern!r} is not a valid "
                f"regular expression: {error}."
            ) from None
        if float(multiplier) < 0:
            raise ValueError(
                f"Learning-rate multiplier for {pattern!r} is {multiplier}; "
                "multipliers must be >= 0 (0 freezes)."
            )
    values, used = [], set()
    for path in paths:
        found = _first_match(compiled, path)
        if found is None:
            values.append(float(default))
        else:
            values.append(found[2])
            used.add(found[0])
    unused = [pattern for pattern, _, _ in compiled if pattern not in used]
    if strict and unused:
        examples = ", ".join(repr(path) for path in paths[:4])
        raise ValueError(
            f"Learning-rate multiplier pattern(s) {unused} match no variable. Patterns are "
            f"matched with re.match against variable paths such as {examples} "
            f"({len(paths)} in all). For layers inside a nested model, pass `model=` so the "
            "paths include the nested model's name; `kr.optimizers.audit(optimizer, model)` "
            "prints every path."
        )
    return values


def _first_match(compiled, path):
    """The first `(pattern, regex, ...)` entry whose regex matches `path` at the start of the path
    or of any part after a "/" (`"a/b/kernel"`, `"b/kernel"`, `"kernel"`), or None."""
    parts = path.split("/")
    starts = ["/".join(parts[i:]) for i in range(len(parts))]
    for entry in compiled:
        if any(entry[1].match(start) for start in starts):
            return entry
    return None


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LRMultiplierOptimizer(keras.optimizers.Optimizer):
    """Wraps a Keras optimizer so each variable trains at `multiplier * learning_rate`.

    Make it with `with_lr_multipliers`. The wrapped optimizer keeps its own
    learning rate or schedule, weight decay, clipping, EMA and gradient
    accumulation; this wrapper scales the learning rate handed to its
    `update_step` for each variable, and applies decoupled weight decay with
    the same scaled rate (Keras applies it with the unscaled rate). A
    multiplier of 0 leaves a variable unchanged.

    `learning_rate` reads and sets the base rate, so `ReduceLROnPlateau`,
    `LearningRateScheduler` and `LRFinder` drive every group at once and keep
    the ratios. When the wrapped optimizer follows a schedule, setting
    `learning_rate` rescales the whole schedule so that its current value
    becomes the value set (Keras raises a `TypeError` there instead).

    The multipliers are an optimizer variable (`lr_multipliers`, aligned with
    the variables the optimizer was built on): they are saved with the
    optimizer's state in `.keras` files and checkpoints, and
    `set_multiplier` changes them during training without retracing.

    When bound to a model (`model=` in `with_lr_multipliers`, or
    `exclude_from_decay`), the optimizer is built on every variable of the
    model that can train, frozen layers included, so that unfreezing later
    (`UnfreezeBackbone`) finds optimizer state ready and the number of
    optimizer variables does not depend on what is frozen.
    """

    def __init__(self, inner_optimizer, multipliers, default=1.0, name=None, labels=None, **kwargs):
        if kwargs:
            raise ValueError(
                f"LRMultiplierOptimizer takes no arguments {sorted(kwargs)}; set "
                "them on the optimizer it wraps."
            )
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "with_lr_multipliers expects a keras.optimizers.Optimizer instance, "
                f"got {type(inner_optimizer).__name__}."
            )
        if getattr(inner_optimizer, "_kerasrecipes_multiplier_owner", None) is not None:
            raise ValueError(
                f"Optimizer {inner_optimizer.name!r} already has learning-rate "
                "multipliers; wrap a fresh optimizer."
            )
        super().__init__(learning_rate=0.0, name=name or "lr_multipliers")
        self.inner_optimizer = inner_optimizer
        self.multipliers = {str(k): float(v) for k, v in dict(multipliers).items()}
        self.default = float(default)
        # pattern -> the group's name, for patterns made from named groups (`with_group_rates`)
        self.labels = {str(k): str(v) for k, v in dict(labels or {}).items()}
        resolve_multipliers(self.multipliers, [], self.default, strict=False)  # validates
        self._strict = True
        self._model_ref = None
        with keras.name_scope(self.name, caller=self):
            scale = keras.Variable(
                1.0,
                name="learning_rate_scale",
                dtype="float32",
                trainable=False,
                aggregation="only_first_replica",
            )
        _compat.track_variable(self, scale)
        self._lr_scale = scale
        # Route the inner optimizer's per-variable update through the multiplier, and move its
        # decoupled weight decay into that update so the decay is scaled too.
        self._inner_update_step = _compat.replace_update_step(
            inner_optimizer, self._scaled_update_step
        )
        _compat.replace_weight_decay_step(inner_optimizer, _decay_in_update_step)
        inner_optimizer._kerasrecipes_multiplier_owner = weakref.ref(self)

    # -- model binding and paths ---------------------------------------------------------------

    def bind(self, model):
        """Resolve patterns against `model`'s layer tree and build on all its trainable variables.

        Raises `ValueError` now if a pattern matches nothing. Must come before
        the optimizer is built.
        """
        if self.built:
            raise ValueError(
                f"Optimizer {self.name!r} is already built; bind it to the model "
                "before compiling or training."
            )
        resolve_multipliers(self.multipliers, [p for p, _ in variable_paths(model)], self.default)
        self._model_ref = weakref.ref(model)
        return self

    def bound_model(self):
        """The model given to `bind`, or None. (A method: Keras' saving walks properties.)"""
        return self._model_ref() if self._model_ref is not None else None

    def variable_paths(self, var_list=None):
        """`(path, variable)` for what the optimizer updates (model paths when bound)."""
        model = self.bound_model()
        if model is not None:
            pairs = variable_paths(model)
            known = {id(v) for _, v in pairs}
            extra = [(v.path, v) for v in (var_list or []) if id(v) not in known]
            return pairs + extra
        if var_list is None:
            var_list = _compat.optimizer_built_variables(self) if self.built else []
        return [(v.path, v) for v in var_list]

    # -- building and applying -----------------------------------------------------------------

    def build(self, var_list):
        pairs = self.variable_paths(var_list)
        paths = [path for path, _ in pairs]
        variables = [variable for _, variable in pairs]
        values = np.array(
            resolve_multipliers(self.multipliers, paths, self.default, strict=self._strict),
            dtype="float32",
        )
        self.inner_optimizer.build(variables)
        super().build(variables)
        self.paths = paths
        self._lr_multipliers = self._vector_variable(values, "lr_multipliers")
        # Keras keeps `exclude_from_weight_decay` out of the optimizer's config, so a loaded
        # model would decay what the original skipped; a mask saved with the state keeps it.
        decays = [float(_compat.uses_weight_decay(self.inner_optimizer, v)) for v in variables]
        self._decay_mask = self._vector_variable(np.array(decays, "float32"), "weight_decay_mask")

    def _vector_variable(self, values, name):
        # An initializer rather than an assign: the build can happen inside the first traced
        # train step, where an assign would run again at every step.
        return self.add_variable(
            shape=values.shape,
            initializer=lambda shape, dtype: ops.convert_to_tensor(values, dtype=dtype),
            dtype="float32",
            aggregation="only_first_replica",
            name=name,
        )

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """Keras' `stateless_apply` (the JAX trainer's update), for a model partly frozen.

        Keras expects values for every variable the optimizer was built on; a bound optimizer
        is built on the frozen layers' variables too, while the JAX trainer passes only what
        trains now, in the order of the bound model's `trainable_variables`.
        """
        built = _compat.optimizer_built_variables(self) if self.built else []
        model = self.bound_model()
        if model is None or len(trainable_variables) == len(built):
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        training = model.trainable_variables
        if len(training) != len(trainable_variables):
            raise ValueError(
                f"Optimizer {self.name!r} got {len(trainable_variables)} variable values, but "
                f"its model {model.name!r} trains {len(training)} variables now."
            )
        mapping = list(zip(training, trainable_variables))
        mapping += list(zip(self.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.apply(grads, training)
        return (
            [scope.get_current_value(v) for v in training],
            [scope.get_current_value(v) for v in self.variables],
        )

    def _scaled_update_step(self, gradient, variable, learning_rate):
        inner = self.inner_optimizer
        dtype = variable.dtype
        index = _compat.optimizer_variable_index(inner, variable)
        learning_rate = (
            ops.cast(learning_rate, dtype)
            * ops.cast(self._lr_scale, dtype)
            * ops.cast(self._lr_multipliers[index], dtype)
        )
        if inner.weight_decay and not getattr(inner, "weight_decay_in_update_step", False):
            decay = ops.cast(inner.weight_decay, dtype) * ops.cast(self._decay_mask[index], dtype)
            inner.assign_sub(variable, variable * decay * learning_rate)
        return self._inner_update_step(gradient, variable, learning_rate)

    # -- the learning rate and the multipliers -------------------------------------------------

    def _scheduled(self):
        rate = _compat.learning_rate_source(self.inner_optimizer)
        return callable(rate) and not isinstance(rate, keras.Variable)

    @property
    def learning_rate(self):
        rate = self.inner_optimizer.learning_rate
        if self._scheduled():
            return rate * ops.cast(self._lr_scale, rate.dtype)
        return rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
            self.inner_optimizer.learning_rate = value
            self._lr_scale.assign(1.0)
        elif self._scheduled():
            current = float(ops.convert_to_numpy(self.inner_optimizer.learning_rate))
            if current == 0.0:
                raise ValueError(
                    f"Cannot set the learning rate of {self.name!r} to {value}: its schedule is "
                    "at 0 at this step (warmup start?), so it cannot be rescaled. Set it after "
                    "the first step, or give the optimizer a float learning rate."
                )
            self._lr_scale.assign(float(value) / current)
        else:
            self.inner_optimizer.learning_rate = value

    def multiplier_values(self):
        """`{path: multiplier}` for every variable the optimizer updates (after building)."""
        if not self.built:
            pairs = self.variable_paths()
            values = resolve_multipliers(
                self.multipliers, [p for p, _ in pairs], self.default, strict=False
            )
            return dict(zip([p for p, _ in pairs], values))
        return dict(zip(self.paths, ops.convert_to_numpy(self._lr_multipliers).tolist()))

    def decays(self, variable):
        """Whether decoupled weight decay applies to `variable` (a variable it updates)."""
        inner = self.inner_optimizer
        if not inner.weight_decay:
            return False
        if not self.built:
            return bool(_compat.uses_weight_decay(inner, variable))
        index = _compat.optimizer_variable_index(inner, variable)
        return bool(ops.convert_to_numpy(self._decay_mask)[index])

    def set_multiplier(self, pattern, multiplier):
        """Set the multiplier of built variables: those `pattern` matches (the rule of
        `with_lr_multipliers`), or, when `pattern` is a list, those whose path is in it.

        Takes effect at the next step without retracing. Returns the number
        of variables changed; a pattern matching none raises `ValueError`.
        """
        if not self.built:
            raise ValueError(
                f"Optimizer {self.name!r} is not built yet; change `multipliers` "
                "instead, or call this after the first training step."
            )
        if isinstance(pattern, str):
            compiled = [(pattern, re.compile(pattern))]
            hits = [i for i, path in enumerate(self.paths) if _first_match(compiled, path)]
        else:
            wanted = set(pattern)
            hits = [i for i, path in enumerate(self.paths) if path in wanted]
        if not hits:
            raise ValueError(
                f"{pattern!r} matches none of the {len(self.paths)} variable paths "
                f"of {self.name!r}, e.g. {self.paths[:3]}."
            )
        values = ops.convert_to_numpy(self._lr_multipliers).copy()
        values[hits] = float(multiplier)
        self._lr_multipliers.assign(values)
        return len(hits)

    def group_learning_rates(self):
        """`{pattern: effective rate now}` for each pattern and "default", read from the variables.

        A group's rate is the base rate times the multiplier its first
        variable has now (after any `set_multiplier`). A named group
        (`with_group_rates`) is keyed by its name instead of its pattern.
        """
        return {
            self.labels.get(group, group): rate for group, rate in self._pattern_rates().items()
        }

    def _pattern_rates(self):
        base = float(ops.convert_to_numpy(self.learning_rate))
        if not self.built:
            groups = dict(self.multipliers, default=self.default)
            return {group: base * multiplier for group, multiplier in groups.items()}
        values = ops.convert_to_numpy(self._lr_multipliers)
        rates = {}
        for group, index in self._first_index_of_group().items():
            rates[group] = base * float(values[index])
        return rates

    def _first_index_of_group(self):
        firsts = {}
        compiled = [(pattern, re.compile(pattern)) for pattern in self.multipliers]
        for index, path in enumerate(self.paths):
            found = _first_match(compiled, path)
            firsts.setdefault(found[0] if found else "default", index)
        return firsts

    # -- delegation to the wrapped optimizer ---------------------------------------------------

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def variables(self):
        return super().variables + self.inner_optimizer.variables

    def save_own_variables(self, store):
        # Only the wrapper's own variables: `.keras` files and checkpoints save the wrapped
        # optimizer under its own name (`inner_optimizer/`), and `variables` includes its
        # state, so Keras' default would store every slot twice.
        for index, variable in enumerate(super().variables):
            store[str(index)] = keras.ops.convert_to_numpy(variable)

    def load_own_variables(self, store):
        own = super().variables
        # Files saved before the fix above hold the wrapped state here too, after ours.
        if len(store.keys()) not in (len(own), len(self.variables)):
            raise ValueError(
                f"Optimizer {self.name!r}: the file holds {len(store.keys())} variables for it, "
                f"expected {len(own)}; it was saved from another model or optimizer."
            )
        for index, variable in enumerate(own):
            variable.assign(store[str(index)])

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        # With EMA, Keras pairs `var_list` with the averages by position, but `fit` passes the
        # variables that train now and the wrapped optimizer is built on every variable that
        # can (frozen ones included): hand it the list it was built on.
        inner = self.inner_optimizer
        if inner.built:
            var_list = _compat.optimizer_built_variables(inner)
        inner.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "multipliers": dict(self.multipliers),
            "default": self.default,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        optimizer = cls(inner, **config)
        # A loaded optimizer takes its multipliers from the saved state, which may come from
        # paths through nested models that the bare variable paths no longer show.
        optimizer._strict = False
        return optimizer


def _decay_in_update_step(variables):
    """Stands in for the wrapped optimizer's decoupled weight decay; see `_scaled_update_step`."""


def with_lr_multipliers(optimizer, multipliers, model=None, default=1.0):
    """Per-layer learning rates: `optimizer` with each variable's rate scaled by a multiplier.

    Args:
        optimizer: any `keras.optimizers.Optimizer` (SGD, AdamW, LAMB, `LARS`, ...),
            with a float learning rate or any schedule.
        multipliers: dict of pattern -> multiplier, e.g.
            `{"head": 10.0, "stage4": 0.5, "stage[1-3]": 0.1}` or the output of
            `layer_decay_multipliers`. The matching rule is below; to name the
            variables themselves, use `with_group_rates`.
        model: optional; when given, patterns may name nested models, are
            checked now, and the optimizer is built on every variable that can
            train, frozen ones included (needed by `UnfreezeBackbone`).
        default: multiplier of the variables no pattern matches.

    Matching rule: patterns are regular expressions matched with `re.match`
    against each variable's path, from its start or from any "/" in it. The
    path is the names of the layers that hold the variable, outermost first,
    then the variable's own name: `head_dense/kernel`,
    `stage1_block1/conv1/kernel`, `efficientnetb0/block6a_expand_conv/kernel`
    for a layer inside a nested model. So `"head"` matches every variable of
    the layers whose name starts with "head", `"efficientnetb0"` the whole
    nested backbone, `"efficientnetb0/block6"` part of it, and `"conv1/"` the
    `conv1` sublayer of every block. Patterns are tried in order and the first
    that matches wins; variables that no pattern matches get `default`. A
    pattern that matches no variable is an error, never a silent fallback.
    Nested models' names are in the paths only when the optimizer is given the
    model (`model=`); without it the paths are Keras' variable paths, which
    name the layer but may omit or add the models around it.

    Returns:
        an `LRMultiplierOptimizer`; pass it to `model.compile`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="body"),
    ...                           keras.layers.Dense(1, name="head")])
    >>> opt = with_lr_multipliers(keras.optimizers.SGD(0.1), {"head": 1.0, "body": 0.1},
    ...                           model=model)
    >>> round(float(opt.learning_rate), 6)
    0.1
    >>> opt.multiplier_values()["body/kernel"]
    0.1
    """
    wrapped = LRMultiplierOptimizer(optimizer, multipliers, default=default)
    if model is not None:
        wrapped.bind(model)
    return wrapped


def with_group_rates(optimizer, groups, model):
    """Per-group learning rates, the groups given as variables: `{name: (variables, multiplier)}`.

    What `kr.fine_tune` uses with `kr.param_groups`: no pattern to write, and
    the rates are logged under the groups' names (`LogLearningRates`). The
    optimizer saves each group as the exact paths of its variables in `model`
    (a pattern, as `with_lr_multipliers` takes), so it round-trips through a
    `.keras` file as any other.

    Args:
        optimizer: any `keras.optimizers.Optimizer`.
        groups: dict of group name -> `(variables, multiplier)`; an empty group is skipped.
        model: the model that holds the variables.

    Returns:
        an `LRMultiplierOptimizer` bound to `model`.
    """
    path_of = {id(variable): path for path, variable in variable_paths(model)}
    patterns, labels = {}, {}
    for name, (variables, multiplier) in groups.items():
        missing = [variable.path for variable in variables if id(variable) not in path_of]
        if missing:
            raise ValueError(
                f"with_group_rates: group {name!r} holds {missing[:3]}, which are not variables "
                f"of model {model.name!r}."
            )
        if variables:
            alternatives = "|".join(re.escape(path_of[id(v)]) for v in variables)
            pattern = f"(?:{alternatives})$"
            patterns[pattern], labels[pattern] = multiplier, name
    wrapped = LRMultiplierOptimizer(optimizer, patterns, labels=labels)
    return wrapped.bind(model)


def layer_decay_multipliers(model, rate=0.75, block_pattern=None):
    """Layer-wise learning-rate decay: the head at 1.0, each block below it `rate` times less.

    The rule of BEiT (Bao et al. 2022, arXiv:2106.08254, Sec. 2.6 / Appendix)
    used to fine-tune ConvNeXt and ViT: with N blocks, the stem gets
    `rate ** (N + 1)`, block i gets `rate ** (N + 1 - i)`, and the head gets
    1. The blocks are `kr.param_groups(model)`: the model card's for our
    models, the layer names' for keras.applications ones; a layer after the
    last block (`post_*`) goes with the last block.

    Args:
        model: a built Keras model.
        rate: float in (0, 1].
        block_pattern: optional regex whose first group is the block name of a
            layer name, for models whose blocks are not called `...block<N>`
            (e.g. `r"^(mixed\\d+)"` for keras.applications' InceptionV3); then
            blocks are found by it instead of by `param_groups`, and layers
            after the last block go with the head.

    Returns:
        an ordered dict `{pattern: multiplier}`, one pattern per block and
        one per layer outside the blocks, ready for `with_lr_multipliers`.

    Example:

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
    >>> mults = layer_decay_multipliers(model, rate=0.5)
    >>> mults["head_dense/"], mults["stage3_block3[_/]"], round(mults["stem_conv/"], 6)
    (1.0, 0.5, 0.000977)
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"layer_decay_multipliers: rate must be in (0, 1], got {rate}.")
    if block_pattern is not None:
        return _layer_decay_by_pattern(model, rate, block_pattern)
    from kerasrecipes.features import param_groups  # features imports the optimizers

    groups = param_groups(model)
    if not groups:
        raise ValueError(f"Model {model.name!r} has no trainable variables to decay.")
    blocks = [group for group in groups if not group.is_stem and not group.is_head]
    depth = {group.name: index for index, group in enumerate(blocks, start=1)}
    multipliers = {}
    for group in groups:
        level = 0 if group.is_stem else len(blocks) + 1 if group.is_head else depth[group.name]
        block_key = re.escape(group.name) + "[_/]"
        for path in group.paths:
            inside_block = not (group.is_stem or group.is_head) and re.match(block_key, path)
            key = block_key if inside_block else re.escape(layer_path(path)) + "/"
            multipliers.setdefault(key, float(rate ** (len(blocks) + 1 - level)))
    return multipliers


def _layer_decay_by_pattern(model, rate, block_pattern):
    """`layer_decay_multipliers` with blocks found by a regex over layer names."""
    paths = [path for path, _ in variable_paths(model)]
    if not paths:
        raise ValueError(f"Model {model.name!r} has no trainable variables to decay.")
    depths, num_blocks = depth_groups(paths, block_pattern=block_pattern)
    multipliers = {}
    for path, depth in zip(paths, depths):
        block = block_of(path, block_pattern=block_pattern)
        key = re.escape(block) + "[_/]" if block else re.escape(layer_path(path)) + "/"
        multipliers.setdefault(key, float(rate ** (num_blocks + 1 - depth)))
    return multipliers
