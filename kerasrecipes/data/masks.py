"""Segmentation data: an images folder and a masks folder of PNGs, Pascal VOC style.

`mask_folder(path)` reads `path/images/<id>.<jpg|png|...>` with
`path/masks/<id>.png` (one class index per pixel, palette or grayscale PNG;
255 marks "void" pixels, ignored by the loss and the metrics) and
`path/classes.txt` (one class name per line, line `i` naming index `i`,
the background first). `kr.data.make_demo_dataset(task="segmentation")`
writes this layout.
"""

import dataclasses
import io
import os
import stat
import warnings

import numpy as np
import tensorflow as tf

from kerasrecipes.data.folder import _check_image_size, read_image
from kerasrecipes.data.scenes import VOID_INDEX
from kerasrecipes.data.verify import (
    DEFAULT_MAX_PIXELS,
    _log_skipped,
    is_image_name,
    logger,
    read_regular_file,
    verify_images,
)

CLASS_FILE = "classes.txt"
# Mask modes that hold class indices: palette, 8-bit grayscale, 16-bit and 32-bit grayscale.
_INDEX_MODES = ("P", "L", "I;16", "I")


@dataclasses.dataclass
class MaskFolderInfo:
    """What `mask_folder` read.

    Attributes:
        class_names: index `i` is `class_names[i]`; index 0 is usually the background.
        train_pairs, val_pairs: `(image path, mask path)` of each split.
        skipped: `(path, reason)` of every image or mask that was not read.
        counts, val_counts: `{class name: labelled pixels}` over each split's
            masks, at file size.
    """

    class_names: list
    train_pairs: list
    val_pairs: list
    skipped: list
    counts: dict
    val_counts: dict

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def train_paths(self):
        return [image for image, _ in self.train_pairs]

    @property
    def val_paths(self):
        return [image for image, _ in self.val_pairs]


def read_class_names(path):
    """The class names in `path` (a `classes.txt`): one per line, distinct, at least two."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Class-name file {path} not found. Write one class name per line, line i naming "
            "mask index i (background first), or pass class_names=[...]."
        )
    try:
        with open(path, encoding="utf-8") as file:
            names = [line.strip() for line in file if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Class-name file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8, "
            "one class name per line."
        ) from None
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if len(names) < 2 or duplicates:
        problem = f"repeats {duplicates}" if duplicates else f"names {len(names)} class(es)"
        raise ValueError(
            f"Class-name file {path} {problem}; it needs at least two distinct names, one per "
            "line (line i names mask index i, background first)."
        )
    return names


def read_mask(path, max_pixels=DEFAULT_MAX_PIXELS):
    """A mask PNG as a `(height, width)` uint8 array of class indices.

    Read as the scan reads images: a regular file only, opened without
    blocking, and at most `max_pixels` pixels. Raises `ValueError` (or
    `OSError`) saying why a file is not a usable mask.
    """
    from PIL import Image

    contents = read_regular_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(contents))
        except Image.DecompressionBombError as error:
            raise ValueError(f"mask too large to decode ({error})") from None
    with image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ValueError(
                f"mask of {image.width * image.height / 1e6:.1f} M pixels, above the limit of "
                f"{max_pixels / 1e6:.1f} M; not decoded"
            )
        if image.mode not in _INDEX_MODES:
            raise ValueError(
                f"mask mode {image.mode} holds colours, not class indices; save masks as "
                "palette (P) or grayscale (L) PNGs whose pixel values are class indices"
            )
        values = np.asarray(image)
    if values.max(initial=0) > 255:
        raise ValueError(f"mask values up to {values.max()} do not fit class indices 0..255")
    return values.astype("uint8")


def _check_mask(image_path, mask_path, num_classes):
    """The reason a mask cannot be used with its image, or None; and its pixel counts."""
    from PIL import Image

    try:
        mask = read_mask(mask_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(read_regular_file(image_path))) as image:
                image_size = image.size[::-1]
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable mask ({error})", None
    if mask.shape != tuple(image_size):
        shown = f"{image_size[1]}x{image_size[0]}"
        return f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {shown}", None
    counts = np.bincount(mask.reshape(-1), minlength=256)
    bad = [int(v) for v in np.nonzero(counts[num_classes:VOID_INDEX])[0] + num_classes]
    bad += [int(v) for v in np.nonzero(counts[VOID_INDEX + 1 :])[0] + VOID_INDEX + 1]
    if bad:
        return (
            f"mask has values {bad[:5]} but the class-name file names {num_classes} classes "
            f"(0..{num_classes - 1}; {VOID_INDEX} = void)"
        ), None
    return None, counts[:num_classes]


def _files_by_stem(folder, wanted, skipped):
    """`{stem: path}` of the regular files in `folder` that `wanted` names; a stem two files
    share (`x.jpg`, `x.png`) pairs with neither, and what is not a regular file is skipped."""
    by_stem = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not wanted(name):
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError as error:
            skipped.append((path, f"cannot be read ({error.strerror})"))
            continue
        if not stat.S_ISREG(mode):
            skipped.append((path, "not a regular file"))
            continue
        by_stem.setdefault(os.path.splitext(name)[0], []).append(path)
    for stem, paths in list(by_stem.items()):
        if len(paths) > 1:
            names = ", ".join(os.path.basename(p) for p in paths)
            skipped += [(p, f"{names} share the name {stem!r}; rename one") for p in paths]
            del by_stem[stem]
    return {stem: paths[0] for stem, paths in by_stem.items()}


def _pairs(path, images, masks):
    """(image, mask) pairs matched by file stem, and the files without a partner."""
    image_dir, mask_dir = os.path.join(path, images), os.path.join(path, masks)
    for folder, role in ((image_dir, "images"), (mask_dir, "masks")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"mask_folder: {folder} is not a folder. Put the {role} in {path}/{images}/ and "
                f"{path}/{masks}/ (same file names, masks as PNG), or pass images=/masks=."
            )
    skipped = []
    image_files = _files_by_stem(image_dir, is_image_name, skipped)
    mask_files = _files_by_stem(mask_dir, lambda name: name.lower().endswith(".png"), skipped)
    pairs = [(image_files[stem], mask_files[stem]) for stem in image_files if stem in mask_files]
    skipped += [
        (image_files[s], f"no mask {masks}/{s}.png") for s in image_files if s not in mask_files
    ]
    skipped += [
        (mask_files[s], "mask without an image") for s in mask_files if s not in image_files
    ]
    return pairs, skipped


def mask_folder(
    path,
    image_size=(128, 128),
    batch_size=16,
    validation_split=0.2,
    seed=0,
    class_names=None,
    images="images",
    masks="masks",
    shuffle=True,
    cache=True,
    scan_cache=True,
):
    """Reads a segmentation folder (module doc) into batched `(images, masks)` datasets.

    Every image is scanned as `image_folder` scans (`verify_images`), every
    mask checked against its image (readable, index mode, same size, values
    named by the class-name file); the pairs that fail are skipped and
    logged with their reason. Images are resized bilinearly (float32 in
    [0, 255]), masks by nearest neighbour (int32 class indices, 255 void).

    Args:
        path: the folder holding `images/`, `masks/` and `classes.txt`.
        image_size: `(height, width)` of the batches. Defaults to (128, 128).
        batch_size: pairs per batch. Defaults to 16.
        validation_split: fraction held out for validation, in (0, 1), or
            None. Defaults to 0.2.
        seed: seed of the split and the shuffling. Defaults to 0.
        class_names: the names, instead of `classes.txt`. Defaults to None.
        images, masks: the two subfolders' names. Default "images", "masks".
        shuffle: reshuffle the training pairs every epoch. Defaults to True.
        cache: keep the decoded, resized pairs in memory after the first
            epoch. Defaults to True.
        scan_cache: the `cache` argument of `verify_images`. Defaults to True.

    Returns:
        `(train, val, info)`: datasets of `(images, masks)` batches (`val`
        None without a split) and a `MaskFolderInfo`.
    """
    height, width = _check_image_size(image_size)
    check_validation_split(validation_split)
    path = os.path.abspath(os.fspath(path))
    if class_names is None:
        class_names = read_class_names(os.path.join(path, CLASS_FILE))
    pairs, skipped = _pairs(path, images, masks)
    report = (
        verify_images(path, files=[image for image, _ in pairs], cache=scan_cache)
        if pairs
        else None
    )
    readable = set(report.valid) if report else set()
    skipped += [item for item in (report.skipped if report else [])]
    kept = []
    for image, mask in pairs:
        if image not in readable:
            continue
        reason, counts = _check_mask(image, mask, len(class_names))
        if reason:
            skipped.append((mask, reason))
        else:
            kept.append((image, mask, counts))
    skipped = sorted(skipped)
    if skipped:
        _log_skipped(path, len(pairs) + len(skipped), skipped, [])
    if len(kept) < 2:
        raise ValueError(
            f"mask_folder: {path} has {len(kept)} usable image/mask pair(s); it needs at least "
            "two" + (" (see the log for the skipped files)" if skipped else "") + "."
        )
    train_items, val_items = random_split(kept, validation_split, seed)
    num_val = len(val_items)

    def pixels(items):
        total = np.sum([counts for _, _, counts in items], axis=0, dtype="int64")
        return {name: int(count) for name, count in zip(class_names, np.atleast_1d(total))}

    info = MaskFolderInfo(
        class_names=list(class_names),
        train_pairs=[(image, mask) for image, mask, _ in train_items],
        val_pairs=[(image, mask) for image, mask, _ in val_items],
        skipped=skipped,
        counts=pixels(train_items),
        val_counts=pixels(val_items) if val_items else {},
    )
    logger.info("Read %d training and %d validation pairs from %s", len(train_items), num_val, path)
    make = dict(image_size=(height, width), batch_size=batch_size, seed=seed, cache=cache)
    train = _pair_dataset(info.train_pairs, shuffle=shuffle, **make)
    val = _pair_dataset(info.val_pairs, shuffle=False, **make) if num_val else None
    return train, val, info


def _read_pair(image_path, mask_path, image_size):
    image = read_image(image_path, image_size)
    mask = tf.numpy_function(lambda p: read_mask(p.decode()), [mask_path], tf.uint8)
    mask.set_shape((None, None))
    mask = tf.image.resize(mask[..., None], image_size, method="nearest")[..., 0]
    mask.set_shape(image_size)
    return image, tf.cast(mask, "int32")


def _pair_dataset(pairs, image_size, batch_size, seed, shuffle, cache):
    images, masks = (list(column) for column in zip(*pairs))
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.map(
        lambda i, m: _read_pair(i, m, image_size), num_parallel_calls=tf.data.AUTOTUNE
    )
    return batched(dataset, len(pairs), batch_size, seed, shuffle, cache)


def check_validation_split(validation_split):
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be in (0, 1) or None. Received: {validation_split!r}"
        )


def random_split(items, validation_split, seed):
    """`(train, val)`: a seeded random `validation_split` of `items` (at least one) held out;
    the training items keep their order."""
    order = np.random.default_rng(seed).permutation(len(items))
    num_val = 0 if validation_split is None else max(1, round(validation_split * len(items)))
    return [items[i] for i in sorted(order[num_val:])], [items[i] for i in order[:num_val]]


def batched(dataset, count, batch_size, seed, shuffle, cache):
    """The tail of a reader's pipeline: cache the decoded examples, reshuffle, batch, prefetch."""
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
