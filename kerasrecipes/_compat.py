"""Every use of private Keras and TensorFlow API in kerasrecipes, in one place.

The rule: no other module of the package imports `keras.src` or reaches into
a Keras (or `tf.distribute`) object's `_private` member; it calls a function
here instead. Each function does one thing, and says why the public API does
not do it and which upstream issue, or which missing public API, would make
it unnecessary. `tests/test_compat.py` exercises every function on real Keras
objects and scans the package for private uses outside this module.

Keras does not promise anything about its private members between releases,
so this module names the Keras versions it was checked against
(`CHECKED_KERAS_VERSIONS`, major.minor). Importing it with another version
warns (`check_keras_version`); nothing fails until a shim itself breaks.

Updating for a new Keras version:

1. Install it and run `pytest tests/test_compat.py` (then the whole suite).
2. For each failing shim, read the new Keras source of the member it names
   (`keras/src/...`, paths in the comments) and adapt that one function;
   if the new Keras has a public API for it, use that and delete the shim.
3. Add the version to `CHECKED_KERAS_VERSIONS`.
"""

import contextlib
import warnings

import keras
from keras import ops

CHECKED_KERAS_VERSIONS = ("3.15",)


# -- the Keras version -------------------------------------------------------------------------


def keras_minor_version(version=None):
    """The major.minor part of a Keras version string (default: the installed Keras).

    >>> keras_minor_version("3.15.1")
    '3.15'
    """
    version = keras.__version__ if version is None else version
    return ".".join(version.split(".")[:2])


def check_keras_version(version=None, strict=False):
    """Whether `version` (default: the installed Keras) is one this module was checked against.

    Returns True if it is. Otherwise warns (a `UserWarning` naming both) and
    returns False, or raises `RuntimeError` when `strict`. Called once when
    the module is imported, so a user with another Keras sees the warning but
    can still use everything whose shims still work.

    >>> check_keras_version("3.15.0")
    True
    """
    version = keras.__version__ if version is None else version
    if keras_minor_version(version) in CHECKED_KERAS_VERSIONS:
        return True
    message = (
        f"kerasrecipes was checked against Keras {', '.join(CHECKED_KERAS_VERSIONS)}, "
        f"but Keras {version} is installed. It uses a few private Keras members "
        "(all in kerasrecipes/_compat.py), which may have changed: if something fails, "
        f"install keras=={CHECKED_KERAS_VERSIONS[-1]}.* or run tests/test_compat.py to see "
        "which shim needs updating."
    )
    if strict:
        raise RuntimeError(message)
    warnings.warn(message, stacklevel=2)
    return False


# -- layers ------------------------------------------------------------------------------------


def sublayers(layer, recursive=False):
    """The layers tracked inside `layer`, in tracking order, each once; `layer` itself excluded.

    `recursive=False`: the direct children; `recursive=True`: every layer below.

    Why private: Keras 3 has no public way to list the sublayers of a layer.
    `Model.layers` exists on models only (and is this same call, non-recursive);
    the sublayers of a custom layer (our residual blocks' convolutions,
    `MultiHeadAttention`'s projections) and of a nested model's own layers
    recursively are only reachable through `Layer._flatten_layers`
    (keras/src/layers/layer.py). Keras 2 had `tf.Module.submodules`; Keras 3
    layers do not (tensorflow/docs#2415). Retired by a public `Layer.layers`
    or `Layer.sublayers(recursive=...)` in Keras; no upstream issue found.

    >>> inner = keras.Sequential([keras.layers.Dense(2, name="fc")], name="backbone")
    >>> model = keras.Sequential(
    ...     [keras.Input((3,), name="x"), inner, keras.layers.Dense(1, name="head")]
    ... )
    >>> [layer.name for layer in sublayers(model)]
    ['x', 'backbone', 'head']
    >>> sorted(layer.name for layer in sublayers(model, recursive=True) if layer.weights)
    ['backbone', 'fc', 'head']
    """
    return list(layer._flatten_layers(include_self=False, recursive=recursive))


def has_sublayers(layer):
    """Whether `layer` tracks any layer inside it (a leaf layer has none).

    Why private: as `sublayers`; this reads `Layer._layers` directly, as
    `_flatten_layers` does. Retired by the same public sublayer API.
    """
    return bool(layer._layers)


def own_trainable_variables(layer):
    """The variables `layer` itself created that can train, whether or not it is frozen now.

    Sublayers' variables are not included, nor non-trainable state (BatchNorm
    moving statistics, seeds).

    Why private: `layer.trainable_variables` is empty while the layer is
    frozen and includes every sublayer's variables; `layer.weights` includes
    non-trainable state. Freezing and unfreezing by layer, per-layer learning
    rates and weight-decay rules need the variables a layer owns that can
    train, which only `Layer._trainable_variables` (keras/src/layers/layer.py)
    holds. Retired by a public, non-recursive, trainable-flag-independent
    accessor (e.g. `layer.variables(recursive=False)`); no upstream issue found.
    """
    return list(layer._trainable_variables)


# -- optimizers: the variables they were built on ----------------------------------------------


def optimizer_built_variables(optimizer):
    """The model variables `optimizer` was built on, in build order (index = state slot).

    Why private: Keras 3 optimizers keep the list given to `build` in
    `Optimizer._trainable_variables` (keras/src/optimizers/base_optimizer.py)
    and expose only their own state (`optimizer.variables`). Our per-variable
    multipliers are a vector aligned with this list. Retired by a public
    accessor of the built-on variables; no upstream issue found.
    """
    return list(optimizer._trainable_variables)


def optimizer_tracks(optimizer, variable):
    """Whether `optimizer` was built on `variable` (so it has state for it).

    Why private: the optimizer looks variables up by `_var_key`, which under
    `tf.distribute` is the id of the distributed container, not `id()` of
    the variable seen in a replica; the table is
    `_trainable_variables_indices`. Both live in
    keras/src/optimizers/base_optimizer.py and
    keras/src/backend/tensorflow/optimizer.py. Retired by a public
    `Optimizer.has_variable`-like query; no upstream issue found.
    """
    return optimizer._var_key(variable) in optimizer._trainable_variables_indices


def optimizer_variable_index(optimizer, variable):
    """The position of `variable` among the variables `optimizer` was built on.

    Why private: it is the index Keras' own optimizers use to find a
    variable's slot (momentum, ...) in `update_step`
    (`Optimizer._get_variable_index`). Custom optimizers (`LARS`) and our
    multiplier vector need it the same way. Retired when Keras makes it part
    of the documented custom-optimizer API (its own optimizers use it in
    every `update_step`); no upstream issue found.
    """
    return optimizer._get_variable_index(variable)


def track_variable(optimizer, variable):
    """Register a variable made outside `build` as part of `optimizer`'s state.

    Tracked variables are in `optimizer.variables`, so they are saved and
    restored with the optimizer, in creation order.

    Why private: `Optimizer._track_variable`. `Optimizer.add_variable` is
    public, but is meant for `build`-time state; our learning-rate scale is
    made in `__init__`, as Keras makes `iterations` and the learning-rate
    variable there. Retired by a documented way to add state in `__init__`,
    or by moving the variable to `build` (changes the saved variable order).
    """
    optimizer._track_variable(variable)


# -- optimizers: weight decay ------------------------------------------------------------------


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer` applies decoupled weight decay to `variable` (its exclusion rules).

    Why private: `Optimizer._use_weight_decay` is the only implementation
    of the rules set by the public `exclude_from_weight_decay`; there is no
    public query. Retired by a public `Optimizer.uses_weight_decay(variable)`;
    no upstream issue found (keras-team/keras#16274 discusses the design of
    the exclusion API).
    """
    return optimizer._use_weight_decay(variable)


def weight_decay_exclusions(optimizer):
    """`(variable_keys, name_pattern)` set by earlier `exclude_from_weight_decay` calls.

    `variable_keys` is a new set (empty if none); `name_pattern` a compiled
    regex or None.

    Why private: `exclude_from_weight_decay` replaces the exclusions instead
    of adding to them, and they are stored only in
    `_exclude_from_weight_decay` / `_exclude_from_weight_decay_pattern`
    (keras/src/optimizers/base_optimizer.py). Adding exclusions without
    dropping the user's needs to read them. Retired by an additive
    `exclude_from_weight_decay` or a public getter; no upstream issue found.
    """
    keys = set(getattr(optimizer, "_exclude_from_weight_decay", set()))
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    return keys, pattern


def add_weight_decay_exclusion_keys(optimizer, keys):
    """Add variable keys (from `weight_decay_exclusions`) to `optimizer`'s exclusions.

    Call it after `optimizer.exclude_from_weight_decay(...)`, before the
    optimizer is built. Why private, retired by: as `weight_decay_exclusions`.
    """
    optimizer._exclude_from_weight_decay |= keys


def copy_weight_decay_exclusions(source, target):
    """Give optimizer `target` the weight-decay exclusions of optimizer `source`.

    Why private: Keras leaves the exclusions out of `get_config`, so an
    optimizer rebuilt from its config (`UnfreezeBackbone` rebuilds one)
    would decay what the original skipped; they can only be copied through
    the private attributes. Retired by exclusions in the optimizer's config
    or a public getter (see `weight_decay_exclusions`).
    """
    for attribute in ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
        if hasattr(source, attribute):
            setattr(target, attribute, getattr(source, attribute))


def replace_weight_decay_step(optimizer, apply_weight_decay):
    """Make `optimizer` call `apply_weight_decay(variables)` instead of its decoupled decay.

    Keras applies decoupled weight decay to all variables before the
    per-variable updates, with the optimizer's unscaled learning rate. Our
    `LARS` adds the decay to the gradient instead, and our learning-rate
    multipliers apply it inside the (scaled) update; both pass a no-op here.

    Why private: the decay step is `Optimizer._apply_weight_decay`
    (keras/src/optimizers/base_optimizer.py, overridden by the TensorFlow
    backend optimizer); there is no public switch. Retired by a public hook
    or an option to apply decay inside `update_step`; no upstream issue found.
    """
    optimizer._apply_weight_decay = apply_weight_decay


def replace_update_step(optimizer, update_step):
    """Make `optimizer` call `update_step(gradient, variable, learning_rate)` for each variable.

    Returns the optimizer's own `update_step` (bound), for the replacement to call.

    Why private: `update_step` is public to override in a subclass, but
    wrapping it on an existing instance relies on Keras calling it through
    the instance attribute (`_backend_update_step` in
    keras/src/optimizers/base_optimizer.py and
    keras/src/backend/tensorflow/optimizer.py). The wrapper must work on any
    optimizer instance the user passes. Retired by a public per-variable
    learning-rate scale in Keras' optimizers (the long-standing request
    keras-team/keras#5920, closed without it).
    """
    original = optimizer.update_step
    optimizer.update_step = update_step
    if keras.backend.backend() == "torch":
        # Keras' PyTorch optimizers update all variables at once with `torch._foreach_*`
        # (`_parallel_update_step` in keras/src/backend/torch/optimizers/), never calling
        # `update_step`: put back the per-variable loop of keras/src/optimizers/base_optimizer.py.
        import torch

        def update_each_variable(grads, variables, learning_rate):
            with torch.no_grad():
                for gradient, variable in zip(grads, variables):
                    optimizer.update_step(gradient, variable, learning_rate)

        optimizer._backend_update_step = update_each_variable
    return original


def warm_up_ema(optimizer):
    """Make `optimizer`'s weight average (`use_ema=True`) start fast: its decay at step `t` is
    `min(ema_momentum, (1 + t) / (10 + t))`, the warm-up of TensorFlow's
    `ExponentialMovingAverage(num_updates=...)`. Keras averages at its fixed
    `ema_momentum` (0.99) from the first step, so after 100 steps the average
    still holds 37% of the first weights, which cost 0.13 validation accuracy
    on the regularization recipe's short runs (docs/regularization.md).

    Why private: the average is updated by `_update_model_variables_moving_average`
    (keras/src/optimizers/base_optimizer.py), which `apply` calls through the
    instance attribute; Keras has no public warm-up or decay schedule for it.
    Retired by an `ema_momentum` schedule in Keras; no upstream issue found.
    """

    def update_average(trainable_variables):
        if not optimizer.use_ema:
            return
        step = ops.cast(optimizer.iterations, "float32")
        decay = ops.minimum(optimizer.ema_momentum, (1.0 + step) / (10.0 + step))
        decay = decay * ops.cast(ops.not_equal(optimizer.iterations, 0), "float32")
        for variable, average in zip(
            trainable_variables, optimizer._model_variables_moving_average
        ):
            if average is not None:
                rate = ops.cast(decay, variable.dtype)
                average.assign(rate * average + (1.0 - rate) * variable)

    optimizer._update_model_variables_moving_average = update_average
    return optimizer


# -- optimizers: the learning rate -------------------------------------------------------------


def learning_rate_source(optimizer):
    """What `optimizer` computes its learning rate from: a variable, a schedule or a callable.

    Why private: the public `learning_rate` evaluates a schedule or callable
    at the current step and returns a tensor, so it cannot tell a schedule
    from a float rate, nor give back the schedule to restore it later. The
    source is `Optimizer._learning_rate` (keras/src/optimizers/base_optimizer.py).
    Retired by a public read-only `learning_rate_schedule`-like attribute; no
    upstream issue found.
    """
    return optimizer._learning_rate


def set_learning_rate_source(optimizer, source):
    """Put `source` (from `learning_rate_source`, or a callable) back as `optimizer`'s rate.

    Why private: the public setter assigns a float to the existing learning
    rate variable and raises `TypeError` on an optimizer built with a
    schedule; restoring a saved variable, schedule or callable exactly needs
    the attribute itself. Retired with `learning_rate_source`.
    """
    optimizer._learning_rate = source


# -- models and tf.distribute ------------------------------------------------------------------


def compiled_strategy(model):
    """The `tf.distribute` strategy `model` was created under, or None (none, or not TensorFlow).

    Why private: the public `model.distribute_strategy` falls back to the
    strategy current at the call (the default one outside any scope), so it
    cannot tell "made under a strategy" from "made without one"; only the
    TensorFlow trainer's `_distribute_strategy`
    (keras/src/backend/tensorflow/trainer.py) records it. Retired by a public
    attribute that does not fall back; no upstream issue found.
    """
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy):
    """Whether a `tf.distribute` strategy spans several processes (workers).

    Why private: TensorFlow answers this only in
    `strategy.extended._in_multi_worker_mode()`
    (tensorflow/python/distribute/distribute_lib.py); a
    `MultiWorkerMirroredStrategy` with one worker is not multi-worker, so the
    class does not tell. Retired by a public TensorFlow query.
    """
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def symbolic_build(model, data_batch):
    """Build `model` (and its metrics and optimizer) from a batch or its `element_spec`.

    Why private: `Trainer._symbolic_build` (keras/src/trainers/trainer.py) is
    how `fit` builds the model before the first step; under
    `MultiWorkerMirroredStrategy` we must call it ourselves with the
    dataset's spec (see `symbolic_build_hook`). Retired with
    keras-team/keras#20585.
    """
    model._symbolic_build(data_batch=data_batch)


def build_before_fit(model, dataset):
    """Build `model`'s optimizer, metrics and loss before `fit` traces its first step.

    Keras 3.15's TensorFlow trainer builds them up front only under a
    `tf.distribute` strategy (`_maybe_symbolic_build` in
    keras/src/backend/tensorflow/trainer.py). Otherwise the optimizer's slots
    and the metrics' variables are made inside the first trace of the train
    step, and `tf.function`, having seen variables made, traces the whole step
    a second time (tensorflow/tensorflow#48851). Building first, as Keras
    does under a strategy, saves that trace: the first `fit` of ResNet-50 at
    32x32 with AdamW and accuracy, one batch, took 25.7 s without and 13.9 s
    with it on 2 cores.

    Also how `distribute.keras_multi_worker_fixes` builds. Why private:
    `Trainer._symbolic_build`, through `symbolic_build`. Retired when Keras
    builds before tracing without a strategy too.
    """
    if keras.backend.backend() != "tensorflow":
        return
    with model.distribute_strategy.scope():
        symbolic_build(model, dataset.element_spec)


@contextlib.contextmanager
def symbolic_build_hook(model, build):
    """Within the block, `fit` builds `model` with `build(iterator=None, data_batch=None)`.

    Why private: Keras 3.15's TensorFlow trainer builds the model in
    `_maybe_symbolic_build` (keras/src/backend/tensorflow/trainer.py) from
    the first batch averaged with `strategy.reduce`, which fails under
    `MultiWorkerMirroredStrategy` ("Attempt to convert a value
    (PerReplica...)"). Replacing it on the instance is the only way in.
    Retired with keras-team/keras#20585 (open).
    """
    model._maybe_symbolic_build = build
    try:
        yield
    finally:
        del model._maybe_symbolic_build


def trainer_reduce_per_replica():
    """The function Keras' TensorFlow trainer reduces each step's logs across replicas with."""
    from keras.src.backend.tensorflow import trainer

    return trainer.reduce_per_replica


@contextlib.contextmanager
def replaced_trainer_reduce_per_replica(reduce_per_replica):
    """Within the block, Keras' TensorFlow trainer reduces step logs with `reduce_per_replica`.

    `reduce_per_replica(values, strategy, reduction)` has the signature of
    `keras.src.backend.tensorflow.trainer.reduce_per_replica`.

    Why private: that module-level function averages scalar logs with
    `strategy.reduce("MEAN", value, axis=0)`, which raises "Invalid
    reduction dimension 0 for input with 0 dimensions" under
    `MultiWorkerMirroredStrategy` (tensorflow/tensorflow#72388); it is
    looked up at call time, so patching the module is the only way in.
    Retired with keras-team/keras#20585 (open).
    """
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.reduce_per_replica = original


# -- callbacks ---------------------------------------------------------------------------------


def reset_initial_epoch(model):
    """Forget the epoch a `BackupAndRestore` restored, so the next `fit` starts where it is told.

    Why private: `BackupAndRestore.on_train_begin` sets `model._initial_epoch`
    and every backend's `fit` prefers it to its own `initial_epoch` argument
    (keras/src/backend/*/trainer.py: `self._initial_epoch or initial_epoch`).
    Nothing resets it, so after a resumed `fit`, the next `fit` on the same
    model (the next phase of a fine-tuning run) starts at the stale epoch.
    Retired when Keras resets it at the end of `fit`.
    """
    model._initial_epoch = None


class BackupAndRestoreWithWriter(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backup writing subclasses can redirect.

    Subclasses override `write_backup(weights_path, metadata_path)`; calling
    `super().write_backup(other_weights, other_metadata)` writes Keras' own
    backup (the weights, then the epoch metadata) to other paths.

    Why private: Keras writes the backup in `BackupAndRestore._save_model`
    to the paths in `_weights_path` and `_training_metadata_path`
    (keras/src/callbacks/backup_and_restore.py), in place, so a process
    killed while writing leaves a truncated file (keras-team/keras#20463;
    its fix, keras-team/keras#20465, added `double_checkpoint` but kept the
    in-place write). Retired by an atomic write in Keras' `BackupAndRestore`
    or a public hook for where it writes.
    """

    def _save_model(self):
        self.write_backup(self._weights_path, self._training_metadata_path)

    def write_backup(self, weights_path, metadata_path):
        """Keras' own backup, written to `weights_path` and `metadata_path`."""
        saved = self._weights_path, self._training_metadata_path
        self._weights_path, self._training_metadata_path = weights_path, metadata_path
        try:
            super()._save_model()
        finally:
            self._weights_path, self._training_metadata_path = saved


# -- saving, for tests -------------------------------------------------------------------------


def save_weights_to_legacy_h5(h5_group, model):
    """Write `model`'s weights into an open `h5py` group in the legacy Keras 2 `.h5` layout.

    The ImageNet files `keras.applications` downloads are in this layout;
    the weight-port tests write such files to stand in for the downloads.

    Why private: Keras 3 reads the legacy layout (`load_weights` on `.h5`)
    but writes it only through
    `keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group`.
    Retired by a public legacy-format writer; none is planned upstream.
    """
    from keras.src.legacy.saving import legacy_h5_format

    legacy_h5_format.save_weights_to_hdf5_group(h5_group, model)


def keras_file_utils():
    """The module whose `get_file` `keras.applications` downloads weights with.

    Tests replace its `get_file` (with pytest's `monkeypatch.setattr`) to
    serve local files instead of downloading.

    Why private: `keras.applications` calls `keras.src.utils.file_utils.get_file`
    through that module, so replacing the public `keras.utils.get_file` does
    not reach it. Retired by a public way to point `keras.applications` at
    local weight files; none is planned upstream.
    """
    from keras.src.utils import file_utils

    return file_utils


# -- augmentation layers in tf.data ------------------------------------------------------------

# Keras' base of preprocessing layers that run in `tf.data` on every backend. Our per-image
# augmentation layers (kerasrecipes/layers/augmentation.py) subclass it as Keras' own
# `RandomFlip` and `RandAugment` do: in a `tf.data` map it switches `self.backend` to
# TensorFlow, so the layer runs in the input pipeline whichever Keras backend is set, and in a
# model it uses the model's backend. Why private: `DataLayer` is not exported (its docstring's
# examples import it from `keras.src`). Retired by a public `keras.layers.DataLayer`.
from keras.src.layers.preprocessing.data_layer import DataLayer  # noqa: E402, F401


def data_layer_seed(layer):
    """The seed generator of a `DataLayer` for the backend it runs on now.

    Why private: `DataLayer._get_seed_generator` and `DynamicBackend._backend`
    (keras/src/layers/preprocessing/data_layer.py) are how Keras' own
    augmentation layers pick a TensorFlow seed generator inside `tf.data`
    and the backend's own in a model; there is no public equivalent.
    """
    return layer._get_seed_generator(layer.backend._backend)


# -- keras-hub's RetinaNet parts -------------------------------------------------------------------


def retinanet_parts():
    """keras-hub's `FeaturePyramid`, `PredictionHead` and `RetinaNetLabelEncoder` classes.

    Why private: keras-hub exports `RetinaNetObjectDetector` whole and, of its
    parts, only `AnchorGenerator`, `BoxMatcher` and `NonMaxSuppression`
    (`keras_hub.layers`); the feature pyramid, the prediction heads and the
    label encoder live in `keras_hub.src.models.retinanet`. We build the same
    network on any zoo backbone with our layer names (`kerasrecipes.models.retinanet`
    says why), so we import them from there. Retired if keras-hub exports them.
    """
    from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid
    from keras_hub.src.models.retinanet.prediction_head import PredictionHead
    from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder

    return FeaturePyramid, PredictionHead, RetinaNetLabelEncoder


def tensorflow_onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels in this process.

    `TF_ENABLE_ONEDNN_OPTS`, or TensorFlow's default for the CPU, read once
    when TensorFlow is imported. TensorFlow has no public query (it says so
    only in a start-up log line); `tensorflow.python.util._pywrap_util_port`
    is what its own tests call.
    """
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


check_keras_version()
