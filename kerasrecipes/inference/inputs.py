"""What `predict_images` and `evaluate` accept, turned into batches of [0, 255] float32 images.

Files go through the training pipeline: the same scan (`verify_images`: a
file that training would skip is skipped here, with the same reason) and
the same decode and resize (`read_image`), batched by `tf.data` with
parallel decoding.
"""

import functools
import os

import numpy as np
import tensorflow as tf

from kerasrecipes.data.folder import read_image
from kerasrecipes.data.verify import verify_images, walk_images


def image_batches(images, image_size, batch_size=32, crop_to_aspect_ratio=False):
    """`(batches, paths, skipped, single)` for any input `predict_images` takes.

    `paths` is None for arrays and PIL images; `single` is whether the input
    was one image (a file path, an `(h, w, 3)` array, a PIL image). Files
    are read at `image_size`, after a central crop to its aspect ratio with
    `crop_to_aspect_ratio`.
    """
    read = functools.partial(file_batches, crop_to_aspect_ratio=crop_to_aspect_ratio)
    if isinstance(images, (str, os.PathLike)):
        path = os.fspath(images)
        if os.path.isdir(path):
            walk = walk_images(path)
            batches, paths, skipped = read(walk.files, image_size, batch_size, root=path)
            return batches, paths, sorted(skipped + walk.skipped), False
        return (*read([path], image_size, batch_size), True)
    if _is_pil(images):
        return [_pil_array(images, image_size)[None]], None, [], True
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("predict_images: got an empty list; give at least one image.")
        if all(isinstance(item, (str, os.PathLike)) for item in images):
            return (*read(images, image_size, batch_size), False)
        arrays = [
            _pil_array(item, image_size) if _is_pil(item) else _resized(item, image_size)
            for item in images
        ]
        return _chunks(np.stack(arrays), batch_size), None, [], False
    array = np.asarray(images)
    if array.ndim == 3 and array.shape[-1] == 3:
        return [array[None].astype("float32")], None, [], True
    if array.ndim == 4 and array.shape[-1] == 3:
        return _chunks(array, batch_size), None, [], False
    raise ValueError(
        "predict_images takes file paths, a folder, PIL images, or RGB arrays of shape "
        f"(height, width, 3) or (batch, height, width, 3) in [0, 255]. Received an array of "
        f"shape {array.shape}."
    )


def file_batches(files, image_size, batch_size, root=None, labels=None, crop_to_aspect_ratio=False):
    """`(batches, paths, skipped)`: the readable files, decoded and resized, in `tf.data` batches.

    With `labels` (one per file), the batches are `(images, labels)`; `crop_to_aspect_ratio`
    as in `read_image`.
    """
    files = [os.path.abspath(os.fspath(f)) for f in files]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(
            f"No such image file: {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + ". Give existing files or a folder."
        )
    valid, skipped = [], []
    if files:
        root = root or os.path.commonpath([os.path.dirname(f) for f in files])
        report = verify_images(root, files=files)
        valid, skipped = report.valid, report.skipped
    order = {f: i for i, f in enumerate(files)}
    valid.sort(key=order.get)

    def load(path, *label):
        image = read_image(path, image_size, crop_to_aspect_ratio=crop_to_aspect_ratio)
        return (image, *label) if label else image

    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(valid or [""], tf.string))
    else:
        by_file = dict(zip(files, labels))
        kept = [by_file[f] for f in valid]
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.constant(valid or [""], tf.string), tf.constant(kept or [0], tf.int32))
        )
    dataset = dataset.take(len(valid)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return dataset, valid, skipped


def _chunks(array, batch_size):
    array = np.asarray(array, "float32")
    return [array[start : start + batch_size] for start in range(0, len(array), batch_size)]


def _resized(image, image_size):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"predict_images: an image in the list has shape {image.shape}; expected "
            "(height, width, 3) RGB in [0, 255]."
        )
    resized = tf.image.resize(tf.constant(image, tf.float32), image_size, method="bilinear")
    return resized.numpy()


def _is_pil(item):
    return type(item).__module__.startswith("PIL.")


def _pil_array(image, image_size):
    return _resized(np.asarray(image.convert("RGB")), image_size)


def original_sizes(images, paths):
    """`(height, width)` of each image `image_batches(images, ...)` read, before resizing:
    from the files' headers for paths, from the arrays or PIL images otherwise."""
    from PIL import Image

    if paths is not None:
        sizes = []
        for path in paths:
            with Image.open(path) as image:
                sizes.append(image.size[::-1])
        return sizes
    if _is_pil(images):
        return [images.size[::-1]]
    if isinstance(images, (list, tuple)):
        return [item.size[::-1] if _is_pil(item) else np.shape(item)[:2] for item in images]
    array = np.asarray(images)
    return [array.shape[:2]] if array.ndim == 3 else [array.shape[1:3]] * len(array)


def output_names(paths, count, root=None):
    """A file name per prediction for writing its outputs: the input's path relative to `root`
    (or its name) with `.png` for its extension, made distinct; `image_<i>.png` for arrays."""
    if paths is None:
        return [f"image_{index}.png" for index in range(count)]
    if root is None:
        relative = [os.path.basename(path) for path in paths]
    else:
        relative = [os.path.relpath(path, root) for path in paths]
    names = [os.path.splitext(name)[0] + ".png" for name in relative]
    seen = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    # Two inputs with one stem (a.jpg, a.png) keep their extensions in the name.
    return [n if seen[n] == 1 else r + ".png" for n, r in zip(names, relative)]
