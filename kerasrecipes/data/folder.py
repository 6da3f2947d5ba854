"""`image_folder`: a `tf.data` pipeline from a folder of class folders."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from kerasrecipes.data.augment import augment as augment_batches
from kerasrecipes.data.verify import decode_rgb, logger, verify_images

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
):
    """Reads a folder of class folders into batched `tf.data` datasets.

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
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}. Received: {label_mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be None or in (0, 1). Received: {validation_split!r}"
        )

    class_names, files_per_class, stray = _list_classes(path)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(
            f"label_mode='binary' needs exactly 2 classes; {path} has {len(class_names)}: "
            f"{class_names}. Use label_mode='int' or 'categorical'."
        )
    all_files = [f for files in files_per_class for f in files]
    skipped = [(f, "not in a class folder") for f in stray]
    if verify:
        report = verify_images(path, files=all_files, cache=scan_cache, quarantine=quarantine)
        bad = {f for f, _ in report.skipped}
        files_per_class = [
            [f for f in files if os.path.abspath(f) not in bad] for files in files_per_class
        ]
        skipped = sorted(skipped + report.skipped)
    elif stray:
        logger.warning(
            "Skipped %d files under %s that are not in a class folder: %s",
            len(stray),
            path,
            ", ".join(stray[:5]),
        )
    for name, files in zip(class_names, files_per_class):
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(path, name)} has no readable images"
                + (" (every file in it was skipped; see the log)" if verify else "")
                + ". Add images to it or remove the folder."
            )

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
        skipped=skipped,
        train_paths=train_paths,
        train_labels=np.asarray(train_labels, "int32"),
        val_paths=val_paths,
        val_labels=np.asarray(val_labels, "int32"),
        cached=bool(use_cache),
    )

    make = dict(
        image_size=(height, width),
        batch_size=batch_size,
        label_mode=label_mode,
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


def read_image(path, image_size, interpolation="bilinear"):
    """The training pipeline's image: the file decoded to RGB and resized, float32 in [0, 255].

    `image_folder` and the classifier's `predict_images` and `evaluate` read
    files through it, so a model sees its test images as it saw its
    training images.
    """
    image = decode_rgb(tf.io.read_file(path))
    return tf.image.resize(image, image_size, method=interpolation)


def _check_image_size(image_size):
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
        raise ValueError(
            f"image_size must be (height, width) of positive ints. Received: {image_size!r}"
        )
    return tuple(image_size)


def _list_classes(path):
    """Class names, the files of each class (sorted), and files outside any class folder."""
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
    entries = sorted(os.listdir(path))
    class_names = [e for e in entries if os.path.isdir(os.path.join(path, e))]
    stray = [os.path.abspath(os.path.join(path, e)) for e in entries if e not in class_names]
    if not class_names:
        raise ValueError(
            f"Data folder {path} has no class folders"
            + (f" ({len(stray)} files directly in it)" if stray else " (it is empty)")
            + ". Put each class's images in its own subfolder: "
            f"{path}/<class name>/<image>.jpg."
        )
    if len(class_names) == 1:
        raise ValueError(
            f"Data folder {path} has one class folder ({class_names[0]!r}); classification "
            "needs at least two. Add a folder per class."
        )
    files_per_class = []
    for name in class_names:
        files = []
        for root, dirs, names in os.walk(os.path.join(path, name), followlinks=True):
            dirs.sort()
            files.extend(os.path.abspath(os.path.join(root, n)) for n in sorted(names))
        files_per_class.append(files)
    if not any(files_per_class):
        raise ValueError(
            f"Data folder {path} has no images: its class folders {class_names} are all empty."
        )
    for name, files in zip(class_names, files_per_class):
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(path, name)} is empty. Add its images or remove it."
            )
    return class_names, files_per_class, stray


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
    def load(path, label):
        image = read_image(path, image_size, interpolation)
        if cache is not None:
            # Cached as uint8, a quarter of the memory of float32. The two conversions cost
            # about 6% more work in the first epoch (benchmarks/input_pipeline.py).
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        image.set_shape((*image_size, 3))
        return image, label

    def to_model_input(images, labels):
        if images.dtype != tf.float32:
            images = tf.cast(images, tf.float32)
        if label_mode == "categorical":
            labels = tf.one_hot(labels, num_classes)
        elif label_mode == "binary":
            labels = tf.cast(labels, tf.float32)[:, None]
        return images, labels

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    )
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
