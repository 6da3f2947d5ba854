"""The surfaces after training, tried as an attacker would: predict output, export, the mask and
COCO readers, the ablation's settings, CSV and terminal output.

Each test asserts the clear message or the skip with its reason, that the user's files are
byte-identical afterwards, and that nothing blocks (an alarm fails a test after 120 s)."""

import json
import os
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

# The folder tests' autouse fixtures: a private scan cache; an alarm that fails a blocked test.
from test_hostile_folders import no_hang, scan_cache_dir  # noqa: F401, E402

import kerasrecipes as kr
from kerasrecipes.cli import main
from kerasrecipes.files import csv_text, printable, write_atomically

SAVED_MODEL = ("--format", "saved_model")


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A two-class `kr.ImageClassifier`, untrained: what predict and export need."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    network = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name="tiny")
    path = tmp_path_factory.mktemp("model") / "model.keras"
    kr.ImageClassifier(network, class_names=["=HYPERLINK(x)", "b\x1b[31m"]).save(path)
    return str(path)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((16, 16, 3), 120, "uint8")).save(path)
    return str(path)


# -- user files -------------------------------------------------------------------------------


def test_predict_never_replaces_an_existing_output_unless_asked(
    model_file, image, tmp_path, capsys
):
    output = tmp_path / "mine.csv"
    output.write_bytes(b"my own notes\n")
    code, _, err = run_main(capsys, "predict", model_file, image, "--output", str(output))
    assert code == 1 and "exists already" in err and "--overwrite" in err
    assert output.read_bytes() == b"my own notes\n"
    code, _, err = run_main(
        capsys, "predict", model_file, image, "--output", str(output), "--overwrite"
    )
    assert code == 0, err
    text = output.read_text()
    # Class names that are formulas or terminal escapes reach neither the sheet nor the terminal.
    assert "'=HYPERLINK(x)" in text or "b\\x1b[31m" in text
    assert "\x1b" not in text


def test_predict_checks_its_output_before_predicting(model_file, image, tmp_path, capsys):
    code, out, err = run_main(
        capsys, "predict", model_file, image, "--output", str(tmp_path / "no" / "x.csv")
    )
    assert code == 1 and "does not exist" in err and "photo.png" not in out


def test_predict_prints_no_terminal_escapes(model_file, image, capsys):
    code, out, err = run_main(capsys, "predict", model_file, image, "--top-k", "2")
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b" in out


@pytest.mark.parametrize("flag", ["--top-k", "--batch-size"])
def test_counts_of_zero_are_refused_by_the_parser(model_file, image, capsys, flag):
    with pytest.raises(SystemExit):
        main(["predict", model_file, image, flag, "0"])
    assert f"{flag} takes an integer of 1 or more" in capsys.readouterr().err


def test_write_atomically_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "report.json"
    os.symlink(victim, tmp_path / "report.json.writing")  # the name the old helper used
    write_atomically(target, "new")
    assert victim.read_text() == "precious" and target.read_text() == "new"
    assert os.path.islink(tmp_path / "report.json.writing")  # not ours: left alone
    with pytest.raises(FileExistsError, match="report.json exists already"):
        write_atomically(target, "again", overwrite=False)
    assert target.read_text() == "new"
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".report.json.")]
    assert leftovers == []


def test_export_never_deletes_a_folder_it_did_not_write(model_file, tmp_path, capsys):
    out = tmp_path / "export"
    mine = out / "saved_model"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (out / ".writing.model.onnx").write_text("also mine")
    code, _, err = run_main(
        capsys, "export", model_file, *SAVED_MODEL, "--out", str(out), "--overwrite"
    )
    assert code == 1 and "not written by kerasrecipes export" in err
    assert (mine / "notes.txt").read_text() == "mine"
    assert (out / ".writing.model.onnx").read_text() == "also mine"
    assert sorted(os.listdir(out)) == [".writing.model.onnx", "saved_model"]


def test_export_writes_its_record_and_replaces_only_its_own_folder(model_file, tmp_path, capsys):
    out = tmp_path / "export"
    code, stdout, err = run_main(capsys, "export", model_file, *SAVED_MODEL, "--out", str(out))
    assert code == 0, err
    assert f"class names are in {out / 'labels.txt'}" in stdout
    assert sorted(os.listdir(out)) == ["labels.txt", "metadata.json", "saved_model"]
    record = json.loads((out / "metadata.json").read_text())
    assert record["artifacts"] == {
        "saved_model": {"format": "saved_model", "input_shape": [None, None, None, 3]}
    }
    assert record["class_names"] == ["=HYPERLINK(x)", "b\x1b[31m"]
    assert (out / "labels.txt").read_text(encoding="utf-8") == "=HYPERLINK(x)\nb\x1b[31m\n"
    assert record["image_size"] == [16, 16] and record["input"]["range"] == [0, 255]
    assert record["task"] == "classification" and record["source"] == model_file
    assert record["preprocessing"]["resize_to"] == [16, 16]
    assert record["preprocessing"]["resize_inside"] and record["labels"] == "labels.txt"
    code, _, err = run_main(
        capsys, "export", model_file, *SAVED_MODEL, "--out", str(out), "--overwrite"
    )
    assert code == 0, err
    assert not [name for name in os.listdir(out) if name.startswith(".export-")]


def test_overwrite_replaces_an_export_of_an_earlier_version_and_keeps_one_record(
    model_file, tmp_path, capsys
):
    out = tmp_path / "export"
    (out / "saved_model").mkdir(parents=True)
    (out / "model.onnx").write_text("an earlier export")
    listed = {name: {"format": "?", "input_shape": [None, 16, 16, 3]} for name in ("saved_model",)}
    earlier = {"artifacts": listed, "class_names": ["old", "names"], "image_size": [16, 16]}
    (out / "export.json").write_text(json.dumps(earlier))  # what kerasrecipes wrote before
    code, _, err = run_main(
        capsys, "export", model_file, *SAVED_MODEL, "--out", str(out), "--overwrite"
    )
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["labels.txt", "metadata.json", "model.onnx", "saved_model"]
    record = json.loads((out / "metadata.json").read_text())
    assert record["class_names"] == ["=HYPERLINK(x)", "b\x1b[31m"]
    assert sorted(record["artifacts"]) == ["saved_model"]  # model.onnx was never listed


@pytest.mark.parametrize("name", ["labels.txt", "metadata.json"])
def test_export_never_replaces_a_labels_or_metadata_file_it_did_not_write(
    model_file, tmp_path, capsys, name
):
    out = tmp_path / "export"
    out.mkdir()
    (out / name).write_text("my own notes")
    code, _, err = run_main(
        capsys, "export", model_file, *SAVED_MODEL, "--out", str(out), "--overwrite"
    )
    assert code == 1 and f"{out / name} was not written by kerasrecipes export" in err
    assert (out / name).read_text() == "my own notes" and os.listdir(out) == [name]


def test_a_class_name_with_a_line_break_is_refused_before_any_work(tmp_path):
    inputs = keras.Input((16, 16, 3))
    network = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    classifier = kr.ImageClassifier(network, class_names=["cat", "two\nlines"])
    with pytest.raises(kr.inference.ExportError, match=r"'two\\nlines' holds a line break"):
        kr.export(classifier, tmp_path / "export")
    assert not (tmp_path / "export").exists()


# Run in a process that cannot import kerasrecipes: what a server or phone holds is the folder.
READ_WITHOUT_KERASRECIPES = """
import json, sys
sys.modules["kerasrecipes"] = None
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

folder = sys.argv[1]
served = tf.saved_model.load(folder + "/saved_model")
names = [name.decode("utf-8") for name in served.class_names().numpy()]
labels = open(folder + "/labels.txt", encoding="utf-8").read().splitlines()
outputs = {}
for size in (16, 37):  # the training size, and another: the resize is inside the graph
    images = np.load(f"{folder}/images_{size}.npy")
    interpreter = Interpreter(model_path=folder + "/model.tflite")
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, images)
    interpreter.invoke()
    outputs[size] = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).tolist()
print(json.dumps({"names": names, "labels": labels, "outputs": outputs}))
"""


def test_an_export_folder_names_its_classes_and_runs_litert_at_any_size_without_kerasrecipes(
    model_file, tmp_path, capsys
):
    out = tmp_path / "export"
    for kind in ("saved_model", "litert"):
        code, stdout, err = run_main(
            capsys, "export", model_file, "--format", kind, "--out", str(out)
        )
        assert code == 0, err
        assert "images of any size" in stdout and "resize before calling it" not in stdout
    assert "resize its input tensor to your batch's shape first" in stdout  # LiteRT's
    record = json.loads((out / "metadata.json").read_text())
    assert record["artifacts"]["model.tflite"]["input_shape"] == [None, None, None, 3]
    rng = np.random.default_rng(0)
    images = {
        size: rng.uniform(0, 255, (2, size, size + 3, 3)).astype("float32") for size in (16, 37)
    }
    for size, batch in images.items():
        np.save(out / f"images_{size}.npy", batch)
    result = subprocess.run(
        [sys.executable, "-c", READ_WITHOUT_KERASRECIPES, str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    read = json.loads(result.stdout.splitlines()[-1])
    assert read["names"] == read["labels"] == ["=HYPERLINK(x)", "b\x1b[31m"]
    classifier = kr.load_model(model_file)
    for size, batch in images.items():
        expected = classifier.predict_on_batch(batch)
        np.testing.assert_allclose(read["outputs"][str(size)], expected, rtol=1e-4, atol=1e-6)


def test_a_litert_export_with_static_shapes_says_the_size_it_takes(
    model_file, tmp_path, capsys, monkeypatch
):
    from kerasrecipes.inference import exporting

    # As on PyTorch, where Keras exports LiteRT with static shapes: the training size only.
    monkeypatch.setattr(exporting, "LITERT_ANY_SIZE_BACKENDS", ())
    out = tmp_path / "export"
    code, stdout, err = run_main(
        capsys, "export", model_file, "--format", "litert", "--out", str(out)
    )
    assert code == 0, err
    assert (
        "model.tflite takes 16x16 images (height x width) only; resize before calling it" in stdout
    )
    record = json.loads((out / "metadata.json").read_text())
    assert record["artifacts"]["model.tflite"]["input_shape"] == [None, 16, 16, 3]
    from ai_edge_litert.interpreter import Interpreter  # the export extra

    details = Interpreter(model_path=str(out / "model.tflite")).get_input_details()[0]
    assert details["shape_signature"].tolist() == [-1, 16, 16, 3]


def test_export_to_a_file_says_it_writes_a_folder(model_file, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, err = run_main(capsys, "export", model_file, *SAVED_MODEL, "--out", str(target))
    assert code == 1 and "is a file; export writes a folder" in err
    assert target.read_text() == "x"


def test_a_loose_segmentation_file_exports_as_a_segmenter(tmp_path, capsys):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(3, 1, activation="softmax")(keras.layers.Rescaling(1 / 255)(inputs))
    path = tmp_path / "unet.keras"  # a bare network, no run folder beside it
    keras.Model(inputs, x, name="tiny_unet").save(path)
    assert isinstance(kr.load_model(path), kr.ImageSegmenter)
    out = tmp_path / "export"
    code, _, err = run_main(capsys, "export", str(path), *SAVED_MODEL, "--out", str(out))
    assert code == 0, err
    served = kr.inference.exporting.run_exported(
        str(out / "saved_model"), "saved_model", np.zeros((1, 8, 8, 3))
    )
    assert served.shape[:3] == (1, 8, 8)  # a mask per image, not a class per image


# -- model files ------------------------------------------------------------------------------


def test_a_truncated_keras_file_is_named_as_damaged(model_file, tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(open(model_file, "rb").read()[:500])
    with pytest.raises(ValueError, match="not a zip archive"):
        kr.load_model(cut)


def test_a_lambda_layer_refused_by_safe_mode_says_how_to_load_a_trusted_file(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="safe mode refused it.*safe_mode=False"):
        kr.load_model(path)


# -- the ablation's settings ------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("false", False), ("no", False), ("TRUE", True)])
def test_set_reads_booleans_strictly(text, expected):
    from kerasrecipes.cli import _field_values

    assert _field_values([f"restart={text}"], "--set") == {"restart": expected}


def test_set_refuses_a_word_that_is_not_true_or_false():
    from kerasrecipes.cli import _field_values

    with pytest.raises(ValueError, match="--set 'ema=maybe': ema is true or false"):
        _field_values(["ema=maybe"], "--set")


def test_a_bucket_name_cannot_leave_the_output_folder(tmp_path):
    with pytest.raises(ValueError, match="bucket name '../escape'"):
        kr.ablate(changes={"../escape": {"weight_decay": 0.0}}, out_dir=tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_no_seeds_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        kr.ablate(seeds=0, out_dir=tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["ablate", "--seeds", "0"])
    assert "--seeds takes an integer of 1 or more" in capsys.readouterr().err


# -- readers ----------------------------------------------------------------------------------


def _segmentation_folder(root, count=4):
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    for i in range(count):
        Image.fromarray(np.full((8, 8, 3), 40 * i, "uint8")).save(root / "images" / f"{i}.png")
        mask = np.zeros((8, 8), "uint8")
        mask[2:5, 2:5] = 1
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return root


def test_a_fifo_among_the_masks_is_skipped_without_blocking(tmp_path):
    root = _segmentation_folder(tmp_path / "seg")
    os.mkfifo(root / "masks" / "9.png")
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(root / "images" / "9.png")
    _, _, info = kr.data.mask_folder(root, image_size=(8, 8), batch_size=2)
    reasons = dict(info.skipped)
    assert reasons[str(root / "masks" / "9.png")] == "not a regular file"


def test_two_images_sharing_a_name_are_both_skipped_with_the_reason(tmp_path):
    root = _segmentation_folder(tmp_path / "seg")
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(root / "images" / "1.jpg")
    _, _, info = kr.data.mask_folder(root, image_size=(8, 8), batch_size=2)
    reasons = dict(info.skipped)
    assert "share the name '1'" in reasons[str(root / "images" / "1.jpg")]
    assert "share the name '1'" in reasons[str(root / "images" / "1.png")]
    used = [pair[0] for pair in info.train_pairs + info.val_pairs]
    assert not any(os.path.basename(path).startswith("1.") for path in used)


def test_a_mask_too_large_to_decode_is_skipped_not_fatal(tmp_path):
    root = _segmentation_folder(tmp_path / "seg")
    # A grayscale PNG declaring 15000 x 15000 pixels (225 M) in a hundred bytes.
    from test_hostile_folders import png_header_only

    header = png_header_only(15000, 15000)
    (root / "masks" / "0.png").write_bytes(header)
    _, _, info = kr.data.mask_folder(root, image_size=(8, 8), batch_size=2)
    assert "too large to decode" in dict(info.skipped)[str(root / "masks" / "0.png")]


def test_a_class_file_that_is_not_utf8_is_named(tmp_path):
    root = _segmentation_folder(tmp_path / "seg")
    (root / "classes.txt").write_bytes(b"background\n\xff\xfe thing\n")
    with pytest.raises(ValueError, match="classes.txt is not UTF-8 text"):
        kr.data.mask_folder(root, image_size=(8, 8))


def _gif_with_a_large_second_frame():
    """16x16 screen and first frame; a second frame descriptor of 12000 x 12000 (no pixels)."""
    frame = b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one data sub-block, terminator
    data = b"GIF89a" + struct.pack("<HH", 16, 16) + b"\x00\x00\x00"
    data += b"\x2c" + struct.pack("<HHHH", 0, 0, 16, 16) + b"\x00" + frame
    data += b"\x2c" + struct.pack("<HHHH", 0, 0, 12000, 12000) + b"\x00" + frame
    return data + b"\x3b"


def test_a_gif_of_many_small_frames_is_limited_by_them_all(tmp_path):
    """TensorFlow's GIF decoder unpacks every frame: 600 frames of 400 x 400 is 96 M pixels."""
    frame = b"\x02\x02\x44\x01\x00"
    data = b"GIF89a" + struct.pack("<HH", 400, 400) + b"\x00\x00\x00"
    data += (b"\x2c" + struct.pack("<HHHH", 0, 0, 400, 400) + b"\x00" + frame) * 600
    folder = tmp_path / "photos" / "a"
    folder.mkdir(parents=True)
    (folder / "frames.gif").write_bytes(data + b"\x3b")
    report = kr.data.verify_images(tmp_path / "photos")
    reasons = {os.path.basename(path): reason for path, reason in report.skipped}
    assert "96.0 M pixels" in reasons["frames.gif"]


def test_files_written_are_readable_as_a_plain_open_would_make_them(tmp_path):
    write_atomically(tmp_path / "report.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "report.json").st_mode & 0o777 == 0o666 & ~umask


def test_set_none_turns_an_optional_choice_off():
    from kerasrecipes.cli import _field_values

    assert _field_values(["balance=none"], "--set") == {"balance": None}


def test_a_gif_is_limited_by_its_largest_frame_not_its_first(tmp_path):
    folder = tmp_path / "photos" / "a"
    folder.mkdir(parents=True)
    (folder / "bomb.gif").write_bytes(_gif_with_a_large_second_frame())
    report = kr.data.verify_images(tmp_path / "photos")
    reasons = {os.path.basename(path): reason for path, reason in report.skipped}
    assert "144.0 M pixels" in reasons["bomb.gif"] and "not decoded" in reasons["bomb.gif"]


def _coco(tmp_path, images=None, annotations=None, categories=None):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((20, 20, 3), "uint8")).save(root / "images" / name)
    data = {
        "images": images
        or [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 20},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 20},
        ],
        "annotations": annotations
        or [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": categories or [{"id": 1, "name": "thing"}],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root


IMAGE_A = {"id": 1, "file_name": "a.png", "width": 20, "height": 20}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": [IMAGE_A, dict(IMAGE_A, file_name="b.png")]}, "image id 1 is listed twice"),
        ({"images": [IMAGE_A, dict(IMAGE_A, id=2)]}, "a.png is listed under image ids 1 and 2"),
        (
            {"categories": [{"id": 1, "name": "x"}, {"id": 1, "name": "y"}]},
            r"category id\(s\) \[1\] appear twice",
        ),
        ({"images": [dict(IMAGE_A, file_name="/etc/passwd")]}, "stay inside it"),
        ({"images": [dict(IMAGE_A, file_name="../outside.png")]}, "stay inside it"),
        (
            {"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, "nan", 5]}]},
            "four finite numbers",
        ),
        (
            {"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, True, 5, 5]}]},
            "four finite numbers",
        ),
        ({"categories": [{"id": "1", "name": "thing"}]}, "integer id and a name"),
        ({"annotations": ["not an object"]}, "is not an object"),
    ],
)
def test_coco_files_that_would_mislead_are_refused_with_the_entry(tmp_path, change, message):
    root = _coco(tmp_path, **change)
    if "bbox" in json.dumps(change):  # json.dumps writes a NaN for the string "nan" only as text
        text = (root / "annotations.json").read_text().replace('"nan"', "NaN")
        (root / "annotations.json").write_text(text)
    with pytest.raises(kr.data.AnnotationError, match=message):
        kr.data.coco_folder(root, image_size=(20, 20))


def test_deeply_nested_json_is_an_annotation_error(tmp_path):
    root = _coco(tmp_path)
    (root / "annotations.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(kr.data.AnnotationError, match="nests its JSON too deeply|no list"):
        kr.data.coco_folder(root, image_size=(20, 20))


# -- text out ---------------------------------------------------------------------------------


def test_csv_cells_are_spreadsheet_safe_and_terminal_text_printable():
    text = csv_text([{"label": "=1+1", "path": "@x", "score": -0.5, "name": "a\x1b[2Jb"}])
    assert "'=1+1" in text and "'@x" in text and ",-0.5," in text and "a\\x1b[2Jb" in text
    assert printable("ok\x07") == "ok\\x07"


def test_set_takes_the_choices_its_flag_takes():
    from kerasrecipes.cli import _field_values

    with pytest.raises(ValueError, match="optimizer is one of"):
        _field_values(["optimizer=rmsprop"], "--set")


def test_a_write_error_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    with pytest.raises(OSError, match=r"cannot write .*missing/out\.csv"):
        write_atomically(tmp_path / "missing" / "out.csv", "x")


def test_the_command_shows_the_warning_about_a_class_too_small_to_validate(tmp_path):
    root = tmp_path / "data"
    for name, count in (("big", 8), ("lonely", 1)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.full((8, 8, 3), 30 * index, "uint8")).save(
                root / name / f"{index}.png"
            )
    _, _, info = kr.data.image_folder(root, image_size=(8, 8), validation_split=0.25, seed=0)
    line = kr.tasks.get_task("classification").describe_data(info)
    assert "WARNING: classes with fewer than 2 images in a split: 'lonely' (1 training)" in line
    assert "'lonely' (0 validation)" in line
