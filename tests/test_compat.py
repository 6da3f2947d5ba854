"""The private-API shims in `kerasrecipes._compat`: the Keras version, each shim, and the rule
that no other module of the package uses private Keras or TensorFlow API."""

import ast
import pathlib

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasrecipes import _compat

PACKAGE = pathlib.Path(_compat.__file__).parent

# Private members of Keras (and tf.distribute) objects the package has used; only `_compat`
# may name them. Our own classes' private attributes (`self._rate`, ...) are not listed.
PRIVATE_KERAS_MEMBERS = {
    "_flatten_layers",
    "_layers",
    "_trainable_variables",
    "_non_trainable_variables",
    "_var_key",
    "_trainable_variables_indices",
    "_get_variable_index",
    "_use_weight_decay",
    "_exclude_from_weight_decay",
    "_exclude_from_weight_decay_pattern",
    "_exclude_from_weight_decay_cache",
    "_learning_rate",
    "_track_variable",
    "_apply_weight_decay",
    "_variables",
    "_iterations",
    "_tracker",
    "_distribute_strategy",
    "_save_model",
    "_weights_path",
    "_training_metadata_path",
    "_symbolic_build",
    "_maybe_symbolic_build",
    "_in_multi_worker_mode",
    "_initial_epoch",
}
# Public methods Keras calls through the instance, which only `_compat` may replace on one.
PATCHED_KERAS_METHODS = {"update_step"}


# -- the version -------------------------------------------------------------------------------


def test_installed_keras_is_a_checked_version():
    assert _compat.keras_minor_version() in _compat.CHECKED_KERAS_VERSIONS, (
        f"Keras {keras.__version__} is not in CHECKED_KERAS_VERSIONS "
        f"{_compat.CHECKED_KERAS_VERSIONS}: check every shim of kerasrecipes/_compat.py "
        "against it (this file tests them), then add it."
    )
    assert _compat.check_keras_version(strict=True) is True


def test_unchecked_keras_version_warns_or_raises():
    with pytest.warns(UserWarning, match=r"Keras 3\.99\.0 is installed"):
        assert _compat.check_keras_version("3.99.0") is False
    with pytest.raises(RuntimeError, match="3.15"):
        _compat.check_keras_version("2.15.0", strict=True)
    assert _compat.keras_minor_version("3.15.1") == "3.15"


# -- layers ------------------------------------------------------------------------------------


def _nested_model():
    inner = keras.Sequential(
        [keras.layers.Dense(4, name="fc"), keras.layers.BatchNormalization(name="bn")],
        name="backbone",
    )
    model = keras.Sequential(
        [keras.Input((3,), name="x"), inner, keras.layers.Dense(2, name="head")], name="outer"
    )
    return model, inner


def test_sublayers_and_has_sublayers():
    model, inner = _nested_model()
    assert [layer.name for layer in _compat.sublayers(model)] == ["x", "backbone", "head"]
    # Recursive: every layer below, each once (Keras' order; the inner model has its own input).
    below = _compat.sublayers(model, recursive=True)
    assert len(below) == len({id(layer) for layer in below})
    assert sorted(
        layer.name for layer in below if not isinstance(layer, keras.layers.InputLayer)
    ) == ["backbone", "bn", "fc", "head"]
    assert [layer.name for layer in _compat.sublayers(inner)][1:] == ["fc", "bn"]
    assert _compat.has_sublayers(model) and _compat.has_sublayers(inner)
    assert not _compat.has_sublayers(model.get_layer("head"))
    # A layer's own sublayers: MultiHeadAttention's four projections, softmax and dropout.
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    attention(np.zeros((1, 3, 8), "float32"), np.zeros((1, 3, 8), "float32"))
    projections = [l.name for l in _compat.sublayers(attention) if l.weights]
    assert projections == ["query", "key", "value", "attention_output"]
    assert _compat.has_sublayers(attention)


def test_own_trainable_variables_ignore_freezing_sublayers_and_state():
    model, inner = _nested_model()
    fc, bn = inner.get_layer("fc"), inner.get_layer("bn")
    fc.trainable = False
    assert fc.trainable_variables == []
    assert [v.name for v in _compat.own_trainable_variables(fc)] == ["kernel", "bias"]
    assert [v.name for v in _compat.own_trainable_variables(bn)] == ["gamma", "beta"]
    assert _compat.own_trainable_variables(inner) == []
    assert _compat.own_trainable_variables(model) == []


# -- optimizers --------------------------------------------------------------------------------


def _variables():
    return [keras.Variable(np.ones((2, 2), "float32"), name=name) for name in ("w", "bias", "c")]


def test_optimizer_built_variables_tracks_and_index():
    w, bias, c = _variables()
    optimizer = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.build([w, bias])
    assert [id(v) for v in _compat.optimizer_built_variables(optimizer)] == [id(w), id(bias)]
    assert _compat.optimizer_tracks(optimizer, w) and _compat.optimizer_tracks(optimizer, bias)
    assert not _compat.optimizer_tracks(optimizer, c)
    assert _compat.optimizer_variable_index(optimizer, w) == 0
    assert _compat.optimizer_variable_index(optimizer, bias) == 1


def test_weight_decay_exclusion_shims():
    w, bias, c = _variables()
    optimizer = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    assert _compat.weight_decay_exclusions(optimizer) == (set(), None)
    optimizer.exclude_from_weight_decay(var_list=[c], var_names=["bia"])
    keys, pattern = _compat.weight_decay_exclusions(optimizer)
    assert len(keys) == 1 and pattern.pattern == "bia"
    assert _compat.uses_weight_decay(optimizer, w)
    assert not _compat.uses_weight_decay(optimizer, bias)  # by name
    assert not _compat.uses_weight_decay(optimizer, c)  # by variable

    # A second public call replaces the exclusions; the shim adds the earlier ones back.
    again = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    again.exclude_from_weight_decay(var_list=[c])
    earlier, _ = _compat.weight_decay_exclusions(again)
    again.exclude_from_weight_decay(var_list=[w])
    _compat.add_weight_decay_exclusion_keys(again, earlier)
    assert not _compat.uses_weight_decay(again, w)
    assert not _compat.uses_weight_decay(again, c)
    assert _compat.uses_weight_decay(again, bias)

    # A copy made from the config loses them; copying puts them back.
    fresh = keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert _compat.uses_weight_decay(fresh, c)
    fresh = keras.optimizers.AdamW.from_config(optimizer.get_config())
    _compat.copy_weight_decay_exclusions(optimizer, fresh)
    assert not _compat.uses_weight_decay(fresh, c)
    assert not _compat.uses_weight_decay(fresh, bias)
    assert _compat.uses_weight_decay(fresh, w)


def test_track_variable_adds_optimizer_state():
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    before = len(optimizer.variables)
    extra = keras.Variable(2.0, name="extra", trainable=False)
    _compat.track_variable(optimizer, extra)
    assert len(optimizer.variables) == before + 1
    assert optimizer.variables[-1] is extra


def test_learning_rate_source_round_trip():
    optimizer = keras.optimizers.SGD(learning_rate=0.25)
    source = _compat.learning_rate_source(optimizer)
    assert isinstance(source, keras.Variable)
    assert float(source.numpy()) == 0.25
    _compat.set_learning_rate_source(optimizer, lambda: 0.5)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 0.5
    _compat.set_learning_rate_source(optimizer, source)
    assert _compat.learning_rate_source(optimizer) is source
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 0.25

    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    scheduled = keras.optimizers.SGD(learning_rate=schedule)
    assert _compat.learning_rate_source(scheduled) is schedule


def test_replace_update_step_routes_each_variable_update():
    (w, _, _) = _variables()
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    calls = []

    def doubled(gradient, variable, learning_rate):
        calls.append(tuple(variable.shape))
        return original(gradient, variable, learning_rate * 2.0)

    original = _compat.replace_update_step(optimizer, doubled)
    optimizer.apply([np.ones((2, 2), "float32")], [w])
    assert calls == [(2, 2)]
    np.testing.assert_allclose(w.numpy(), np.full((2, 2), 0.8), rtol=1e-6)


@pytest.mark.parametrize("replaced", [False, True])
def test_replace_weight_decay_step(replaced):
    (w, _, _) = _variables()
    optimizer = keras.optimizers.SGD(learning_rate=0.1, weight_decay=0.5)
    calls = []
    if replaced:
        _compat.replace_weight_decay_step(optimizer, lambda variables: calls.append(len(variables)))
    optimizer.apply([np.zeros((2, 2), "float32")], [w])
    # Keras' decay: w - w * weight_decay * learning_rate = 0.95; replaced by a no-op: 1.0.
    np.testing.assert_allclose(w.numpy(), np.full((2, 2), 1.0 if replaced else 0.95), rtol=1e-6)
    assert calls == ([1] if replaced else [])


# -- models and tf.distribute ------------------------------------------------------------------


def _tiny_model():
    model = keras.Sequential([keras.layers.Dense(1, name="out")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_compiled_strategy():
    assert _compat.compiled_strategy(_tiny_model()) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _tiny_model()
    assert _compat.compiled_strategy(model) is strategy


def test_in_multi_worker_mode():
    default = tf.distribute.get_strategy()
    assert hasattr(default.extended, "_in_multi_worker_mode")
    assert _compat.in_multi_worker_mode(default) is False
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert _compat.in_multi_worker_mode(mirrored) is False


def test_symbolic_build_from_an_element_spec():
    model = _tiny_model()
    spec = (tf.TensorSpec((None, 3), "float32"), tf.TensorSpec((None, 1), "float32"))
    assert not model.built
    _compat.symbolic_build(model, spec)
    assert model.built and model.optimizer.built
    assert tuple(model.get_layer("out").kernel.shape) == (3, 1)


def test_fit_goes_through_the_build_hook_and_the_reduce_replacement():
    model = _tiny_model()
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.ones((4, 3), "float32"), np.ones((4, 1), "float32"))
    ).batch(2)
    builds, reductions = [], []
    original_reduce = _compat.trainer_reduce_per_replica()

    def build(iterator=None, data_batch=None):
        builds.append(1)
        _compat.symbolic_build(model, dataset.element_spec)

    def reduce_per_replica(values, strategy, reduction):
        reductions.append(reduction)
        return original_reduce(values, strategy, reduction)

    with (
        _compat.symbolic_build_hook(model, build),
        _compat.replaced_trainer_reduce_per_replica(reduce_per_replica),
    ):
        model.fit(dataset, epochs=1, verbose=0)
    assert builds == [1]
    assert reductions  # traced once per train function
    assert _compat.trainer_reduce_per_replica() is original_reduce
    assert "_maybe_symbolic_build" not in vars(model)


# -- callbacks and saving ----------------------------------------------------------------------


def test_backup_writer_gets_keras_paths_and_can_redirect(tmp_path):
    written = []

    class Redirected(_compat.BackupAndRestoreWithWriter):
        def write_backup(self, weights_path, metadata_path):
            written.append((weights_path, metadata_path))
            super().write_backup(str(tmp_path / "w.weights.h5"), str(tmp_path / "m.json"))

    backup_dir = tmp_path / "backup"
    model = _tiny_model()
    model.build((None, 3))
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[Redirected(str(backup_dir))])
    assert [(pathlib.Path(w).name, pathlib.Path(m).name) for w, m in written] == [
        ("latest.weights.h5", "training_metadata.json")
    ]
    assert (tmp_path / "w.weights.h5").exists() and (tmp_path / "m.json").exists()
    assert not (backup_dir / "latest.weights.h5").exists()


def test_save_weights_to_legacy_h5_loads_back(tmp_path):
    source, _ = _nested_model()
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as file:
        _compat.save_weights_to_legacy_h5(file, source)
    target, _ = _nested_model()
    target.load_weights(str(path))
    for expected, actual in zip(source.weights, target.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_keras_file_utils_is_what_applications_download_with(monkeypatch):
    class Requested(Exception):
        pass

    def fake_get_file(fname, origin=None, **unused):
        raise Requested(fname)

    monkeypatch.setattr(_compat.keras_file_utils(), "get_file", fake_get_file)
    with pytest.raises(Requested, match="mobilenet"):
        keras.applications.MobileNetV2(
            alpha=0.35, include_top=False, weights="imagenet", input_shape=(96, 96, 3)
        )


# -- the rule ----------------------------------------------------------------------------------


def private_uses(source, filename="<source>"):
    """`(line, what)` for each private Keras use in Python `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {a.name}")
                for a in node.names
                if a.name == "keras.src" or a.name.startswith("keras.src.")
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "keras.src" or node.module.startswith("keras.src."):
                found.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "keras" and any(a.name == "src" for a in node.names):
                found.append((node.lineno, "from keras import src"))
        elif isinstance(node, ast.Attribute):
            if node.attr in PRIVATE_KERAS_MEMBERS:
                found.append((node.lineno, f".{node.attr}"))
            elif node.attr == "src" and isinstance(node.value, ast.Name):
                if node.value.id == "keras":
                    found.append((node.lineno, "keras.src"))
            elif node.attr in PATCHED_KERAS_METHODS and isinstance(node.ctx, ast.Store):
                found.append((node.lineno, f"assigns .{node.attr}"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name in PRIVATE_KERAS_MEMBERS:
                found.append((node.lineno, f"overrides {node.name}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
        ):
            for argument in node.args[1:2]:
                if isinstance(argument, ast.Constant) and argument.value in PRIVATE_KERAS_MEMBERS:
                    found.append((node.lineno, f"{node.func.id}(..., {argument.value!r})"))
    return sorted(found)


def test_scanner_finds_each_kind_of_use():
    source = """
from keras.src.utils import file_utils
import keras.src.backend
layers = model._flatten_layers(include_self=False)
strategy = getattr(model, "_distribute_strategy", None)
optimizer.update_step = wrapped
class Backup(keras.callbacks.BackupAndRestore):
    def _save_model(self):
        pass
x = keras.src.ops
self._rate = 1.0  # our own attribute: fine
"""
    assert [line for line, _ in private_uses(source)] == [2, 3, 4, 5, 6, 8, 10]


def test_only_compat_uses_private_keras_api():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py" and path.parent == PACKAGE:
            continue
        for line, what in private_uses(path.read_text(), str(path)):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not offenders, (
        "private Keras API outside kerasrecipes/_compat.py (add a shim there):\n"
        + "\n".join(offenders)
    )
