"""Folders that try to trick the scan: link loops, FIFOs, pixel bombs, odd names, hidden folders,
files fixed after an error, quarantine through links and foreign manifests, unlabelled folders.

Each test makes the folder, then checks the report line, that nothing hangs, that no file is
counted twice or under the wrong label, and that no user file is touched."""

import contextlib
import json
import logging
import os
import signal
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr
from kerasrecipes.data.demo import _render


@pytest.fixture(autouse=True)
def scan_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASRECIPES_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def no_hang():
    """Fails a test that blocks (a FIFO opened for reading waits for a writer forever)."""

    def fail(*_):
        raise TimeoutError("the scan blocked for 120 s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def jpeg(seed=0, size=24):
    return tf.io.encode_jpeg(_render("disk", size, np.random.default_rng(seed))).numpy()


def write(path, contents):
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(contents)


def two_classes(root, per_class=3):
    for k, name in enumerate(("a", "b")):
        for i in range(per_class):
            write(os.path.join(root, name, f"{i}.jpg"), jpeg(seed=10 * k + i))
    return str(root)


def snapshot(folder):
    """Every entry under `folder` (links not followed) with its bytes or link target."""
    entries = {}
    for root, dirs, files in os.walk(os.fsencode(folder)):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                entries[path] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    entries[path] = ("file", f.read())
            elif not os.path.isdir(path):
                entries[path] = ("other", os.stat(path).st_mode)
    return entries


@contextlib.contextmanager
def warnings_of_the_scan(caplog):
    with caplog.at_level(logging.INFO, logger="kerasrecipes.data"):
        yield
    caplog.messages_of_scan = [r.getMessage() for r in caplog.records if r.name.startswith("kr")]


def reasons(report_or_info):
    return {os.path.basename(path): reason for path, reason in report_or_info.skipped}


def test_a_link_loop_is_skipped_and_every_file_is_read_once_under_its_class(tmp_path):
    data = two_classes(tmp_path / "data")
    os.symlink("..", os.path.join(data, "a", "up"))  # data/a/up -> data
    before = snapshot(data)
    _, _, info = kr.data.image_folder(data, image_size=(16, 16), batch_size=4, scan_cache=False)
    assert reasons(info)["up"] == "link loop: it leads back to a folder above it"
    paths = info.train_paths
    assert len(paths) == len(set(paths)) == 6
    labels = {
        os.path.basename(os.path.dirname(p)): int(l) for p, l in zip(paths, info.train_labels)
    }
    assert labels == {"a": 0, "b": 1}
    assert snapshot(data) == before


def test_a_file_reached_under_two_classes_is_an_error_naming_both_paths(tmp_path):
    data = two_classes(tmp_path / "data")
    os.symlink(os.path.join(data, "a", "0.jpg"), os.path.join(data, "b", "also_a.jpg"))
    with pytest.raises(ValueError, match=r"a/0.jpg and .*b/also_a.jpg are one file"):
        kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)
    os.remove(os.path.join(data, "b", "also_a.jpg"))
    os.link(os.path.join(data, "a", "1.jpg"), os.path.join(data, "b", "hard.jpg"))
    with pytest.raises(ValueError, match="class 'a' and class 'b'"):
        kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)


def test_a_second_link_to_a_file_in_the_same_class_is_read_once(tmp_path):
    data = two_classes(tmp_path / "data")
    os.symlink(os.path.join(data, "a", "0.jpg"), os.path.join(data, "a", "copy.jpg"))
    _, _, info = kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)
    assert info.counts == {"a": 3, "b": 3}
    assert reasons(info)["copy.jpg"].startswith("the same file as ")


def test_a_fifo_is_skipped_without_being_opened(tmp_path):
    data = two_classes(tmp_path / "data")
    os.mkfifo(os.path.join(data, "a", "x.png"))
    report = kr.data.verify_images(data, cache=False)
    assert reasons(report)["x.png"] == "not a regular file (a FIFO)"
    _, _, info = kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)
    assert info.counts == {"a": 3, "b": 3}
    # Listed explicitly (as predict does), it is refused the same way.
    assert reasons(kr.data.verify_images(data, files=[os.path.join(data, "a", "x.png")]))


def png_header_only(width, height):
    """A PNG that declares `width` x `height` pixels in 100 bytes (its pixel data is cut short)."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding(tmp_path):
    data = two_classes(tmp_path / "data")
    write(os.path.join(data, "a", "bomb.png"), png_header_only(23000, 23000))
    write(os.path.join(data, "a", "big.png"), png_header_only(10000, 10000))
    report = kr.data.verify_images(data)
    assert reasons(report)["bomb.png"].startswith(
        "image of 529.0 M pixels, above the limit of 89.5"
    )
    assert reasons(report)["big.png"].startswith("image of 100.0 M pixels")
    # The limit is an argument, and a result that depends on it is not cached.
    small = kr.data.verify_images(data, max_pixels=500)
    assert (
        reasons(small)["0.jpg"]
        == "image of 0.0 M pixels, above the limit of 0.0 M (max_pixels=); not decoded"
    )
    again = kr.data.verify_images(data)
    assert "0.jpg" not in reasons(again)
    assert reasons(again)["bomb.png"].startswith("image of 529.0 M")


def test_a_name_that_is_not_utf8_is_skipped_and_reported_with_its_bytes_escaped(tmp_path, caplog):
    data = two_classes(tmp_path / "data")
    write(os.fsencode(os.path.join(data, "a")) + b"/caf\xe9.jpg", jpeg(seed=5))
    os.makedirs(os.fsencode(str(data)) + b"/\xff\xfeclass")
    with caplog.at_level(logging.WARNING, logger="kerasrecipes.data"):
        _, _, info = kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)
    assert info.class_names == ["a", "b"] and info.counts == {"a": 3, "b": 3}
    shown = {path: reason for path, reason in info.skipped}
    assert shown[os.path.join(data, "a", "caf\\xe9.jpg")].startswith("file name is not valid UTF-8")
    assert shown[os.path.join(data, "\\xff\\xfeclass")].startswith("name is not valid UTF-8")
    assert "caf\\xe9.jpg" in caplog.text
    assert kr.data.verify_images(data).valid  # the whole-folder scan does not crash either


def test_hidden_files_and_folders_are_ignored_and_reported(tmp_path, caplog):
    data = two_classes(tmp_path / "data")
    write(os.path.join(data, ".ipynb_checkpoints", "0-checkpoint.jpg"), jpeg())
    write(os.path.join(data, "a", ".git", "objects", "x.jpg"), jpeg())
    write(os.path.join(data, "b", ".DS_Store"), b"\x00\x00\x00\x01Bud1")
    with caplog.at_level(logging.INFO, logger="kerasrecipes.data"):
        _, _, info = kr.data.image_folder(data, image_size=(16, 16), scan_cache=False)
        report = kr.data.verify_images(data, cache=False)
    assert info.class_names == ["a", "b"] and info.counts == {"a": 3, "b": 3}
    ignored = sorted(os.path.relpath(p, data) for p in info.ignored)
    assert ignored == [".ipynb_checkpoints", "a/.git", "b/.DS_Store"]
    assert not report.skipped and len(report.valid) == 6
    assert "Ignored 3 hidden files and folders" in caplog.text


def test_a_class_with_fewer_than_two_images_in_a_split_is_warned_about(tmp_path, caplog):
    data = two_classes(tmp_path / "data", per_class=6)
    for i in range(1, 6):
        os.remove(os.path.join(data, "b", f"{i}.jpg"))
    with caplog.at_level(logging.WARNING, logger="kerasrecipes.data"):
        _, _, info = kr.data.image_folder(
            data, image_size=(16, 16), validation_split=0.3, scan_cache=False
        )
    assert info.counts["b"] == 1 and info.val_counts["b"] == 0
    assert "'b' (1 training), 'b' (0 validation)" in caplog.text


@contextlib.contextmanager
def unreadable(path):
    """Opening `path` fails with EACCES (tests run as root, where chmod 000 does not stop reads)."""
    real_open, target = os.open, os.fsencode(os.path.abspath(path))

    def fake_open(file, flags, *args, **kwargs):
        if os.fsencode(os.path.abspath(file)) == target:
            raise PermissionError(13, "Permission denied", file)
        return real_open(file, flags, *args, **kwargs)

    os.open = fake_open
    try:
        yield
    finally:
        os.open = real_open


def test_a_read_error_is_not_cached_so_a_fixed_file_is_read_again(tmp_path):
    data = two_classes(tmp_path / "data")
    locked = os.path.join(data, "a", "0.jpg")
    with unreadable(locked):
        report = kr.data.verify_images(data, quarantine=tmp_path / "quarantine")
    assert reasons(report)["0.jpg"] == "cannot be read (Permission denied)"
    assert os.path.exists(locked) and not report.quarantined  # unreadable is not corrupt
    again = kr.data.verify_images(data)  # the user fixed the permissions
    assert not again.skipped and locked in again.valid and again.decoded == 1


def test_quarantine_refuses_a_folder_that_resolves_inside_the_data(tmp_path):
    data = two_classes(tmp_path / "data")
    write(os.path.join(data, "a", "broken.jpg"), b"not a jpeg")
    os.symlink(os.path.join(data, "b"), tmp_path / "outside_looking")
    before = snapshot(data)
    with pytest.raises(ValueError, match="inside the data folder .*resolves to"):
        kr.data.verify_images(data, quarantine=tmp_path / "outside_looking" / "q")
    assert snapshot(data) == before


def test_quarantine_never_moves_a_file_of_a_folder_linked_from_outside(tmp_path):
    data = two_classes(tmp_path / "data")
    photos = tmp_path / "my_photos"
    write(os.path.join(photos, "broken.jpg"), b"not a jpeg")
    os.symlink(photos, os.path.join(data, "a", "linked"))
    write(os.path.join(data, "b", "broken.jpg"), b"not a jpeg either")
    report = kr.data.verify_images(data, quarantine=tmp_path / "quarantine")
    assert [os.path.relpath(src, data) for src, _ in report.quarantined] == ["b/broken.jpg"]
    assert os.path.exists(photos / "broken.jpg")


@pytest.mark.parametrize(
    "existing", [{"runs": 3}, [{"source": "x"}], "not json"], ids=["dict", "list", "text"]
)
def test_quarantine_refuses_a_manifest_it_did_not_write_and_moves_nothing(tmp_path, existing):
    data = two_classes(tmp_path / "data")
    write(os.path.join(data, "a", "broken.jpg"), b"not a jpeg")
    manifest = tmp_path / "quarantine" / "kerasrecipes-quarantine.json"
    text = existing if isinstance(existing, str) else json.dumps(existing)
    write(manifest, text.encode())
    write(tmp_path / "quarantine" / "manifest.json", b"the user's own file")
    before = snapshot(tmp_path)
    with pytest.raises(
        ValueError, match="not a kerasrecipes quarantine manifest; nothing was moved"
    ):
        kr.data.verify_images(data, quarantine=tmp_path / "quarantine", cache=False)
    assert snapshot(tmp_path) == before


def test_quarantine_records_each_move_before_the_next(tmp_path, monkeypatch):
    data = two_classes(tmp_path / "data")
    for name in ("x.jpg", "y.jpg", "z.jpg"):
        write(os.path.join(data, "a", name), b"broken")
    moves = []
    real_move = kr.data.verify.shutil.move

    def move_then_die(source, target):
        manifest = json.loads((tmp_path / "q" / "kerasrecipes-quarantine.json").read_text())
        moves.append(len(manifest["moves"]))
        if len(moves) == 2:
            raise OSError(5, "Input/output error")
        return real_move(source, target)

    monkeypatch.setattr(kr.data.verify.shutil, "move", move_then_die)
    with pytest.raises(OSError):
        kr.data.verify_images(data, quarantine=tmp_path / "q", cache=False)
    manifest = json.loads((tmp_path / "q" / "kerasrecipes-quarantine.json").read_text())
    # Each move was on record before it ran; the failed one's record was taken back.
    assert moves == [1, 2]
    assert [os.path.basename(m["source"]) for m in manifest["moves"]] == ["x.jpg"]
    assert not os.path.exists(os.path.join(data, "a", "x.jpg"))
    assert os.path.exists(os.path.join(data, "a", "y.jpg"))


def test_an_unlabelled_flat_or_nested_folder_reads_as_image_batches(tmp_path):
    flat = tmp_path / "flat"
    for i in range(5):
        write(os.path.join(flat, f"{i}.jpg"), jpeg(seed=i))
    write(os.path.join(flat, "broken.jpg"), b"no")
    write(os.path.join(flat, "more", "5.jpg"), jpeg(seed=5))
    images, val, info = kr.data.image_folder(
        flat, labels=None, image_size=(16, 16), batch_size=4, augment="basic", scan_cache=False
    )
    batches = [np.asarray(b) for b in images]
    assert val is None and [b.shape for b in batches] == [(4, 16, 16, 3), (2, 16, 16, 3)]
    assert info.class_names == [] and len(info.train_paths) == 6
    assert reasons(info) == {"broken.jpg": "not an image (unknown file format)"}
    with pytest.raises(ValueError, match="mixes labels"):
        kr.data.image_folder(flat, labels=None, augment="mixup")
    with pytest.raises(ValueError, match="pass labels=None"):
        kr.data.image_folder(tmp_path / "flat" / "more")
