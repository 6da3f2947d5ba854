"""Built-in demo data, generated on the fly so every command runs offline."""

import numpy as np


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
