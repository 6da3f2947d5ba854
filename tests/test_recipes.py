"""Recipes run as scripts; the demo data they train on."""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest

import kerasrecipes as kr

RECIPES = pathlib.Path(__file__).resolve().parent.parent / "recipes"


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_images_are_deterministic_and_balanced():
    images, labels = kr.data.demo_images(num_images=100, image_size=16, num_classes=10, seed=5)
    again, _ = kr.data.demo_images(num_images=100, image_size=16, num_classes=10, seed=5)
    other, _ = kr.data.demo_images(num_images=100, image_size=16, num_classes=10, seed=6)
    assert images.shape == (100, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    assert np.bincount(labels).tolist() == [10] * 10


def test_demo_images_refuse_classes_the_image_cannot_show():
    with pytest.raises(ValueError, match="Use fewer classes or a larger image_size"):
        kr.data.demo_images(num_images=10, image_size=8, num_classes=10)


def test_cifar_recipe_quick_run_learns_and_saves(tmp_path):
    recipe = load_recipe("cifar_resnet")
    history = recipe.main(["--dataset", "demo", "--quick", "--epochs", "2", "--out", str(tmp_path)])
    assert len(history.history["val_accuracy"]) == 2
    # 10 classes: chance is 0.1; two short epochs already do clearly better
    assert history.history["accuracy"][-1] > 0.3
    loaded = keras.models.load_model(tmp_path / "resnet20.keras")
    assert loaded.output_shape == (None, 10)
