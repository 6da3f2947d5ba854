"""Built-in demo data, generated on the fly so every command runs offline.

`demo_images` returns CIFAR-shaped arrays of stripe images; `make_demo_dataset`
writes JPEG class folders of shapes (the cats-vs-dogs layout), a two-class
target task and a ten-class source task to pre-train on, optionally with a
few unreadable files.
"""

import io
import os

import numpy as np

from kerasrecipes.data.scenes import make_scenes
from kerasrecipes.data.shapes import SHAPES, shape_area


def demo_images(num_images=2000, image_size=32, num_classes=10, seed=0):
    """Generates a CIFAR-shaped classification set of stripe images.

    Class `k` is a sinusoidal grating, horizontal for even `k` and vertical
    for odd `k`, with `1.5 + k // 2` cycles per image (+-0.25), a random
    phase, colour tint and Gaussian noise. The label is carried by the
    stripes' direction and frequency only, which survive the usual
    augmentation (random crops, horizontal flips); a linear classifier on
    pixels cannot solve it, a small CNN can.

    Args:
        num_images: int, number of images. Defaults to 2000.
        image_size: int, height and width. Defaults to 32.
        num_classes: int >= 2, number of classes (two directions times
            `ceil(num_classes / 2)` frequencies); the highest frequency must
            stay below the Nyquist limit of `image_size / 2` cycles.
            Defaults to 10.
        seed: int, seed of the generator: the same seed gives the same data.
            Defaults to 0.

    Returns:
        `(images, labels)`: uint8 array of shape
        `(num_images, image_size, image_size, 3)` and int32 labels, with
        classes as balanced as `num_images` allows.

    Example:

    >>> images, labels = demo_images(num_images=20, image_size=16)
    >>> images.shape, images.dtype, labels.shape
    ((20, 16, 16, 3), dtype('uint8'), (20,))
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")
    if num_images < 1 or image_size < 4:
        raise ValueError(
            "demo_images needs num_images >= 1 and image_size >= 4. "
            f"Received: num_images={num_images}, image_size={image_size}"
        )
    highest_cycles = 1.5 + (num_classes - 1) // 2 + 0.25
    if highest_cycles >= image_size / 2:
        raise ValueError(
            f"demo_images: {num_classes} classes need up to {highest_cycles} cycles per image, "
            f"more than image_size={image_size} pixels can show (< {image_size / 2}). "
            "Use fewer classes or a larger image_size."
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % num_classes).astype("int32")
    angles = np.where(labels % 2 == 0, np.pi / 2, 0.0)
    cycles = 1.5 + labels // 2 + rng.uniform(-0.25, 0.25, num_images)
    phases = rng.uniform(0.0, 2 * np.pi, num_images)
    coords = np.linspace(-0.5, 0.5, image_size, dtype="float32")
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    along = xx[None] * np.cos(angles)[:, None, None] + yy[None] * np.sin(angles)[:, None, None]
    stripes = np.sin(2 * np.pi * cycles[:, None, None] * along + phases[:, None, None])
    tint = rng.uniform(0.3, 1.0, (num_images, 1, 1, 3))
    images = 0.5 + 0.4 * stripes[..., None] * tint
    images += rng.normal(0.0, 0.1, images.shape)
    images = np.clip(images * 255.0, 0, 255).astype("uint8")
    return images, labels


# Each task is a table of class names; a shape is a signed-distance function drawn by `_render`.
DEMO_TASKS = {
    "target": ("ellipse", "pentagon"),
    "source": (
        "disk",
        "ring",
        "square",
        "frame",
        "triangle",
        "hexagon",
        "star",
        "cross",
        "bar",
        "crescent",
    ),
}
DEMO_SIZES = {"target": 400, "source": 3000}
# The tasks whose demo is a set of scenes with masks and boxes (`kerasrecipes.data.scenes`).
SCENE_TASKS = ("segmentation", "detection")


def _render(shape, size, rng):
    """One RGB uint8 image: `shape` at a random place, scale, angle and colour on a noisy
    gradient background."""
    coords = np.linspace(-1.0, 1.0, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # Every shape covers the same area on average, so the image's brightness says nothing
    # about the class; the extent is capped so the shape stays inside the image.
    scale = min(rng.uniform(0.3, 0.55) * np.sqrt(shape_area("disk") / shape_area(shape)), 0.8)
    cx, cy = rng.uniform(-0.95 + scale, 0.95 - scale, 2)
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    local_x = ((xx - cx) * cos + (yy - cy) * sin) / scale
    local_y = (-(xx - cx) * sin + (yy - cy) * cos) / scale
    # Distance in pixels, so the edge is anti-aliased over about one pixel at any scale.
    distance = SHAPES[shape](local_x, local_y) * scale * size / 2
    mask = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
    # Random hues, but the shape is always the lighter one: with both polarities a small CNN
    # needed several times more data and epochs to learn the shapes.
    background = rng.uniform(0.0, 0.45, 3)
    foreground = np.clip(background + rng.uniform(0.35, 0.6, 3), 0, 1)
    gradient = rng.uniform(-0.25, 0.25, 3) * (xx[..., None] * np.cos(angle) + yy[..., None])
    image = mask * foreground + (1 - mask) * np.clip(background + gradient, 0, 1)
    image += rng.normal(0, rng.uniform(0.02, 0.08), image.shape)
    return np.clip(image * 255, 0, 255).astype("uint8")


def make_demo_dataset(
    path, task="target", num_images=None, image_size=None, bad_files=False, seed=0
):
    """Writes a folder of JPEG class folders of generated shapes, for demos and tests offline.

    The layout is the one `image_folder` and
    `keras.utils.image_dataset_from_directory` read (`path/<class>/*.jpg`).
    Each image is one shape at a random position, scale, angle and colour,
    on a random gradient background with Gaussian noise, so neither a colour
    nor a pixel position gives the class away and a linear model on pixels
    does not solve it (a test shows it), while a small CNN does.

    - `task="target"`: two classes, `ellipse` and `pentagon` (400 images by
      default), the small task to fine-tune on.
    - `task="source"`: ten classes (`disk`, `ring`, `square`, `frame`,
      `triangle`, `hexagon`, `star`, `cross`, `bar`, `crescent`; 3,000
      images by default), a related task to pre-train a backbone on.
    - `task="segmentation"` or `"detection"`: 600 scenes (by default, 96 px)
      of one to four shapes of three classes (`ellipse`, `pentagon`,
      `star`) in `images/`, with VOC-style palette masks in `masks/`,
      `classes.txt` and COCO boxes in `annotations.json` (both tasks write
      the same set; see `kerasrecipes.data.scenes`). `bad_files` does not apply.

    Args:
        path: folder to write into; created if missing. When it already holds
            this dataset (same class folders, same number of files), nothing
            is written and the path is returned.
        task: `"target"` or `"source"`. Defaults to `"target"`.
        num_images: total number of images, split evenly between the
            classes. Defaults to 400 for the target task, 3,000 for the
            source task.
        image_size: height and width in pixels. Defaults to 64 (96 for scenes).
        bad_files: if True, also writes files a pipeline must cope with: an
            empty file, a truncated JPEG, a text file named `.jpg` and a
            TIFF (TensorFlow cannot decode it), which `image_folder` skips
            and reports; and a grayscale JPEG, an RGBA PNG and a palette PNG
            of the class's shape, which it reads as RGB. Defaults to False.
        seed: seed of the generator: the same arguments write the same
            bytes. Defaults to 0.

    Returns:
        `path`, as a string.

    Example:

    >>> import tempfile, os
    >>> folder = make_demo_dataset(tempfile.mkdtemp(), num_images=10, image_size=32)
    >>> sorted(os.listdir(folder)), len(os.listdir(os.path.join(folder, "ellipse")))
    (['ellipse', 'pentagon'], 5)
    """
    if task not in DEMO_TASKS:
        if task not in SCENE_TASKS:
            raise ValueError(
                f"task must be one of {sorted(DEMO_TASKS) + list(SCENE_TASKS)}. "
                f"Received: task={task!r}"
            )
        if bad_files:
            raise ValueError(f"bad_files applies to the class-folder tasks, not {task!r}.")
        return make_scenes(
            path, num_images=num_images or 600, image_size=image_size or 96, seed=seed
        )
    image_size = image_size or 64
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16. Received: image_size={image_size}")
    class_names = DEMO_TASKS[task]
    num_images = DEMO_SIZES[task] if num_images is None else num_images
    if num_images < len(class_names):
        raise ValueError(
            f"num_images must be at least the number of classes ({len(class_names)}) of task "
            f"{task!r}. Received: num_images={num_images}"
        )
    path = os.fspath(path)
    per_class = [
        num_images // len(class_names) + (i < num_images % len(class_names))
        for i in range(len(class_names))
    ]
    expected = {
        name: count + (_NUM_BAD_FILES_PER_CLASS[i % 2] if bad_files else 0)
        for i, (name, count) in enumerate(zip(class_names, per_class))
    }
    if os.path.isdir(path) and os.listdir(path):
        found = {
            name: len(os.listdir(os.path.join(path, name)))
            for name in os.listdir(path)
            if os.path.isdir(os.path.join(path, name))
        }
        if found == expected:
            return path
        raise FileExistsError(
            f"make_demo_dataset: {path} is not empty and does not hold the {task!r} demo "
            f"dataset with these arguments. Pass an empty or new folder."
        )

    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for name, count in zip(class_names, per_class):
        os.makedirs(os.path.join(path, name), exist_ok=True)
        for index in range(count):
            image = _render(name, image_size, rng)
            contents = tf.io.encode_jpeg(image, quality=90).numpy()
            with open(os.path.join(path, name, f"{name}_{index:05d}.jpg"), "wb") as f:
                f.write(contents)
    if bad_files:
        _write_bad_files(path, class_names, image_size, rng)
    return path


# Files `_write_bad_files` adds to the first and second class folders.
_NUM_BAD_FILES_PER_CLASS = (4, 3)


def _write_bad_files(path, class_names, image_size, rng):
    import tensorflow as tf
    from PIL import Image

    def write(name, file, contents):
        with open(os.path.join(path, name, file), "wb") as f:
            f.write(contents)

    def pil_bytes(image, file_format):
        buffer = io.BytesIO()
        image.save(buffer, format=file_format)
        return buffer.getvalue()

    first, second = class_names[0], class_names[1 % len(class_names)]
    jpeg = tf.io.encode_jpeg(_render(first, image_size, rng), quality=90).numpy()
    write(first, "bad_empty.jpg", b"")
    write(first, "bad_truncated.jpg", jpeg[: len(jpeg) * 3 // 5])
    gray = _render(first, image_size, rng).mean(axis=-1, keepdims=True).astype("uint8")
    write(first, "odd_grayscale.jpg", tf.io.encode_jpeg(gray).numpy())
    write(
        first,
        "odd_palette.png",
        pil_bytes(Image.fromarray(_render(first, image_size, rng)).convert("P"), "PNG"),
    )
    write(second, "bad_not_an_image.jpg", b"This is a text file with an image's name.\n")
    write(
        second, "bad_scan.tif", pil_bytes(Image.fromarray(_render(second, image_size, rng)), "TIFF")
    )
    rgba = np.concatenate(
        [_render(second, image_size, rng), np.full((image_size, image_size, 1), 255, "uint8")],
        axis=-1,
    )
    write(second, "odd_rgba.png", tf.io.encode_png(rgba).numpy())
