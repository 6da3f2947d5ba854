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
    # ResNet-8 (n=1), the smallest 6n+2 depth: the same code path as ResNet-20 in half the time.
    history = recipe.main(
        ["--dataset", "demo", "--quick", "--epochs", "2", "--depth", "8", "--out", str(tmp_path)]
    )
    assert len(history.history["val_accuracy"]) == 2
    # 10 classes: chance is 0.1; two short epochs already do clearly better
    assert history.history["accuracy"][-1] > 0.3
    loaded = keras.models.load_model(tmp_path / "resnet8.keras")
    assert loaded.output_shape == (None, 10)


def test_finetune_two_class_recipe_writes_its_figures_and_model(tmp_path):
    data = kr.data.make_demo_dataset(tmp_path / "data", num_images=64, bad_files=True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = kr.layers.ImagePreprocessing("unit")(inputs)
    x = keras.layers.Conv2D(8, 3, name="stage1_block1_conv")(x)
    x = keras.layers.BatchNormalization(name="stage1_block1_bn")(x)
    backbone = keras.Model(inputs, x, name="tiny")
    backbone.save(tmp_path / "tiny.keras")
    statistics = [np.array(v) for v in backbone.weights if "moving" in v.path]

    recipe = load_recipe("finetune_two_class")
    out = tmp_path / "run"
    model, accuracy = recipe.main(
        [
            "--data",
            str(data),
            "--weights",
            str(tmp_path / "tiny.keras"),
            "--out",
            str(out),
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
        ]
    )
    for name in ("curves.png", "confusion.png", "predictions.png", "two_class.keras"):
        assert (out / name).stat().st_size > 0, name
    assert 0.0 <= accuracy <= 1.0
    inner = model.get_layer("tiny")
    after = [np.array(v) for v in inner.weights if "moving" in v.path]
    for old, new in zip(statistics, after):
        np.testing.assert_array_equal(old, new)
    assert kr.callbacks.phase_marks(model) == {0: "phase 1: head", 1: "unfreeze backbone"}


def test_weight_decay_recipe_shows_l2_equals_decay_for_sgd_only(tmp_path):
    recipe = load_recipe("weight_decay_vs_l2")
    differences, results = recipe.main(["--quick", "--out", str(tmp_path)])
    # One step from the same weights: the same update for SGD (float32 rounding), not for Adam.
    assert differences["sgd"] < 1e-6
    assert differences["adam"] > 100 * max(differences["sgd"], 1e-7)
    assert [(r["optimizer"], r["regularizer"]) for r in results] == recipe.SETUPS
    assert (tmp_path / "weight_decay_vs_l2.json").exists()


def test_imbalanced_recipe_class_weights_raise_rare_class_recall(tmp_path):
    recipe = load_recipe("imbalanced")
    # The two methods the assertion compares, and oversampling with augmentation, which runs
    # the recipe's other two data branches (each method traces a model of its own).
    methods = ["no correction", "class weights", "oversample + augmentation"]
    argv = ["--quick", "--out", str(tmp_path), "--methods", *methods]
    results = {r["method"]: r for r in recipe.main(argv)}
    assert list(results) == methods
    # Weighting the loss moves the decision towards the rare class: it finds more of it.
    assert results["class weights"]["minority_recall"] > results["no correction"]["minority_recall"]
    for r in results.values():
        assert r["balanced_accuracy"] == pytest.approx(
            (r["minority_recall"] + r["majority_recall"]) / 2
        )
    assert (tmp_path / "imbalanced.json").exists()


def test_depth_recipe_trains_plain_and_residual_nets_and_plots(tmp_path):
    recipe = load_recipe("depth_plain_vs_residual")
    results = recipe.main(["--quick", "--out", str(tmp_path)])
    shallow, deep = recipe.QUICK_DEPTHS
    assert [(r["depth"], r["kind"]) for r in results] == [
        (shallow, "plain"),
        (shallow, "ResNet"),
        (deep, "plain"),
        (deep, "ResNet"),
    ]
    errors = {(r["depth"], r["kind"]): r["train_error"] for r in results}
    # At this budget the robust effect is that depth makes training harder without
    # shortcuts: the deeper plain net ends far above the shallow one in training error.
    assert errors[deep, "plain"] > errors[shallow, "plain"] + 0.2
    assert (tmp_path / "depth_plain_vs_residual.png").stat().st_size > 0


def test_finetune_vs_scratch_recipe_fine_tuning_wins_on_few_images(tmp_path):
    recipe = load_recipe("finetune_vs_scratch")
    results = recipe.main(["--quick", "--out", str(tmp_path)])
    assert [r["images_per_class"] for r in results] == [5, 50]
    # 5 images per class: from scratch stays near chance, the pre-trained backbone does not.
    assert results[0]["fine-tuned"] > results[0]["from scratch"] + 0.1
    assert (tmp_path / "finetune_vs_scratch.png").stat().st_size > 0


def test_regularization_recipe_runs_the_two_by_two(tmp_path):
    recipe = load_recipe("regularization_on_resnets")
    results = recipe.main(["--quick", "--out", str(tmp_path)])
    assert [(r["network"], r["recipe"]) for r in results] == [
        (network, recipe_name)
        for network in recipe.QUICK_NETWORKS
        for recipe_name in ("baseline", "modern")
    ]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in results)
    assert (tmp_path / "regularization_on_resnets.json").exists()


# -m slow, with the detection recipe: test_dense_prediction.py and test_products.py train, evaluate
# and draw both tasks through the same kr.fine_tune the recipes call.
@pytest.mark.slow
def test_segmentation_recipe_quick_run_reports_iou_and_overlays(tmp_path):
    recipe = load_recipe("segmentation_unet")
    report = recipe.main(["--quick", "--out", str(tmp_path)])
    assert set(report["per_class_iou"]) == {"background", "ellipse", "pentagon", "star"}
    assert 0.0 <= report["mean_iou"] <= 1.0
    assert (tmp_path / "run" / "overlays.png").stat().st_size > 0


@pytest.mark.slow
def test_detection_recipe_quick_run_reports_map_and_overlays(tmp_path):
    recipe = load_recipe("detection")
    report = recipe.main(["--quick", "--out", str(tmp_path)])
    assert 0.0 <= report["map"] <= report["map50"] <= 1.0
    assert set(report["per_class_ap"]) == {"ellipse", "pentagon", "star"}
    assert (tmp_path / "run" / "overlays.png").stat().st_size > 0
