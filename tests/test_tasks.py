"""The task registry: each task is one module in `kerasrecipes/tasks/`, found by name, and a new
task needs no edit outside it."""

import ast
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasrecipes as kr
from kerasrecipes.tasks import base

PACKAGE = pathlib.Path(kr.__file__).parent


def test_the_built_in_tasks_are_found_by_name_and_an_unknown_one_is_named():
    assert kr.tasks.task_names()[:3] == ("classification", "segmentation", "detection")
    metrics = [kr.tasks.get_task(name).main_metric for name in kr.tasks.task_names()[:3]]
    assert metrics == ["accuracy", "mean_iou", "map50"]
    with pytest.raises(ValueError, match=r"task must be one of \['classification', .*'detectoin'"):
        kr.tasks.get_task("detectoin")
    with pytest.raises(ValueError, match="task must be one of"):
        kr.resolve_config(task="detectoin")


def test_no_module_outside_the_tasks_compares_task_names():
    pattern = re.compile(r"task ==|task !=|task in\b")
    hits = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if "tasks" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_no_package_module_imports_the_command_line():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":  # `python -m kerasrecipes` is the command
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(name == "kerasrecipes.cli" for name in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert importers == []


def test_the_import_contracts_hold():
    """pyproject.toml's import-linter contracts: the floors of the package, models below all."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run(
        [lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


# -- a fourth task, defined here: image regression (the mean brightness of an image) ---------------


@dataclasses.dataclass
class RegressionInfo:
    train_paths: list
    val_paths: list
    class_names: tuple = ("brightness",)
    counts: dict = dataclasses.field(default_factory=dict)
    val_counts: dict = dataclasses.field(default_factory=dict)
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def num_classes(self):
        return len(self.class_names)


class Brightness(base.Task):
    name = "brightness_regression"
    main_metric = "mae"
    metric_words = "mean absolute error"
    least_classes = 1
    data_layout = "a folder of PNGs"
    result_keys = ("val_mae",)

    def read(self, folder, config):
        paths = sorted(str(p) for p in pathlib.Path(folder).glob("*.png"))
        images = np.stack([np.asarray(Image.open(p), "float32") for p in paths])
        targets = images.mean(axis=(1, 2, 3)) / 255.0
        split = int(len(paths) * 0.8)

        def dataset(part):
            return tf.data.Dataset.from_tensor_slices((images[part], targets[part])).batch(16)

        info = RegressionInfo(paths[:split], paths[split:])
        info.counts, info.val_counts = {"brightness": split}, {"brightness": len(paths) - split}
        return dataset(slice(0, split)), dataset(slice(split, None)), info

    def describe_data(self, info):
        return f"{len(info.train_paths)} training and {len(info.val_paths)} validation images"

    def build_model(self, backbone, num_classes, config, train_ds):
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
        output = keras.layers.Dense(1, name="head_dense")(x)
        return keras.Model(backbone.input, keras.ops.squeeze(output, -1), name="regressor")

    def loss(self, config, train_ds):
        return "mse"

    def metrics(self, num_classes):
        return ["mae"]

    def save_results(self, folder, model, val_ds, class_names, config, backbone):
        model.save(folder.file("model.keras"))
        return {"val_mae": float(model.evaluate(val_ds, verbose=0, return_dict=True)["mae"])}

    def summary_lines(self, report):
        return [f"Final validation mean absolute error {report['val_mae']:.3f}"]


@pytest.fixture
def brightness_task():
    task = base.register_task(Brightness())
    yield task
    base._TASKS.pop(task.name)


def test_a_new_task_is_one_class_registered_and_kr_run_trains_it(tmp_path, brightness_task):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(80):
        level = rng.uniform(20, 235)
        pixels = np.clip(rng.normal(level, 10, (16, 16, 3)), 0, 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{index}.png")
    config = kr.FineTuneConfig(
        task=brightness_task.name,
        model="baseline_cnn",
        weights="none",
        image_size=16,
        finetune_epochs=8,
        finetune_lr=3e-3,
        precision="float32",
        out_dir=str(tmp_path / "run"),
        verbose=0,
    )
    lines = []
    result = kr.run(config, str(folder), echo=lines.append)
    spread = np.std([np.asarray(Image.open(p)).mean() / 255 for p in sorted(folder.glob("*.png"))])
    # The regressor beats predicting the mean (whose error is about 0.8 standard deviations).
    assert result.report["val_mae"] < 0.5 * spread
    assert result.report["status"] == "finished"
    assert "val_mae" in result.report["phases"]["finetune"]
    assert os.path.exists(tmp_path / "run" / "model.keras")
    assert any(line.startswith("Final validation mean absolute error") for line in lines)
    assert "Data: 64 training and 16 validation images; 0 files skipped" in lines
