"""image_folder, verify_images and make_demo_dataset: bad files, errors, splits, labels, cache."""

import hashlib
import io
import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasrecipes as kr
from kerasrecipes.data.demo import DEMO_TASKS, _render


@pytest.fixture(autouse=True)
def scan_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))


def write(path, contents):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(contents)


def pil_bytes(image, file_format):
    buffer = io.BytesIO()
    image.save(buffer, format=file_format)
    return buffer.getvalue()


def shape_image(seed=0, size=24):
    return _render("disk", size, np.random.default_rng(seed))


def small_folder(root, per_class=3, classes=("cat", "dog"), size=24):
    for k, name in enumerate(classes):
        for i in range(per_class):
            image = shape_image(seed=10 * k + i, size=size)
            write(os.path.join(root, name, f"{i}.jpg"), tf.io.encode_jpeg(image).numpy())
    return str(root)


def digest(folder):
    hashes = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                hashes[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha1(
                    f.read()
                ).hexdigest()
    return hashes


# --- make_demo_dataset -------------------------------------------------------------------------


def test_demo_dataset_is_deterministic_and_has_the_task_classes(tmp_path):
    first = kr.data.make_demo_dataset(tmp_path / "a", num_images=30, image_size=32, seed=1)
    second = kr.data.make_demo_dataset(tmp_path / "b", num_images=30, image_size=32, seed=1)
    other = kr.data.make_demo_dataset(tmp_path / "c", num_images=30, image_size=32, seed=2)
    assert digest(first) == digest(second)
    assert digest(first) != digest(other)
    assert sorted(os.listdir(first)) == list(DEMO_TASKS["target"])
    assert [len(os.listdir(os.path.join(first, c))) for c in DEMO_TASKS["target"]] == [15, 15]
    source = kr.data.make_demo_dataset(tmp_path / "s", task="source", num_images=25, image_size=32)
    assert sorted(os.listdir(source)) == sorted(DEMO_TASKS["source"])
    assert len(DEMO_TASKS["source"]) == 10


def test_demo_dataset_reuses_its_folder_and_refuses_a_foreign_one(tmp_path):
    folder = kr.data.make_demo_dataset(tmp_path / "d", num_images=10, image_size=32)
    before = os.path.getmtime(os.path.join(folder, "ellipse", "ellipse_00000.jpg"))
    assert kr.data.make_demo_dataset(folder, num_images=10, image_size=32) == folder
    assert os.path.getmtime(os.path.join(folder, "ellipse", "ellipse_00000.jpg")) == before
    with pytest.raises(FileExistsError, match="is not empty"):
        kr.data.make_demo_dataset(folder, num_images=12, image_size=32)
    with pytest.raises(ValueError, match="task must be one of"):
        kr.data.make_demo_dataset(tmp_path / "x", task="imagenet")


def test_a_linear_model_on_pixels_does_not_solve_the_target_task():
    # Ridge regression on raw pixels, 450 training and 150 test images: chance level, because
    # position, colour and angle are random and only the shape carries the class.
    rng = np.random.default_rng(0)
    names = DEMO_TASKS["target"]
    images = np.stack([_render(names[i % 2], 32, rng) for i in range(600)])
    x = np.hstack([images.reshape(600, -1) / 255.0, np.ones((600, 1))])
    y = 2.0 * (np.arange(600) % 2) - 1
    w = np.linalg.solve(x[:450].T @ x[:450] + np.eye(x.shape[1]), x[:450].T @ y[:450])
    accuracy = np.mean(np.sign(x[450:] @ w) == y[450:])
    assert accuracy < 0.65


# --- verify_images -----------------------------------------------------------------------------


def bad_and_odd_files(root):
    """Each kind of bad file, and valid images in unusual modes."""
    image = Image.fromarray(shape_image(size=96))
    jpeg = pil_bytes(image, "JPEG")
    files = {
        "a/empty.jpg": b"",
        "a/truncated.jpg": jpeg[: len(jpeg) * 3 // 5],
        "a/notes.jpg": b"plain text",
        "a/scan.tiff": pil_bytes(image, "TIFF"),
        "a/Thumbs.db": b"\x00\x01 windows thumbnail cache",
        "b/gray.jpg": pil_bytes(image.convert("L"), "JPEG"),
        "b/rgba.png": pil_bytes(image.convert("RGBA"), "PNG"),
        "b/palette.png": pil_bytes(image.convert("P"), "PNG"),
        "b/cmyk.jpg": pil_bytes(image.convert("CMYK"), "JPEG"),
        "b/anim.gif": pil_bytes(image.convert("P"), "GIF"),
        "b/bitmap.bmp": pil_bytes(image, "BMP"),
        "b/photo.webp": pil_bytes(image, "WEBP"),
        "b/png_named.jpg": pil_bytes(image, "PNG"),
    }
    for name, contents in files.items():
        write(os.path.join(root, name), contents)
    return files


def test_verify_finds_each_kind_of_bad_file_with_its_reason(tmp_path):
    bad_and_odd_files(tmp_path / "data")
    report = kr.data.verify_images(tmp_path / "data")
    reasons = {os.path.relpath(p, tmp_path / "data"): r for p, r in report.skipped}
    assert reasons == {
        "a/empty.jpg": "empty file (0 bytes)",
        "a/truncated.jpg": reasons["a/truncated.jpg"],
        "a/notes.jpg": "not an image (unknown file format)",
        "a/scan.tiff": "TIFF image, a format TensorFlow cannot decode; convert it to JPEG/PNG",
        "a/Thumbs.db": "not an image (unknown file format)",
    }
    assert reasons["a/truncated.jpg"].startswith("corrupt or truncated image (jpeg::Uncompress")
    assert len(report.valid) == 8 and report.decoded == 13


def test_pil_verify_passes_files_the_tensorflow_decoder_rejects(tmp_path):
    # Why the scan decodes with TensorFlow: PIL's check passes both of these.
    files = bad_and_odd_files(tmp_path / "data")
    for name in ("a/truncated.jpg", "a/scan.tiff"):
        Image.open(io.BytesIO(files[name])).verify()
    skipped = {
        os.path.relpath(p, tmp_path / "data")
        for p, _ in kr.data.verify_images(tmp_path / "data", cache=False).skipped
    }
    assert {"a/truncated.jpg", "a/scan.tiff"} <= skipped


def test_scan_is_cached_by_size_and_mtime(tmp_path):
    folder = small_folder(tmp_path / "data", per_class=4)
    assert kr.data.verify_images(folder).decoded == 8
    assert kr.data.verify_images(folder).decoded == 0
    changed = os.path.join(folder, "cat", "1.jpg")
    write(changed, b"now broken")
    report = kr.data.verify_images(folder)
    assert report.decoded == 1
    assert report.skipped == [(changed, "not an image (unknown file format)")]
    assert kr.data.verify_images(folder, cache=False).decoded == 8


def test_bad_files_are_logged_once_and_never_moved_unless_asked(tmp_path, caplog):
    bad_and_odd_files(tmp_path / "data")
    before = digest(tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="kerasrecipes.data"):
        kr.data.verify_images(tmp_path / "data")
    records = [r for r in caplog.records if r.name == "kerasrecipes.data"]
    assert len(records) == 1
    assert "Skipped 5 of 13 files" in records[0].getMessage()
    assert "a/scan.tiff: TIFF image" in records[0].getMessage()
    assert digest(tmp_path / "data") == before


def test_quarantine_moves_bad_images_and_writes_a_manifest(tmp_path):
    bad_and_odd_files(tmp_path / "data")
    report = kr.data.verify_images(tmp_path / "data", quarantine=tmp_path / "quarantine")
    moved = sorted(os.path.relpath(src, tmp_path / "data") for src, _ in report.quarantined)
    assert moved == ["a/empty.jpg", "a/notes.jpg", "a/scan.tiff", "a/truncated.jpg"]
    # Not an image by name: reported, left where it is.
    assert os.path.exists(tmp_path / "data" / "a" / "Thumbs.db")
    assert not os.path.exists(tmp_path / "data" / "a" / "scan.tiff")
    assert os.path.exists(tmp_path / "quarantine" / "a" / "scan.tiff")
    with open(tmp_path / "quarantine" / "kerasrecipes-quarantine.json") as f:
        manifest = json.load(f)["moves"]
    assert {os.path.basename(m["source"]) for m in manifest} == {
        "empty.jpg",
        "notes.jpg",
        "scan.tiff",
        "truncated.jpg",
    }
    assert all(m["reason"] and os.path.exists(m["moved_to"]) for m in manifest)
    # A second bad file of the same name later: both copies are kept.
    write(tmp_path / "data" / "a" / "empty.jpg", b"")
    again = kr.data.verify_images(tmp_path / "data", quarantine=tmp_path / "quarantine")
    assert [os.path.basename(new) for _, new in again.quarantined] == ["empty.1.jpg"]
    assert os.path.exists(tmp_path / "quarantine" / "a" / "empty.jpg")
    with open(tmp_path / "quarantine" / "kerasrecipes-quarantine.json") as f:
        assert len(json.load(f)["moves"]) == 5
    with pytest.raises(ValueError, match="inside the data folder"):
        kr.data.verify_images(tmp_path / "data", quarantine=tmp_path / "data" / "bad")


# --- image_folder: errors ----------------------------------------------------------------------


def test_image_folder_errors_name_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist"):
        kr.data.image_folder(missing)
    write(tmp_path / "file.jpg", b"x")
    with pytest.raises(NotADirectoryError, match="file.jpg is a file"):
        kr.data.image_folder(tmp_path / "file.jpg")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} has no class folders"):
        kr.data.image_folder(tmp_path / "empty")
    single = small_folder(tmp_path / "single", classes=("cat",))
    with pytest.raises(ValueError, match=f"{single} has one class folder .'cat'."):
        kr.data.image_folder(single)
    no_images = tmp_path / "no_images"
    os.makedirs(no_images / "cat")
    os.makedirs(no_images / "dog")
    with pytest.raises(ValueError, match=f"{no_images} has no images"):
        kr.data.image_folder(no_images)
    empty_class = small_folder(tmp_path / "empty_class")
    os.makedirs(os.path.join(empty_class, "bird"))
    with pytest.raises(ValueError, match=f"Class folder {empty_class}/bird is empty"):
        kr.data.image_folder(empty_class)
    all_bad = small_folder(tmp_path / "all_bad")
    write(os.path.join(all_bad, "bird", "broken.jpg"), b"")
    with pytest.raises(ValueError, match=f"Class folder {all_bad}/bird has no readable images"):
        kr.data.image_folder(all_bad)
    folder = small_folder(tmp_path / "three", classes=("a", "b", "c"))
    with pytest.raises(ValueError, match="label_mode='binary' needs exactly 2 classes"):
        kr.data.image_folder(folder, label_mode="binary")
    with pytest.raises(ValueError, match="validation_split must be None or in"):
        kr.data.image_folder(folder, validation_split=1.0)


# --- image_folder: pipeline --------------------------------------------------------------------


def test_image_folder_skips_and_reports_bad_files_and_reads_odd_modes(tmp_path):
    folder = kr.data.make_demo_dataset(
        tmp_path / "demo", num_images=20, image_size=32, bad_files=True
    )
    write(os.path.join(folder, "README.txt"), b"stray file outside the class folders")
    train, val, info = kr.data.image_folder(folder, image_size=(32, 32), batch_size=64)
    assert val is None
    reasons = {os.path.basename(p): r for p, r in info.skipped}
    assert set(reasons) == {
        "README.txt",
        "bad_empty.jpg",
        "bad_truncated.jpg",
        "bad_not_an_image.jpg",
        "bad_scan.tif",
    }
    assert reasons["README.txt"] == "not in a class folder"
    # The grayscale, palette and RGBA images are read, as RGB.
    assert info.counts == {"ellipse": 12, "pentagon": 11}
    images, labels = next(iter(train))
    assert images.shape == (23, 32, 32, 3) and images.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
    odd = [os.path.basename(p) for p in info.train_paths if "odd_" in p]
    assert sorted(odd) == ["odd_grayscale.jpg", "odd_palette.png", "odd_rgba.png"]


def test_split_is_stratified_disjoint_and_fixed_by_the_seed(tmp_path):
    folder = small_folder(tmp_path / "data", per_class=10)
    _, _, info = kr.data.image_folder(folder, image_size=(24, 24), validation_split=0.3, seed=5)
    _, _, again = kr.data.image_folder(folder, image_size=(24, 24), validation_split=0.3, seed=5)
    _, _, other = kr.data.image_folder(folder, image_size=(24, 24), validation_split=0.3, seed=6)
    assert info.counts == {"cat": 7, "dog": 7} and info.val_counts == {"cat": 3, "dog": 3}
    assert not set(info.train_paths) & set(info.val_paths)
    assert info.val_paths == again.val_paths
    assert info.val_paths != other.val_paths
    assert list(info.val_labels) == [0, 0, 0, 1, 1, 1]


def test_label_modes(tmp_path):
    folder = small_folder(tmp_path / "data", per_class=2)
    expected = {
        "int": ((4,), tf.int32),
        "categorical": ((4, 2), tf.float32),
        "binary": ((4, 1), tf.float32),
    }
    for mode, (shape, dtype) in expected.items():
        train, _, _ = kr.data.image_folder(
            folder, image_size=(24, 24), batch_size=4, label_mode=mode, shuffle=False
        )
        _, labels = next(iter(train))
        assert labels.shape == shape and labels.dtype == dtype
    assert np.array_equal(np.asarray(labels)[:, 0], [0, 0, 1, 1])


def test_same_pixels_as_keras_image_dataset_from_directory(tmp_path):
    folder = small_folder(tmp_path / "data", per_class=3, size=40)
    ours, _, _ = kr.data.image_folder(folder, image_size=(24, 24), batch_size=6, shuffle=False)
    theirs = keras.utils.image_dataset_from_directory(
        folder, image_size=(24, 24), batch_size=6, shuffle=False, verbose=False
    )
    (our_images, our_labels), (images, labels) = next(iter(ours)), next(iter(theirs))
    assert np.array_equal(our_labels, labels)
    # Cached images are stored as uint8 after resizing: within half a grey level.
    assert np.abs(np.asarray(our_images) - np.asarray(images)).max() <= 0.5 + 1e-4
    uncached, _, _ = kr.data.image_folder(
        folder, image_size=(24, 24), batch_size=6, shuffle=False, cache=False
    )
    np.testing.assert_array_equal(next(iter(uncached))[0], images)


def test_cache_shuffle_and_order(tmp_path):
    folder = small_folder(tmp_path / "data", per_class=8)
    train, val, info = kr.data.image_folder(
        folder, image_size=(24, 24), batch_size=16, validation_split=0.25, seed=0
    )
    assert info.cached  # 16 small images fit in memory
    first, second = [np.asarray(next(iter(train))[1]) for _ in range(2)]
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    val_labels = [np.asarray(next(iter(val))[1]) for _ in range(2)]
    assert np.array_equal(*val_labels) and list(val_labels[0]) == [0, 0, 1, 1]
    disk = tmp_path / "tfcache"
    train, _, info = kr.data.image_folder(folder, image_size=(24, 24), cache=str(disk))
    assert sum(len(x) for x, _ in train) == 16
    assert any(name.startswith("tfcache.train") for name in os.listdir(tmp_path))
    _, _, uncached = kr.data.image_folder(folder, image_size=(24, 24), cache=False)
    assert not uncached.cached
