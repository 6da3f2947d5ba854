"""Detection data: an images folder with COCO JSON annotations.

`coco_folder(path)` reads `path/annotations.json` (COCO's `images`,
`annotations` with `bbox = [x, y, width, height]` in pixels, and
`categories`) and the images it names under `path/images/`.
`kr.data.make_demo_dataset(task="detection")` writes this layout. Batches
hold the images (float32 in [0, 255], resized) and
`{"boxes": (N, 4), "labels": (N,)}` with boxes as `[x_min, y_min, x_max,
y_max]` in the resized image's pixels, padded to the largest count with
label -1 (Keras' bounding-box convention, which its preprocessing layers
and keras-hub's detectors read).
"""

import dataclasses
import json
import math
import os

import numpy as np
import tensorflow as tf

from kerasrecipes.data.folder import _check_image_size, read_image
from kerasrecipes.data.masks import batched, check_validation_split, random_split
from kerasrecipes.data.verify import _log_skipped, logger, verify_images

ANNOTATION_FILE = "annotations.json"


@dataclasses.dataclass
class CocoFolderInfo:
    """What `coco_folder` read.

    Attributes:
        class_names: label `i` is `class_names[i]` (COCO categories sorted by id).
        category_ids: the COCO category id of each label.
        train_images, val_images: the COCO image records of each split, each
            with its path (`"path"`) and boxes (`"boxes"`, `"labels"`, in the file's pixels).
        skipped: `(path, reason)` of the images not read.
        counts, val_counts: `{class name: boxes}` in each split.
    """

    class_names: list
    category_ids: list
    train_images: list
    val_images: list
    skipped: list
    counts: dict
    val_counts: dict

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def train_paths(self):
        return [image["path"] for image in self.train_images]

    @property
    def val_paths(self):
        return [image["path"] for image in self.val_images]


class AnnotationError(ValueError):
    """A COCO file that cannot be read; the message names the file and the entry."""


def _load(path):
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"COCO annotations {path} not found. Put a COCO JSON file there (images, "
            "annotations with bbox [x, y, width, height], categories) or pass annotations=."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path} is not valid JSON ({error}).") from None
    except RecursionError:
        raise AnnotationError(f"{path} nests its JSON too deeply to be a COCO file.") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError(
                f"{path} has no list {key!r}; a COCO file needs images, annotations and categories."
            )
    return data


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _categories(data, path):
    """`(names, ids)` sorted by id: integer ids, each once, and names, each once."""
    categories = data["categories"]
    if not all(isinstance(c, dict) and _is_integer(c.get("id")) for c in categories) or not all(
        isinstance(c.get("name"), str) for c in categories
    ):
        raise AnnotationError(f"{path}: every category needs an integer id and a name (text).")
    categories = sorted(categories, key=lambda c: c["id"])
    ids, names = [c["id"] for c in categories], [c["name"] for c in categories]
    for values, what in ((ids, "id"), (names, "name")):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            raise AnnotationError(
                f"{path}: category {what}(s) {repeated} appear twice in categories; each "
                "category needs its own id and name."
            )
    return names, ids


def _images(data, path):
    """`{image id: record}`: each id and each file once, file names inside the images folder."""
    images, ids_of_file = {}, {}
    for entry in data["images"]:
        if not (
            isinstance(entry, dict)
            and _is_integer(entry.get("id"))
            and isinstance(entry.get("file_name"), str)
            and _is_integer(entry.get("width"))
            and _is_integer(entry.get("height"))
        ):
            raise AnnotationError(
                f"{path}: image entry {str(entry)[:200]} needs an integer id, a file_name, and "
                "integer width and height."
            )
        name = entry["file_name"]
        parts = name.replace("\\", "/").split("/")
        if os.path.isabs(name) or ".." in parts or not name.strip():
            raise AnnotationError(
                f"{path}: image {entry['id']} has file_name {name!r}; file names are relative "
                "to the images folder and stay inside it (no absolute path, no '..')."
            )
        if entry["id"] in images:
            raise AnnotationError(
                f"{path}: image id {entry['id']} is listed twice in images; each image needs "
                "its own id (boxes name their image by id)."
            )
        if os.path.normpath(name) in ids_of_file:
            raise AnnotationError(
                f"{path}: {name} is listed under image ids {ids_of_file[os.path.normpath(name)]} "
                f"and {entry['id']}; list each file once, or the two entries could land in "
                "training and validation both."
            )
        ids_of_file[os.path.normpath(name)] = entry["id"]
        images[entry["id"]] = {
            "file_name": name,
            "width": entry["width"],
            "height": entry["height"],
            "boxes": [],
            "labels": [],
        }
    return images


def _records(data, path):
    """Image records with their boxes, from a loaded COCO file; `AnnotationError` on bad entries."""
    names, category_ids = _categories(data, path)
    label_of = {category: index for index, category in enumerate(category_ids)}
    images = _images(data, path)
    for entry in data["annotations"]:
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: annotation {str(entry)[:200]} is not an object.")
        where = f"{path}: annotation {entry.get('id', '?')}"
        image_id = entry.get("image_id")
        image = images.get(image_id) if _is_integer(image_id) else None
        if image is None:
            raise AnnotationError(
                f"{where} names image_id {entry.get('image_id')!r}, not in images."
            )
        if not _is_integer(entry.get("category_id")) or entry["category_id"] not in label_of:
            raise AnnotationError(
                f"{where} names category_id {entry.get('category_id')!r}, not in categories "
                f"{category_ids}."
            )
        box = entry.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise AnnotationError(
                f"{where}: bbox must be [x, y, width, height], four finite numbers; got {box!r}."
            )
        x, y, width, height = box
        if (
            width <= 0
            or height <= 0
            or x < 0
            or y < 0
            or x + width > image["width"] + 0.5
            or (y + height > image["height"] + 0.5)
        ):
            raise AnnotationError(
                f"{where}: bbox {box} is empty or outside its {image['width']}x{image['height']} "
                "image."
            )
        if entry.get("iscrowd"):
            continue  # crowd regions are not objects to detect (COCO ignores them too)
        image["boxes"].append([x, y, x + width, y + height])
        image["labels"].append(label_of[entry["category_id"]])
    return names, category_ids, list(images.values())


def coco_folder(
    path,
    image_size=(512, 512),
    batch_size=8,
    validation_split=0.2,
    seed=0,
    images="images",
    annotations=ANNOTATION_FILE,
    shuffle=True,
    cache=True,
    scan_cache=True,
):
    """Reads images and their COCO boxes into batched datasets (see the module docstring).

    Malformed annotations (bad JSON, an annotation naming an unknown image or
    category, a box that is not `[x, y, w, h]` inside its image) raise an
    `AnnotationError` naming the file and entry. Images are scanned as
    `image_folder` scans them; a missing or unreadable image, or one whose
    size differs from its entry, is skipped and logged with its reason.

    Args:
        path: the folder holding `images/` and `annotations.json`.
        image_size: `(height, width)` of the batches; boxes are scaled with
            the images. Defaults to (512, 512).
        batch_size: images per batch. Defaults to 8.
        validation_split: fraction held out for validation, in (0, 1), or
            None. Defaults to 0.2.
        seed: seed of the split and the shuffling. Defaults to 0.
        images: the images subfolder (COCO's `file_name`s are relative to
            it). Defaults to "images".
        annotations: the JSON file, relative to `path`. Defaults to "annotations.json".
        shuffle: reshuffle the training images every epoch. Defaults to True.
        cache: keep the decoded, resized images in memory. Defaults to True.
        scan_cache: the `cache` argument of `verify_images`. Defaults to True.

    Returns:
        `(train, val, info)`: datasets of `(images, {"boxes", "labels"})`
        batches (`val` None without a split) and a `CocoFolderInfo`.
    """
    from PIL import Image

    height, width = _check_image_size(image_size)
    check_validation_split(validation_split)
    path = os.path.abspath(os.fspath(path))
    annotation_path = os.path.join(path, annotations)
    names, category_ids, records = _records(_load(annotation_path), annotation_path)
    image_dir = os.path.join(path, images)
    skipped, present = [], []
    for record in records:
        record["path"] = os.path.join(image_dir, record["file_name"])
        if os.path.isfile(record["path"]):
            present.append(record)
        else:
            skipped.append((record["path"], f"named in {annotations} but missing"))
    report = verify_images(image_dir, files=[r["path"] for r in present], cache=scan_cache)
    readable = set(report.valid)
    skipped += list(report.skipped)
    kept = []
    for record in present:
        if record["path"] not in readable:
            continue
        with Image.open(record["path"]) as image:
            size = image.size
        if size != (record["width"], record["height"]):
            skipped.append(
                (
                    record["path"],
                    f"is {size[0]}x{size[1]}, its entry says {record['width']}x{record['height']}",
                )
            )
            continue
        kept.append(record)
    skipped = sorted(skipped)
    if skipped:
        _log_skipped(path, len(records), skipped, [])
    if len(kept) < 2:
        raise ValueError(
            f"coco_folder: {path} has {len(kept)} usable image(s); it needs at least two."
        )
    train_images, val_images = random_split(kept, validation_split, seed)
    num_val = len(val_images)

    def counts(split):
        found = np.bincount([label for r in split for label in r["labels"]], minlength=len(names))
        return {name: int(count) for name, count in zip(names, found)}

    info = CocoFolderInfo(
        names,
        category_ids,
        train_images,
        val_images,
        skipped,
        counts(train_images),
        counts(val_images) if val_images else {},
    )
    logger.info(
        "Read %d training and %d validation images from %s", len(train_images), num_val, path
    )
    make = dict(image_size=(height, width), batch_size=batch_size, seed=seed, cache=cache)
    train = _box_dataset(train_images, shuffle=shuffle, **make)
    val = _box_dataset(val_images, shuffle=False, **make) if val_images else None
    return train, val, info


def _box_dataset(records, image_size, batch_size, seed, shuffle, cache):
    most = max(1, max(len(r["labels"]) for r in records))
    boxes = np.full((len(records), most, 4), -1.0, "float32")
    labels = np.full((len(records), most), -1, "int32")
    for index, record in enumerate(records):
        count = len(record["labels"])
        if count:
            scale = np.array(
                [image_size[1] / record["width"], image_size[0] / record["height"]] * 2
            )
            boxes[index, :count] = np.asarray(record["boxes"], "float32") * scale
            labels[index, :count] = record["labels"]
    paths = [r["path"] for r in records]
    dataset = tf.data.Dataset.from_tensor_slices((paths, boxes, labels))
    dataset = dataset.map(
        lambda path, box, label: (read_image(path, image_size), {"boxes": box, "labels": label}),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return batched(dataset, len(records), batch_size, seed, shuffle, cache)
