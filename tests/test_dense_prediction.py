"""Segmentation and detection: the demo scenes, the mask and COCO readers, the U-Net and
RetinaNet heads on every zoo CNN, and their fine-tuning."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasrecipes as kr
from kerasrecipes.cli import main
from kerasrecipes.data.coco import coco_folder
from kerasrecipes.data.masks import mask_folder
from kerasrecipes.tasks import dense, detection

CNNS = [name for name in kr.list_models() if not name.startswith("vit")]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenes")
    return kr.data.make_demo_dataset(path, task="segmentation", num_images=24, image_size=48)


def test_demo_scenes_hold_masks_and_matching_coco_boxes(scenes):
    names = open(os.path.join(scenes, "classes.txt")).read().split()
    assert names == ["background", "ellipse", "pentagon", "star"]
    coco = json.load(open(os.path.join(scenes, "annotations.json")))
    assert len(coco["images"]) == 24 and len(coco["annotations"]) >= 24
    for annotation in coco["annotations"][:10]:
        image = next(i for i in coco["images"] if i["id"] == annotation["image_id"])
        stem = os.path.splitext(image["file_name"])[0]
        mask = Image.open(os.path.join(scenes, "masks", f"{stem}.png"))
        assert mask.mode == "P"
        x, y, width, height = annotation["bbox"]
        inside = np.asarray(mask)[y : y + height, x : x + width]
        # The box holds pixels of its class on all four edges: it is the object's tight box.
        hits = inside == annotation["category_id"]
        assert hits[0].any() and hits[-1].any() and hits[:, 0].any() and hits[:, -1].any()
    # The same arguments find the finished set and write nothing; other arguments are an error.
    assert kr.data.make_demo_dataset(scenes, task="segmentation", num_images=24, image_size=48)
    with pytest.raises(FileExistsError, match="not empty"):
        kr.data.make_demo_dataset(scenes, task="segmentation", num_images=30, image_size=48)


def test_mask_folder_reads_pairs_at_the_asked_size(scenes):
    train, val, info = mask_folder(scenes, image_size=(32, 40), batch_size=4, scan_cache=False)
    assert info.class_names == ["background", "ellipse", "pentagon", "star"]
    assert len(info.train_pairs) + len(info.val_pairs) == 24 and len(info.val_pairs) == 5
    images, masks = next(iter(train))
    assert images.shape == (4, 32, 40, 3) and masks.shape == (4, 32, 40)
    assert masks.dtype == "int32" and set(np.unique(masks)) <= {0, 1, 2, 3}
    assert info.counts["background"] > info.counts["star"] > 0


def _copy_scenes(scenes, target, count=6):
    os.makedirs(target / "images")
    os.makedirs(target / "masks")
    for index in range(1, count + 1):
        stem = f"scene_{index:05d}"
        for folder, suffix in (("images", ".jpg"), ("masks", ".png")):
            source = os.path.join(scenes, folder, stem + suffix)
            (target / folder / (stem + suffix)).write_bytes(open(source, "rb").read())
    (target / "classes.txt").write_text(open(os.path.join(scenes, "classes.txt")).read())
    return target


def test_mask_folder_skips_bad_pairs_with_their_reason(scenes, tmp_path):
    folder = _copy_scenes(scenes, tmp_path / "data", count=8)
    Image.new("RGB", (48, 48)).save(folder / "masks" / "scene_00001.png")  # colours
    Image.new("L", (20, 48)).save(folder / "masks" / "scene_00002.png")  # wrong size
    Image.fromarray(np.full((48, 48), 7, "uint8"), "L").save(folder / "masks" / "scene_00003.png")
    os.remove(folder / "masks" / "scene_00004.png")
    (folder / "images" / "scene_00005.jpg").write_bytes(b"not a jpeg")
    Image.new("L", (48, 48)).save(folder / "masks" / "orphan.png")
    train, val, info = mask_folder(
        folder, image_size=(48, 48), validation_split=None, scan_cache=False
    )
    reasons = {os.path.basename(path): reason for path, reason in info.skipped}
    assert "holds colours, not class indices" in reasons["scene_00001.png"]
    assert reasons["scene_00002.png"] == "mask is 20x48, its image 48x48"
    assert "values [7]" in reasons["scene_00003.png"] and "4 classes" in reasons["scene_00003.png"]
    assert reasons["scene_00004.jpg"] == "no mask masks/scene_00004.png"
    assert "scene_00005.jpg" in reasons
    assert reasons["orphan.png"] == "mask without an image"
    assert len(info.train_pairs) == 3 and val is None


def test_mask_folder_rejects_a_missing_or_malformed_class_file(scenes, tmp_path):
    folder = _copy_scenes(scenes, tmp_path / "data", count=2)
    os.remove(folder / "classes.txt")
    with pytest.raises(FileNotFoundError, match="classes.txt not found. Write one class name"):
        mask_folder(folder, scan_cache=False)
    (folder / "classes.txt").write_text("background\nstar\nstar\n")
    with pytest.raises(ValueError, match=r"classes.txt repeats \['star'\]"):
        mask_folder(folder, scan_cache=False)
    with pytest.raises(FileNotFoundError, match="is not a folder. Put the masks"):
        mask_folder(folder, masks="labels", class_names=["background", "shape"])


def test_a_flip_moves_the_mask_with_the_image():
    images = np.zeros((6, 16, 16, 3), "float32")
    images[:, 2:6, 1:5] = 255.0  # a bright square on the left, and its mask
    masks = np.zeros((6, 16, 16), "int32")
    masks[:, 2:6, 1:5] = 2
    dataset = tf.data.Dataset.from_tensors((images, masks))
    flipped_any = False
    for seed in range(4):
        new_images, new_masks = next(iter(dense.augment(dataset, "flip", seed=seed)))
        new_images, new_masks = np.asarray(new_images), np.asarray(new_masks)
        np.testing.assert_array_equal(new_images[..., 0] > 127, new_masks == 2)
        flipped_any |= bool((new_masks[:, 2:6, 11:15] == 2).all(axis=(1, 2)).any())
        assert new_masks.dtype == np.int32
    assert flipped_any


def _cnn_sizes():
    """(name, which size) for every CNN; a heavy model's second size is built with -m slow
    (building ResNet-1202 or ConvNeXt-XL takes 10-15 s a size on 2 cores), its first in the
    default run."""
    return [
        pytest.param(name, which, marks=pytest.mark.slow)
        if which == 1 and kr.model_card(name).heavy
        else (name, which)
        for name in CNNS
        for which in (0, 1)
    ]


@pytest.mark.parametrize("name, which", _cnn_sizes())
def test_every_cnn_builds_as_a_unet_encoder_and_a_detector_backbone_at_two_sizes(name, which):
    card = kr.model_card(name)
    reductions = {tap.reduction for tap in card.feature_taps}
    smallest = 32 * -(-max(64, card.min_input_size) // 32)  # RetinaNet takes multiples of 32
    size = (smallest, smallest + 32)[which]
    features = kr.create_model(name, features_only=True, input_shape=(size, size, 3))
    model = kr.create_model(
        "unet",
        backbone=features,
        num_classes=3,
        input_shape=(size, size, 3),
        decoder_filters=(8, 8, 8, 8, 8),
    )
    assert model.output_shape == (None, size, size, 3)
    detector = kr.create_model(
        "retinanet",
        backbone=features,
        num_classes=3,
        input_shape=(size, size, 3),
        fpn_filters=32,
        head_convs=1,
    )
    # 9 anchors per cell of P3-P7, each level ceil(size / 2**level) cells a side.
    anchors = sum(9 * (-(-size // 2**level)) ** 2 for level in range(3, 8))
    assert detector.output_shape == [(None, anchors, 4), (None, anchors, 3)]
    if which == 0:  # the pyramid's shapes agree when it runs, not only when built
        outputs = detector(np.zeros((1, size, size, 3), "float32"))
        assert outputs["cls_logits"].shape == (1, anchors, 3)
    # A CIFAR-style encoder stops at stride 4: the detector makes C3-C5 with new layers.
    extra = any(layer.name.startswith("head_extra") for layer in detector.layers)
    assert extra == (not {8, 16, 32} <= reductions)
    keras.backend.clear_session()


def test_unet_matches_segmentation_models_and_rejects_a_vit():
    model = kr.create_model("unet", backbone="resnet34", num_classes=1, input_shape=(64, 64, 3))
    # segmentation_models_pytorch's Unet("resnet34", classes=1) has 24,436,369 parameters (its
    # BatchNorm statistics are buffers, not parameters, as our non-trainable weights).
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 24_436_369
    assert model.layers[-1].name == "head_masks" and model.output.dtype == "float32"
    with pytest.raises(ValueError, match="vit_tiny16 gives feature maps at one reduction"):
        kr.create_model("unet", backbone="vit_tiny16", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="multiples of 32.*image_size=96"):
        kr.create_model("retinanet", backbone="resnet18", input_shape=(100, 100, 3))
    with pytest.raises(ValueError, match="features_only and out_indices apply to its backbone"):
        kr.create_model("unet", features_only=True)


def test_unet_on_a_demo_style_backbone_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    net = kr.create_model(
        "resnet20",
        include_top=False,
        include_preprocessing=False,
        pooling="max",
        input_shape=(32, 32, 3),
    )
    scaled = kr.layers.ImagePreprocessing("unit", name="preprocessing")(inputs)
    backbone = keras.Model(inputs, net(scaled), name="resnet20_demo")
    model = kr.create_model("unet", backbone=backbone, num_classes=4, input_shape=(48, 48, 3))
    # Rebuilt at 48 px with the backbone's weights, its input scaling kept in front.
    encoder = model.get_layer("resnet20")
    np.testing.assert_array_equal(
        encoder.get_layer("stem_conv").kernel, net.get_layer("stem_conv").kernel
    )
    assert model.layers[1].name == "preprocessing"
    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    model.save(tmp_path / "unet.keras")
    loaded = keras.saving.load_model(tmp_path / "unet.keras")
    np.testing.assert_array_equal(loaded(images), model(images))


class _EncoderKernels(keras.callbacks.Callback):
    """Records the first encoder convolution's kernel at the end of every epoch."""

    def __init__(self, encoder, layer):
        super().__init__()
        self.encoder, self.layer, self.kernels = encoder, layer, []

    def on_epoch_end(self, epoch, logs=None):
        inner = self.model.get_layer(self.encoder).get_layer(self.layer)
        self.kernels.append(keras.ops.convert_to_numpy(inner.kernel).copy())


def test_fine_tune_segmentation_trains_the_decoder_first_and_writes_the_run(scenes, tmp_path):
    train, val, info = mask_folder(scenes, image_size=(48, 48), batch_size=8, scan_cache=False)
    backbone = kr.create_model("baseline_cnn", include_top=False, input_shape=(32, 32, 3))
    before = backbone.get_layer("stage1_block1_conv").kernel.numpy()
    kernels = _EncoderKernels("baseline_cnn", "stage1_block1_conv")
    arguments = dict(
        info=info,
        task="segmentation",
        head_epochs=1,
        finetune_epochs=1,
        out_dir=tmp_path,
        verbose=0,
        precision="float32",
        augment="flip",
    )
    model, history = kr.fine_tune(backbone, train, val, callbacks=[kernels], **arguments)
    # Phase 1 left the encoder as it was; phase 2 trained it.
    np.testing.assert_array_equal(kernels.kernels[0], before)
    assert not np.allclose(kernels.kernels[1], before)
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["per_class_iou"]) == {"background", "ellipse", "pentagon", "star"}
    assert 0 <= report["mean_iou"] <= 1 and report["data"]["counts_are"] == "labelled pixels"
    assert report["phases"]["head"]["val_mean_iou"] is not None
    assert "val_mean_iou" in history.history and history.phases == {"head": 0, "finetune": 1}
    for name in ("overlays.png", "curves.png", "model.keras", "history.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    images = next(iter(val))[0]
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-6)
    # The run folder holds a finished run: a second call trains nothing and gives its model.
    with pytest.warns(UserWarning, match="finished earlier"):
        again, resumed = kr.fine_tune(backbone, train, val, **arguments)
    assert resumed.finished_earlier
    np.testing.assert_allclose(again(images), model(images), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="balance is for classification"):
        kr.fine_tune(backbone, train, val, info=info, task="segmentation", balance="oversample")
    with pytest.raises(ValueError, match="augment must be one of \\['none', 'flip', 'basic'\\]"):
        kr.fine_tune(backbone, train, val, info=info, task="segmentation", augment="mixup")


def test_each_task_has_its_own_demo_run_folder():
    from kerasrecipes.finetune.pipeline import demo_out_dir

    folders = [demo_out_dir(task) for task in ("classification", "segmentation", "detection")]
    assert folders == [
        os.path.join("runs", "demo"),
        *(os.path.join("runs", f"demo-{task}") for task in ("segmentation", "detection")),
    ]


def test_the_command_segments_a_mask_folder(scenes, tmp_path, capsys):
    backbone = kr.create_model("resnet20", include_top=False, input_shape=(32, 32, 3))
    backbone.save(tmp_path / "backbone.keras")
    code = main(
        [
            "finetune",
            "--task",
            "segmentation",
            "--data",
            str(scenes),
            "--model",
            "resnet20",
            "--weights",
            str(tmp_path / "backbone.keras"),
            "--image-size",
            "48",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert "Data: 19 training and 5 validation image/mask pairs" in stdout
    assert "validation mean IoU" in stdout and "Final validation mean IoU" in stdout
    assert (tmp_path / "run" / "overlays.png").exists()
    with pytest.raises(ValueError, match="not a classifier: it holds a kr.ImageSegmenter"):
        kr.load_classifier(tmp_path / "run")


# -- detection -------------------------------------------------------------------------------------


def test_coco_folder_reads_boxes_at_the_asked_size(scenes):
    train, val, info = coco_folder(scenes, image_size=(96, 96), batch_size=4, scan_cache=False)
    assert info.class_names == ["ellipse", "pentagon", "star"] and info.category_ids == [1, 2, 3]
    images, targets = next(iter(val))
    assert images.shape == (4, 96, 96, 3) and targets["boxes"].shape[-1] == 4
    coco = json.load(open(os.path.join(scenes, "annotations.json")))
    first = info.val_images[0]
    record = next(i for i in coco["images"] if i["file_name"] == os.path.basename(first["path"]))
    expected = [
        [
            a["bbox"][0] * 2,
            a["bbox"][1] * 2,
            (a["bbox"][0] + a["bbox"][2]) * 2,
            (a["bbox"][1] + a["bbox"][3]) * 2,
        ]
        for a in coco["annotations"]
        if a["image_id"] == record["id"]
    ]  # 48 px scenes read at 96 px: every coordinate doubles
    real = np.asarray(targets["labels"][0]) >= 0
    np.testing.assert_allclose(np.asarray(targets["boxes"][0])[real], expected)
    assert (np.asarray(targets["boxes"][0])[~real] == -1).all()


def _coco_copy(scenes, target):
    os.makedirs(target / "images")
    for name in os.listdir(os.path.join(scenes, "images")):
        (target / "images" / name).write_bytes(
            open(os.path.join(scenes, "images", name), "rb").read()
        )
    return json.load(open(os.path.join(scenes, "annotations.json")))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.pop("categories"), "has no list 'categories'"),
        (lambda c: c["annotations"][0].update(image_id=999), "names image_id 999, not in images"),
        (lambda c: c["annotations"][0].update(category_id=7), "names category_id 7"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), r"bbox must be \[x, y, width"),
        (lambda c: c["annotations"][0].update(bbox=[40, 40, 20, 20]), "outside its 48x48 image"),
    ],
)
def test_malformed_coco_files_are_errors_that_name_the_entry(scenes, tmp_path, change, message):
    coco = _coco_copy(scenes, tmp_path)
    change(coco)
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(kr.data.AnnotationError, match=message) as error:
        coco_folder(tmp_path, scan_cache=False)
    assert "annotations.json" in str(error.value)


def test_coco_folder_skips_missing_and_mismatched_images(scenes, tmp_path):
    coco = _coco_copy(scenes, tmp_path)
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "annotations.json.bad").write_text("{not json")
    os.remove(tmp_path / "images" / "scene_00001.jpg")
    Image.new("RGB", (30, 48)).save(tmp_path / "images" / "scene_00002.jpg")
    _, _, info = coco_folder(tmp_path, validation_split=None, scan_cache=False)
    reasons = {os.path.basename(path): reason for path, reason in info.skipped}
    assert reasons["scene_00001.jpg"] == "named in annotations.json but missing"
    assert reasons["scene_00002.jpg"] == "is 30x48, its entry says 48x48"
    assert len(info.train_images) == 22
    with pytest.raises(kr.data.AnnotationError, match="annotations.json.bad is not valid JSON"):
        coco_folder(tmp_path, annotations="annotations.json.bad")


def test_a_flip_moves_the_boxes_with_the_image():
    images = np.zeros((8, 32, 32, 3), "float32")
    images[:, 4:12, 2:10] = 255.0
    targets = {
        "boxes": np.tile(np.array([[2, 4, 10, 12], [-1, -1, -1, -1]], "float32"), (8, 1, 1)),
        "labels": np.tile(np.array([1, -1], "int32"), (8, 1)),
    }
    dataset = tf.data.Dataset.from_tensors((images, targets))
    new_images, new_targets = next(iter(dense.augment(dataset, "flip", seed=3)))
    boxes, labels = np.asarray(new_targets["boxes"]), np.asarray(new_targets["labels"])
    flipped = 0
    for image, box in zip(np.asarray(new_images), boxes[:, 0]):
        rows, columns = np.nonzero(image[..., 0] > 127)
        np.testing.assert_allclose(
            box, [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1], atol=0.5
        )
        flipped += bool(columns.min() > 16)
    assert 0 < flipped < 8  # some flipped, some not
    assert (labels[:, 1] == -1).all() and (boxes[:, 1] == -1).all()  # padding stays padding


def test_anchor_size_follows_the_small_objects():
    boxes = np.zeros((4, 2, 4), "float32")
    boxes[:, 0] = [0, 0, 16, 16]  # sides of 16 px: P3's smallest anchor is 2 * 8 px
    boxes[:, 1] = [0, 0, 400, 400]
    labels = np.array([[0, -1]] * 3 + [[0, 1]], "int32")  # the big box counts only once
    dataset = tf.data.Dataset.from_tensors(
        (np.zeros((4, 8, 8, 3), "float32"), {"boxes": boxes, "labels": labels})
    )
    assert detection.anchor_size_for(dataset) == pytest.approx(2.0)
    assert detection.anchor_size_for(None) == 4


class _Oracle:
    """A stand-in detector whose detections are the true boxes, shifted by `shift` pixels."""

    def __init__(self, truth, shift=0.0):
        self.truth, self.shift = truth, shift

    def __call__(self, images, training=False):
        return images

    def decode(self, outputs, images, confidence_threshold=None):
        boxes, labels = self.truth
        count = (labels >= 0).sum(1)
        return {
            "boxes": boxes + self.shift,
            "labels": np.maximum(labels, 0),
            "confidence": np.where(labels >= 0, 0.9, 0.0),
            "num_detections": count,
        }


def test_coco_map_from_pycocotools_is_one_for_true_boxes_and_drops_when_shifted():
    from kerasrecipes.callbacks.coco import coco_evaluation

    boxes = np.array(
        [[[2, 2, 22, 22], [30, 30, 50, 44]], [[10, 5, 40, 25], [-1, -1, -1, -1]]], "float32"
    )
    labels = np.array([[0, 1], [1, -1]], "int32")
    images = np.zeros((2, 64, 64, 3), "float32")
    dataset = [(images, {"boxes": boxes, "labels": labels})]
    exact = coco_evaluation(_Oracle((boxes, labels)), dataset, ["a", "b"])
    assert exact["map"] == pytest.approx(1.0) and exact["map50"] == pytest.approx(1.0)
    shifted = coco_evaluation(_Oracle((boxes, labels), shift=2.0), dataset, ["a", "b"])
    assert shifted["map50"] == pytest.approx(1.0) and shifted["map"] < 0.8


def test_retinanet_round_trips_and_predicts_boxes(tmp_path):
    keras.utils.set_random_seed(0)
    model = kr.create_model(
        "retinanet",
        backbone="resnet18",
        num_classes=3,
        input_shape=(64, 64, 3),
        fpn_filters=32,
        head_convs=2,
    )
    assert [layer.name for layer in model.layers[:3]] == ["images", "resnet18", "head_fpn"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    model.save(tmp_path / "detector.keras")
    loaded = keras.saving.load_model(tmp_path / "detector.keras")
    for key in ("bbox_regression", "cls_logits"):
        np.testing.assert_array_equal(loaded(images)[key], model(images)[key])
    predicted = loaded.predict(images, verbose=0)
    assert predicted["boxes"].shape == (2, 100, 4) and predicted["num_detections"].shape == (2,)


def test_fine_tune_detection_writes_map_and_overlays(scenes, tmp_path):
    train, val, info = coco_folder(scenes, image_size=(64, 64), batch_size=8, scan_cache=False)
    backbone = kr.create_model("resnet18", include_top=False, input_shape=(32, 32, 3))
    model, history = kr.fine_tune(
        backbone,
        train,
        val,
        info=info,
        task="detection",
        head_epochs=1,
        finetune_epochs=1,
        out_dir=tmp_path,
        verbose=0,
        precision="float32",
        augment="flip",
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0 <= report["map"] <= report["map50"] <= 1
    assert set(report["per_class_ap"]) == {"ellipse", "pentagon", "star"}
    assert "val_map50" in history.history and len(history.history["val_map50"]) == 2
    assert report["phases"]["finetune"]["val_map50"] == history.history["val_map50"][-1]
    for name in ("overlays.png", "curves.png", "model.keras"):
        assert (tmp_path / name).stat().st_size > 0, name
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, kr.ObjectDetector)
    images = next(iter(val))[0]
    np.testing.assert_allclose(
        loaded.network(images)["cls_logits"], model(images)["cls_logits"], rtol=1e-5, atol=1e-5
    )


# -m slow: the command's --task path runs by default with segmentation (above), and the
# detection run of test_products.py goes through predict, evaluate and export commands.
@pytest.mark.slow
def test_the_command_detects_on_a_coco_folder(scenes, tmp_path, capsys):
    backbone = kr.create_model("resnet18", include_top=False, input_shape=(32, 32, 3))
    backbone.save(tmp_path / "backbone.keras")
    code = main(
        [
            "finetune",
            "--task",
            "detection",
            "--data",
            str(scenes),
            "--model",
            "resnet18",
            "--weights",
            str(tmp_path / "backbone.keras"),
            "--image-size",
            "64",
            "--precision",
            "float32",
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "0",
            "--batch-size",
            "8",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert "Data: 19 training and 5 validation images" in stdout
    assert "validation mAP@.5" in stdout and "Final validation COCO mAP@.5" in stdout
