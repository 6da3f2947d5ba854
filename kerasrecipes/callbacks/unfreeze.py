"""Unfreezing a backbone during `fit`, all at once or a few blocks at a time."""

import re

import keras

from kerasrecipes import _compat
from kerasrecipes.callbacks.base import ConfigurableCallback, strategy_scope
from kerasrecipes.callbacks.phases import mark_phase
from kerasrecipes.features import param_groups
from kerasrecipes.optimizers.decay import _innermost, _multiplier_wrapper, _owning_layers
from kerasrecipes.optimizers.paths import depth_groups, variable_paths


def unfreeze_label(blocks):
    """The label a step of the unfreezing schedule marks the curves with (`blocks` None: all)."""
    return "unfreeze backbone" if blocks is None else f"unfreeze top {blocks} blocks"


def _is_batch_norm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class UnfreezeBackbone(ConfigurableCallback):
    """Train the head with the backbone frozen, then unfreeze it (or its top blocks) at an epoch.

    The lecture's fine-tuning recipe (and ULMFiT's gradual unfreezing, Howard
    & Ruder 2018, arXiv:1801.06146) inside one `fit`:

    * When training starts, the backbone is frozen.
    * At `epoch` (0-based, as Keras counts), the backbone is unfrozen:
      all of it (`blocks=None`) or its top `blocks` blocks, plus the layers
      after the last block. `schedule={epoch: blocks, ...}` unfreezes in
      steps instead, e.g. `{2: 1, 4: 3, 6: None}`.
    * BatchNormalization layers stay frozen (`trainable=False`, so they also
      stay in inference mode) unless `train_bn=True`. In Keras 3 only a
      frozen BatchNorm keeps its statistics when the rest trains.
    * The optimizer keeps its state: it is built on every variable that can
      train, frozen ones included, before the first step (an optimizer built
      on the head alone and not yet used is rebuilt so). Per-layer rates come
      from `kr.optimizers.with_lr_multipliers`; `lr_multiplier=0.1` also
      sets the multiplier of the unfrozen variables when they unfreeze.

    The state depends only on the epoch number, so a run resumed by
    `BackupAndRestore` after the unfreeze epoch starts unfrozen (the
    opposite is a known bug of Lightning's `BackboneFinetuning`, issue
    #21901 there).

    Args:
        backbone: what to freeze: a layer (e.g. a nested `keras.applications`
            model), a layer name, a regex matched against variable paths, or
            None for every layer outside the head (`kr.param_groups`' "head").
        epoch: the epoch to unfreeze at (ignored when `schedule` is given).
        blocks: None for the whole backbone, or the number of top blocks.
        schedule: optional dict `{epoch: blocks}` for gradual unfreezing;
            `{}` keeps the backbone frozen throughout (a head-only phase).
        train_bn: also train BatchNorm layers once unfrozen.
        lr_multiplier: optional multiplier for the variables unfrozen, set on
            the `LRMultiplierOptimizer` when they unfreeze.
        block_pattern: None to take the blocks from `kr.param_groups(model)`
            (the model card's blocks, or keras.applications' block names), or
            a regex naming blocks, see `kerasrecipes.optimizers.paths`.
            Defaults to None.
    """

    def __init__(
        self,
        backbone=None,
        epoch=1,
        blocks=None,
        schedule=None,
        train_bn=False,
        lr_multiplier=None,
        block_pattern=None,
    ):
        super().__init__()
        self.backbone = backbone
        self.epoch = int(epoch)
        self.blocks = blocks
        steps = schedule if schedule is not None else {epoch: blocks}
        self.schedule = {int(k): v for k, v in steps.items()}
        for when, count in self.schedule.items():
            if when < 0 or (count is not None and int(count) < 1):
                raise ValueError(
                    f"UnfreezeBackbone: schedule entry {when}: {count} must have "
                    "epoch >= 0 and blocks None or >= 1."
                )
        self.train_bn = bool(train_bn)
        self.lr_multiplier = lr_multiplier
        self.block_pattern = block_pattern
        self.state = "frozen"

    def get_config(self):
        backbone = self.backbone
        if isinstance(backbone, keras.layers.Layer):
            backbone = backbone.name
        return {
            "backbone": backbone,
            "epoch": self.epoch,
            "blocks": self.blocks,
            "schedule": {str(k): v for k, v in self.schedule.items()},
            "train_bn": self.train_bn,
            "lr_multiplier": self.lr_multiplier,
            "block_pattern": self.block_pattern,
        }

    # -- what the backbone is -----------------------------------------------------------------

    def _backbone_paths(self, model):
        pairs = variable_paths(model)
        backbone = self.backbone
        if backbone is None:  # all but the head the model's builder recorded
            head = {
                id(v) for group in param_groups(model) if group.is_head for v in group.variables
            }
            chosen = [(p, v) for p, v in pairs if id(v) not in head]
        elif isinstance(backbone, keras.layers.Layer):
            ids = {id(v) for v in backbone.weights}
            chosen = [(p, v) for p, v in pairs if id(v) in ids]
        else:
            regex = re.compile(backbone)
            by_name = [(p, v) for p, v in pairs if p.split("/")[0] == backbone]
            chosen = by_name or [(p, v) for p, v in pairs if regex.match(p)]
        if not chosen:
            raise ValueError(
                f"UnfreezeBackbone: backbone={backbone!r} matches no variable of "
                f"model {model.name!r}; its paths start like "
                f"{[p for p, _ in pairs[:3]]}."
            )
        return chosen

    def _unfrozen_set(self, blocks):
        """Paths to train for a state: None = whole backbone, k = top k blocks."""
        paths = [p for p, _ in self._pairs]
        if blocks is None:
            return set(paths)
        if self.block_pattern is not None:
            depths, num_blocks = depth_groups(paths, self.block_pattern)
            return {p for p, depth in zip(paths, depths) if depth > num_blocks - int(blocks)}
        ours = set(paths)
        groups = [g for g in param_groups(self.model) if not g.is_head and ours & set(g.paths)]
        # The top k groups of the backbone; the stem only once every block is unfrozen.
        top = groups[-int(blocks) :] if int(blocks) < len(groups) else groups
        return {p for group in top for p in group.paths if p in ours}

    # -- applying a state ---------------------------------------------------------------------

    def _apply(self, state):
        train = set() if state == "frozen" else self._unfrozen_set(state)
        owners = _owning_layers(self.model)
        layers = {}
        for path, variable in self._pairs:
            layer = owners[id(variable)]
            layers.setdefault(id(layer), [layer, False])
            layers[id(layer)][1] |= path in train
        trained = set()
        for layer, trainable in layers.values():
            if _is_batch_norm(layer) and not self.train_bn:
                trainable = False
            layer.trainable = trainable
            if trainable:
                trained.update(id(v) for v in _compat.own_trainable_variables(layer))
        self.state = state
        return sorted(p for p, v in self._pairs if id(v) in trained)

    def _target_state(self, epoch):
        started = [when for when in self.schedule if when <= epoch]
        if not started:
            return "frozen"
        return self.schedule[max(started)]

    # -- callback hooks -----------------------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        self._pairs = self._backbone_paths(model)
        self._apply("frozen")
        self._prepare_optimizer(model)

    def _prepare_optimizer(self, model):
        """Make the optimizer hold state for every variable that will ever train."""
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            return
        wrapper = _multiplier_wrapper(optimizer)
        candidates = [v for _, v in variable_paths(model)]
        if not optimizer.built:
            if wrapper is not None and wrapper.bound_model() is None:
                wrapper.bind(model)
            with strategy_scope(model):
                optimizer.build(candidates)
            return
        inner = _innermost(optimizer)
        missing = [v for v in candidates if not _compat.optimizer_tracks(inner, v)]
        if not missing:
            return
        if int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
            raise ValueError(
                f"UnfreezeBackbone: optimizer {optimizer.name!r} was built without "
                f"{len(missing)} backbone variables and has already trained, so it has no "
                "state for them. Compile with kr.optimizers.with_lr_multipliers(..., "
                "model=model), which builds on every variable, or build the optimizer on "
                "model.weights' trainable variables before the first fit."
            )
        with strategy_scope(model):
            fresh = keras.saving.deserialize_keras_object(
                keras.saving.serialize_keras_object(optimizer)
            )
            fresh_inner = _innermost(fresh)
            _compat.copy_weight_decay_exclusions(inner, fresh_inner)
            fresh_wrapper = _multiplier_wrapper(fresh)
            if fresh_wrapper is not None:
                fresh_wrapper._strict = True
                fresh_wrapper.bind(model)
            fresh.build(candidates)
        model.optimizer = fresh

    def on_epoch_begin(self, epoch, logs=None):
        target = self._target_state(epoch)
        if target == self.state:
            return
        unfrozen = self._apply(target)
        if self.lr_multiplier is not None:
            wrapper = _multiplier_wrapper(self.model.optimizer)
            if wrapper is None:
                raise ValueError(
                    "UnfreezeBackbone(lr_multiplier=...) needs an optimizer made with "
                    "kr.optimizers.with_lr_multipliers."
                )
            wanted = {id(v) for p, v in self._pairs if p in set(unfrozen)}
            built_on = _compat.optimizer_built_variables(wrapper)
            paths = [p for p, v in zip(wrapper.paths, built_on) if id(v) in wanted]
            if paths:
                wrapper.set_multiplier(paths, self.lr_multiplier)
        self.model.make_train_function(force=True)
        mark_phase(self.model, epoch, unfreeze_label(target))
