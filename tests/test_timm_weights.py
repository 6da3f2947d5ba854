"""timm checkpoints load into our models exactly (issue 36), offline, from timm's own twins.

Each twin is timm's model with random weights and statistics, saved by timm
into a temporary Hugging Face cache; we load it with `weights="timm:..."`
under the Hub's offline mode and compare logits on the same images.
"""

import json

import numpy as np
import pytest
from timm_twins import (
    TOLERANCE,
    check_parity,
    random_images,
    random_twin,
    relative_difference,
    save_to_folder,
    save_to_hub_cache,
    timm_logits,
)

import kerasrecipes as kr

pytest.importorskip("timm")


# (timm architecture, our model, input size): one per family by default, the heavy ones slow.
PARITY = [
    ("resnet18", "resnet18", 64),
    ("resnet50", "resnet50", 64),
    pytest.param("resnet26", "resnet26", 64, marks=pytest.mark.slow),
    pytest.param("resnet34", "resnet34", 64, marks=pytest.mark.slow),
    pytest.param("resnet101", "resnet101", 64, marks=pytest.mark.slow),
    pytest.param("resnet152", "resnet152", 64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("architecture, model_name, size", PARITY)
def test_timm_checkpoint_gives_timms_logits(hub_cache, architecture, model_name, size):
    check_parity(hub_cache, architecture, model_name, size)


# A small ImageNet twin whose pretrained_cfg asks for a central crop and a mean and std of
# no named mode: the classifier must crop and normalize as timm's own transform does.
SMALL_CFG = dict(input_size=(3, 64, 64), crop_pct=0.8, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3))


def test_load_classifier_is_timms_imagenet_classifier_and_exports(hub_cache, tmp_path):
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    twin = random_twin("resnet18", pretrained_cfg_overlay=SMALL_CFG)
    classifier = kr.load_classifier(save_to_hub_cache(twin, hub_cache, "resnet18"))
    assert len(classifier.class_names) == 1000
    assert classifier.class_names[:2] == ["tench", "goldfish"]
    assert {"crane (n02012849)", "crane (n03126707)"} <= set(classifier.class_names)
    assert (classifier.image_size, classifier.read_size) == ((64, 64), (80, 80))
    assert (classifier.crop_fraction, classifier.interpolation) == (0.8, "bicubic")

    # Ours on [0, 255] images against timm's transform (resize 80, crop 64, normalize) of the
    # same images: at the read size, timm's resize keeps them as they are.
    images = [Image.fromarray(image.astype("uint8")) for image in random_images(80, count=3)]
    transform = create_transform(**resolve_data_config(model=twin))
    with torch.no_grad():
        batch = torch.stack([transform(image) for image in images])
        theirs = twin(batch).softmax(-1).numpy()
    ours = classifier.predict_images(images, top_k=3)
    assert relative_difference(ours.probabilities, theirs) <= TOLERANCE
    assert ours[0].label == classifier.class_names[int(np.argmax(theirs[0]))]

    result = kr.export(classifier, tmp_path / "export", check_images=np.stack(images))
    assert result.max_abs_difference <= 1e-5
    with open(tmp_path / "export" / "labels.txt", encoding="utf-8") as file:
        assert file.read().splitlines()[:2] == ["tench", "goldfish"]


def test_fine_tune_and_the_command_start_from_a_timm_checkpoint(hub_cache, tmp_path, capsys):
    from kerasrecipes.cli import main

    small = dict(SMALL_CFG, input_size=(3, 32, 32))
    twin = random_twin("resnet18", pretrained_cfg_overlay=small)
    weights = save_to_hub_cache(twin, hub_cache, "resnet18")

    loaded = kr.load_backbone("resnet18", weights)
    assert loaded.model.input_shape == (None, 32, 32, 3) and weights in loaded.description
    stem = twin.conv1.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(np.asarray(loaded.model.get_layer("stem_conv").kernel), stem)
    # The per-layer groups (rates, unfreezing) are the card's, as for any resnet18.
    plain = kr.create_model("resnet18", include_top=False, input_shape=(32, 32, 3))
    assert [g.name for g in kr.param_groups(loaded.model)] == [
        g.name for g in kr.param_groups(plain)
    ]

    data = kr.data.make_demo_dataset(tmp_path / "shapes", num_images=40)
    out = tmp_path / "run"
    arguments = ["--data", str(data), "--weights", weights, "--out", str(out)]
    phases = ["--head-epochs", "1", "--finetune-epochs", "1", "--unfreeze", "2"]
    assert main(["finetune", *arguments, *phases, "--batch-size", "16"]) == 0
    stdout = capsys.readouterr().out
    assert "the size the timm checkpoint was trained at" in stdout
    report = json.loads((out / "report.json").read_text())
    # The model is the checkpoint's architecture, at its size, through both phases.
    assert (report["config"]["model"], report["config"]["image_size"]) == ("resnet18", 32)
    assert report["phases"]["finetune"]["epochs"] == 1 and report["status"] == "finished"
    assert kr.load_classifier(out).class_names == report["data"]["class_names"]


NO_TORCH = """
import sys

sys.modules.update(torch=None, torchvision=None, timm=None)  # `import torch` fails from here on
import numpy as np

import kerasrecipes as kr

folder = sys.argv[1]
model = kr.create_model(
    "resnet18", weights=folder + "/model.safetensors", classifier_activation=None
)
np.save(folder + "/ours.npy", np.asarray(model(np.load(folder + "/images.npy"), training=False)))
"""


def test_the_conversion_needs_neither_torch_nor_timm(tmp_path):
    import subprocess
    import sys

    twin = random_twin("resnet18", pretrained_cfg_overlay=SMALL_CFG)
    folder = tmp_path / "checkpoint"
    save_to_folder(twin, folder)
    images = random_images(64)
    np.save(folder / "images.npy", images)
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ours = np.load(folder / "ours.npy")
    assert relative_difference(ours, timm_logits(twin, images)) <= TOLERANCE


def test_timm_imports_after_kerasrecipes_without_crashing():
    """PyTorch's triton and TensorFlow's LLVM clash (a segmentation fault) unless triton is
    loaded first, which `import kerasrecipes` does."""
    import subprocess
    import sys

    script = "import kerasrecipes, timm, torchvision; print(timm.__version__)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_models_lists_the_weights_each_model_takes_with_top1(capsys):
    from kerasrecipes.cli import main

    assert main(["models", "resnet50", "--weights"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    # timm's results CSV and keras.io's table, at the checkpoint's own size.
    assert lines["timm:resnet50.a1_in1k"] == ["80.4", "224", "apache-2.0"]
    assert lines["imagenet"] == ["74.9", "224", "keras.applications"]
    assert main(["models", "resnet20", "--weights"]) == 0
    assert "none: timm's ResNets are the ImageNet ones" in capsys.readouterr().out


def test_a_checkpoint_without_classifier_loads_as_features_and_cannot_classify(hub_cache):
    twin = random_twin("resnet18", num_classes=0, pretrained_cfg_overlay=SMALL_CFG)
    weights = save_to_hub_cache(twin, hub_cache, "resnet18")
    features = kr.create_model("resnet18", weights=weights)
    assert features.output_shape == (None, 512)
    images = random_images(64)
    assert relative_difference(np.asarray(features(images)), timm_logits(twin, images)) <= TOLERANCE
    with_head = kr.create_model("resnet18", weights=weights, num_classes=3)
    assert with_head.output_shape == (None, 3)
    with pytest.raises(ValueError, match="has no classifier"):
        kr.load_classifier(weights)
