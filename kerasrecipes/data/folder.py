"""`image_folder`: a `tf.data` pipeline from a folder of class folders."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from kerasrecipes.data.augment import augment as augment_batches
from kerasrecipes.data.verify import (
    DEFAULT_MAX_PIXELS,
    decode_rgb,
    is_utf8,
    logger,
    shown_path,
    verify_images,
    walk_images,
)

LABEL_MODES = ("int", "categorical", "binary")
# `cache="auto"` keeps the decoded images in memory when they take at most this share of the
# memory available when the dataset is made.
_AUTO_CACHE_MEMORY_SHARE = 0.25


@dataclasses.dataclass
class FolderInfo:
    """What `image_folder` read.

    Attributes:
        class_names: class folder names, sorted; label `i` is `class_names[i]`.
        counts: `{class_name: number of training images}`, the input of
            `class_weights` and `oversample`.
        val_counts: the same for the validation split (empty without one).
        skipped: `(path, reason)` pairs of the files that were not read.
        train_paths, val_paths: the files of each split, in label order of
            `train_labels` and `val_labels` (before shuffling).
        train_labels, val_labels: int arrays, the class index of each path.
        cached: whether the decoded images are cached (in memory, or in the
            file given as `cache`).
        ignored: hidden files and folders (names starting with "."), not read.
    """

    class_names: list
    counts: dict
    val_counts: dict
    skipped: list
    train_paths: list
    train_labels: np.ndarray
    val_paths: list
    val_labels: np.ndarray
    cached: bool
    ignored: list = dataclasses.field(default_factory=list)

    @property
    def num_classes(self):
        return len(self.class_names)


def image_folder(
    path,
    image_size=(224, 224),
    batch_size=32,
    validation_split=None,
    seed=0,
    label_mode="int",
    shuffle=True,
    cache="auto",
    augment=None,
    interpolation="bilinear",
    verify=True,
    quarantine=None,
    scan_cache=True,
    labels="inferred",
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """Reads a folder of class folders (or of unlabelled images) into batched `tf.data` datasets.

    `path/<class>/<image>` is the layout of cats-vs-dogs and of
    `keras.utils.image_dataset_from_directory`, which this replaces with
    three changes: every file is checked first (`verify_images`, with the
    pipeline's own decoder) and unreadable ones are skipped and reported
    instead of stopping training mid-epoch; the split is stratified, so each
    class keeps its share in both splits; and the decoded, resized images
    are cached when they fit in memory, so epochs after the first decode
    nothing (`benchmarks/input_pipeline.py` measures both pipelines).

    The pipeline: file paths (reshuffled every epoch) -> parallel read,
    decode and resize (`AUTOTUNE`) -> `cache` -> `batch` -> augmentation (the
    training split only) -> `prefetch`. Images are float32 in `[0, 255]`,
    as keras.applications models expect; grayscale, RGBA and palette images
    are converted to RGB.

    Args:
        path: folder with one subfolder per class (at least two). Files
            directly in `path` are not in a class and are reported as
            skipped.
        image_size: `(height, width)` the images are resized to. Defaults to
            `(224, 224)`.
        batch_size: images per batch. Defaults to 32.
        validation_split: None, or the fraction of each class held out for
            validation, in (0, 1). Defaults to None.
        seed: seed of the split and of the shuffling: the same seed gives the
            same split and the same order. Defaults to 0.
        label_mode: `"int"` (class index, for `sparse_categorical_crossentropy`),
            `"categorical"` (one-hot float32, for `categorical_crossentropy`,
            label smoothing, MixUp and CutMix) or `"binary"` (float32 of shape
            `(1,)`, for `binary_crossentropy`; two classes only). Defaults
            to `"int"`.
        shuffle: whether the training split is shuffled every epoch.
            The validation split is never shuffled. Defaults to True.
        cache: `"auto"` (in memory when the decoded images take at most a
            quarter of the available memory), True (in memory), False, or
            a file path for `tf.data`'s file cache. Defaults to `"auto"`.
        augment: None, a preset name of `augmentation` or a layer, applied to
            training batches only. Presets that mix labels (`"mixup"`,
            `"cutmix"`) need `label_mode="categorical"`. Defaults to None.
        interpolation: resize method, as `tf.image.resize`. Defaults to
            `"bilinear"`.
        verify: whether to scan the files first. With False, an unreadable
            file stops training with TensorFlow's error. Defaults to True.
        quarantine: None, or a folder outside `path` to move unreadable
            image files to (see `verify_images`). Defaults to None.
        scan_cache: the `cache` argument of `verify_images`. Defaults to True.
        labels: `"inferred"` (from the class folders) or None: read every
            image under `path`, flat or in subfolders, without labels (the
            unlabelled data of `FixMatch`, or images to predict); the
            datasets then hold image batches only, and `info.class_names`
            is empty. Defaults to `"inferred"`.
        max_pixels: images with more pixels are skipped before decoding
            (see `verify_images`); None for no limit. Defaults to 89,478,485.

    Returns:
        `(train, val, info)`: batched datasets of `(images, labels)` (`val`
        is None without `validation_split`) and a `FolderInfo` with
        `class_names`, `counts`, `skipped` and the file lists.

    Example:

    >>> import tempfile
    >>> from kerasrecipes.data import make_demo_dataset
    >>> folder = make_demo_dataset(tempfile.mkdtemp(), num_images=20, image_size=32)
    >>> train, val, info = image_folder(folder, image_size=(32, 32), batch_size=8,
    ...                                 validation_split=0.2, scan_cache=False)
    >>> info.class_names, info.counts, info.val_counts
    (['ellipse', 'pentagon'], {'ellipse': 8, 'pentagon': 8}, {'ellipse': 2, 'pentagon': 2})
    >>> images, labels = next(iter(train))
    >>> images.shape, images.dtype.name, labels.shape
    (TensorShape([8, 32, 32, 3]), 'float32', TensorShape([8]))
    """
    height, width = _check_image_size(image_size)
    _check_arguments(labels, label_mode, batch_size, validation_split, augment)
    if labels is None:
        class_names, files_per_class, skipped, ignored = [], *_unlabelled_files(path)
    else:
        class_names, files_per_class, stray, skipped, ignored = _list_classes(path)
        if label_mode == "binary" and len(class_names) != 2:
            raise ValueError(
                f"label_mode='binary' needs exactly 2 classes; {path} has {len(class_names)}: "
                f"{class_names}. Use label_mode='int' or 'categorical'."
            )
        skipped += [(f, "not in a class folder") for f in stray]
    scan = dict(cache=scan_cache, quarantine=quarantine, max_pixels=max_pixels)
    files_per_class, skipped = _readable(path, files_per_class, skipped, verify, scan)
    for name, files in zip(class_names or [None], files_per_class):
        if not files:
            raise ValueError(
                f"{'Class folder ' + os.path.join(path, name) if name else 'Folder ' + path} has "
                "no readable images"
                + (" (every file in it was skipped; see the log)" if verify else "")
                + ". Add images to it or remove the folder."
            )
    train_paths, train_labels, val_paths, val_labels = _split(
        files_per_class, validation_split, seed, path
    )
    if class_names:
        _warn_small_classes(path, class_names, train_labels, val_labels, validation_split)

    num_images = len(train_paths) + len(val_paths)
    decoded_bytes = num_images * height * width * 3
    use_cache = (
        cache
        if not isinstance(cache, str) or cache != "auto"
        else (decoded_bytes <= _AUTO_CACHE_MEMORY_SHARE * _available_memory())
    )
    info = FolderInfo(
        class_names=class_names,
        counts=_count(train_labels, class_names),
        val_counts=_count(val_labels, class_names) if validation_split is not None else {},
        skipped=sorted(skipped),
        train_paths=train_paths,
        train_labels=np.asarray(train_labels, "int32"),
        val_paths=val_paths,
        val_labels=np.asarray(val_labels, "int32"),
        cached=bool(use_cache),
        ignored=ignored,
    )

    make = dict(
        image_size=(height, width),
        batch_size=batch_size,
        label_mode=label_mode if labels is not None else None,
        num_classes=len(class_names),
        interpolation=interpolation,
        seed=seed,
    )
    train = _make_dataset(
        train_paths,
        train_labels,
        shuffle=shuffle,
        augment=augment,
        cache=_cache_argument(use_cache, "train"),
        **make,
    )
    val = None
    if validation_split is not None:
        val = _make_dataset(
            val_paths,
            val_labels,
            shuffle=False,
            augment=None,
            cache=_cache_argument(use_cache, "val"),
            **make,
        )
    return train, val, info


def _check_arguments(labels, label_mode, batch_size, validation_split, augment):
    if labels not in ("inferred", None):
        raise ValueError(
            f"labels must be 'inferred' (from the class folders) or None (no labels). "
            f"Received: labels={labels!r}"
        )
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}. Received: {label_mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be None or in (0, 1). Received: {validation_split!r}"
        )
    if labels is None and augment in ("mixup", "cutmix"):
        raise ValueError(
            f"augment={augment!r} mixes labels, and labels=None reads images without labels. "
            "Use an image-only preset (basic, cifar, randaugment)."
        )


def _unlabelled_files(path):
    """`([files], skipped, ignored)` of every image under `path`, flat or nested, as one group."""
    path = _check_folder(path)
    walk = walk_images(path)
    if not walk.files and not walk.skipped:
        raise ValueError(f"Data folder {path} has no files. Add images to it.")
    return [walk.files], walk.skipped, walk.ignored


def _readable(path, files_per_class, skipped, verify, scan):
    """The files of each class that the scan passes, and all skipped entries.

    The entries the walk skipped (links, FIFOs, odd names, stray files) are
    logged here; `verify_images` logs the files it could not decode.
    """
    if skipped:
        logger.warning(
            "Skipped %d entries under %s before reading any image:\n%s",
            len(skipped),
            path,
            "\n".join(f"  {os.path.relpath(f, path)}: {reason}" for f, reason in skipped[:20]),
        )
    if not verify:
        return files_per_class, skipped
    all_files = [f for files in files_per_class for f in files]
    report = verify_images(path, files=all_files, **scan)
    bad = {f for f, _ in report.skipped}
    files_per_class = [[f for f in files if f not in bad] for files in files_per_class]
    return files_per_class, skipped + report.skipped


def _split(files_per_class, validation_split, seed, path):
    """Stratified split: `(train paths, train labels, val paths, val labels)`."""
    rng = np.random.default_rng(seed)
    train_paths, train_labels, val_paths, val_labels = [], [], [], []
    for label, files in enumerate(files_per_class):
        files = list(files)
        rng.shuffle(files)
        num_val = 0
        if validation_split is not None:
            num_val = min(int(round(len(files) * validation_split)), len(files) - 1)
        # Sorted again within each split, so an unshuffled dataset lists files as keras does.
        val_paths += sorted(files[:num_val])
        val_labels += [label] * num_val
        train_paths += sorted(files[num_val:])
        train_labels += [label] * (len(files) - num_val)
    if validation_split is not None and not val_paths:
        raise ValueError(
            f"validation_split={validation_split} leaves no validation images in {path} "
            f"({len(train_paths)} images). Use a larger split or add images."
        )
    return train_paths, train_labels, val_paths, val_labels


def _warn_small_classes(path, class_names, train_labels, val_labels, validation_split):
    """Warns about classes with fewer than 2 images in a split: their metrics mean little."""
    splits = {"training": _count(train_labels, class_names)}
    if validation_split is not None:
        splits["validation"] = _count(val_labels, class_names)
    small = [
        f"{name!r} ({count} {split})"
        for split, counts in splits.items()
        for name, count in counts.items()
        if count < 2
    ]
    if small:
        logger.warning(
            "Classes of %s with fewer than 2 images in a split: %s. Their accuracy and recall "
            "rest on one image or none; add images to these classes.",
            path,
            ", ".join(small),
        )


def read_image(path, image_size, interpolation="bilinear", crop_to_aspect_ratio=False):
    """The training pipeline's image: the file decoded to RGB and resized, float32 in [0, 255].

    `image_folder` and the classifier's `predict_images` and `evaluate` read
    files through it, so a model sees its test images as it saw its
    training images. `crop_to_aspect_ratio` first takes the largest central
    crop of `image_size`'s aspect ratio, as `keras.layers.Resizing` does (a
    classifier that evaluates on a central crop, e.g. a timm checkpoint's).
    """
    image = decode_rgb(tf.io.read_file(path))
    if crop_to_aspect_ratio:
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        target = tf.constant(image_size, tf.float32)
        scale = tf.reduce_min(shape / target)
        crop = tf.cast(tf.round(target * scale), tf.int32)
        offset = (tf.shape(image)[:2] - crop) // 2
        image = image[offset[0] : offset[0] + crop[0], offset[1] : offset[1] + crop[1]]
    return tf.image.resize(image, image_size, method=interpolation)


def _check_image_size(image_size):
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
        raise ValueError(
            f"image_size must be (height, width) of positive ints. Received: {image_size!r}"
        )
    return tuple(image_size)


def _check_folder(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Data folder {path} does not exist. Pass a folder with one subfolder per class, "
            "e.g. PetImages/Cat/*.jpg and PetImages/Dog/*.jpg."
        )
    if not os.path.isdir(path):
        raise NotADirectoryError(
            f"Data path {path} is a file; pass the folder that holds the class folders."
        )
    return path


def class_folders(path):
    """`(class names, files directly in path, skipped, ignored)` of a folder of class folders.

    Hidden entries (`.git`, `.ipynb_checkpoints`) are ignored; entries whose
    names are not UTF-8 are skipped.
    """
    class_names, stray, skipped, ignored = [], [], [], []
    for name in sorted(os.listdir(path)):
        full = os.path.abspath(os.path.join(path, name))
        if name.startswith("."):
            ignored.append(full)
        elif not is_utf8(name):
            skipped.append((shown_path(full), "name is not valid UTF-8; rename it"))
        elif os.path.isdir(full):
            class_names.append(name)
        else:
            stray.append(full)
    return class_names, stray, skipped, ignored


def walk_classes(path, class_names):
    """The `Walk` of each class folder; a file reached under two classes is an error."""
    seen_files, owner, walks = {}, {}, []
    for name in class_names:
        walk = walk_images(os.path.join(path, name), seen_files)
        for file, first in walk.duplicates:
            if owner.get(first, name) != name:
                raise ValueError(
                    f"The same image is in two classes: {first} and {file} are one file "
                    f"(a link or hard link), under class {owner[first]!r} and class {name!r}. "
                    "Its label is ambiguous: remove one of the two paths."
                )
        owner.update((file, name) for file in walk.files)
        walks.append(walk)
    return walks


def _list_classes(path):
    """Class names, the files of each class (sorted), files outside any class folder, skipped
    entries and ignored (hidden) ones."""
    path = _check_folder(path)
    class_names, stray, skipped, ignored = class_folders(path)
    if not class_names:
        raise ValueError(
            f"Data folder {path} has no class folders"
            + (f" ({len(stray)} files directly in it)" if stray else " (it is empty)")
            + ". Put each class's images in its own subfolder: "
            f"{path}/<class name>/<image>.jpg. For images without labels, pass labels=None."
        )
    if len(class_names) == 1:
        raise ValueError(
            f"Data folder {path} has one class folder ({class_names[0]!r}); classification "
            "needs at least two. Add a folder per class."
        )
    walks = walk_classes(path, class_names)
    files_per_class = [walk.files for walk in walks]
    for walk in walks:
        skipped += walk.skipped
        ignored += walk.ignored
    if not any(files_per_class):
        raise ValueError(
            f"Data folder {path} has no images: its class folders {class_names} are all empty."
        )
    for name, files in zip(class_names, files_per_class):
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(path, name)} is empty. Add its images or remove it."
            )
    return class_names, files_per_class, stray, skipped, ignored


def _count(labels, class_names):
    counts = np.bincount(np.asarray(labels, "int64"), minlength=len(class_names))
    return {name: int(c) for name, c in zip(class_names, counts)}


def _available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _cache_argument(cache, split):
    if cache is True:
        return ""
    if not cache:
        return None
    return f"{os.fspath(cache)}.{split}"


def _make_dataset(
    paths,
    labels,
    *,
    image_size,
    batch_size,
    label_mode,
    num_classes,
    interpolation,
    seed,
    shuffle,
    augment,
    cache,
):
    def load(path, *label):
        image = read_image(path, image_size, interpolation)
        if cache is not None:
            # Cached as uint8, a quarter of the memory of float32. The two conversions cost
            # about 6% more work in the first epoch (benchmarks/input_pipeline.py).
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        image.set_shape((*image_size, 3))
        return (image, *label)

    def to_model_input(images, *labels):
        if images.dtype != tf.float32:
            images = tf.cast(images, tf.float32)
        if label_mode is None:  # labels=None: image batches only
            return images
        (labels,) = labels
        if label_mode == "categorical":
            labels = tf.one_hot(labels, num_classes)
        elif label_mode == "binary":
            labels = tf.cast(labels, tf.float32)[:, None]
        return images, labels

    elements = tf.constant(paths, tf.string)
    if label_mode is not None:
        elements = (elements, tf.constant(labels, tf.int32))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle and cache is None:
        # Without a cache, shuffle the paths: a full shuffle that costs no image memory.
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is not None:
        dataset = dataset.cache(cache)
        if shuffle:
            # The buffer holds references to the cached tensors, not copies.
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        dataset = augment_batches(dataset, augment, image_size=image_size, seed=seed)
    return dataset.prefetch(tf.data.AUTOTUNE)
