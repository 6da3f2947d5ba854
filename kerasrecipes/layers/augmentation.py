"""Random augmentation layers that draw their randomness per image, not per batch.

Keras' `RandomCrop` draws one crop position per call and `RandAugment` one
choice of operations per call, so when they run on batches (as in a
`tf.data` map after `batch`, or inside a model) every image of a batch gets
the same crop and the same operations: a much weaker regularizer than the
papers' per-image augmentation. The layers here draw everything per image,
use backend ops only (they run in `tf.data` on every Keras backend and in a
model on the GPU), and are seeded.
"""

import math

import keras

from kerasrecipes import _compat


class _PerImageLayer(_compat.DataLayer):
    """Shared parts: the seed generator and the `training=False` pass-through."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        images = self.backend.cast(images, self.compute_dtype)
        unbatched = len(images.shape) == 3
        if unbatched:
            images = self.backend.numpy.expand_dims(images, 0)
        images = self.augment(images, _compat.data_layer_seed(self))
        return images[0] if unbatched else images

    def augment(self, images, seed):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def _transforms(backend, x_scale, x_offset, y_scale, y_offset):
    """`affine_transform` rows mapping each output pixel to `offset + scale * position`."""
    zeros = backend.numpy.zeros_like(x_scale)
    return backend.numpy.stack(
        [x_scale, zeros, x_offset, zeros, y_scale, y_offset, zeros, zeros], axis=1
    )


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RandomResizedCrop(_PerImageLayer):
    """Crops a random area and aspect ratio of each image and resizes it back to the image size.

    The Inception crop (Szegedy et al. 2015, "Going deeper with
    convolutions", Sec. 6), sampled as torchvision's `RandomResizedCrop`:
    the crop covers a fraction of the image area drawn uniformly from
    `scale`, with an aspect ratio drawn log-uniformly from `ratio`; of 10
    tries per image the first that fits is used, else the whole image. The
    crop is resized back to the input size with bilinear interpolation.

    Why our own: Keras 3 has no such layer (`RandomZoom` keeps the image
    centred and does not draw the area), and keras-cv's
    `RandomCropAndResize` comes with a frozen library (keras-cv 0.9) and
    its dependencies.

    Args:
        scale: `(min, max)` fraction of the image area. Defaults to
            `(0.08, 1.0)`.
        ratio: `(min, max)` aspect ratio (width / height). Defaults to
            `(3/4, 4/3)`.
        seed: int or None. Defaults to None.

    Example:

    >>> import numpy as np
    >>> crop = RandomResizedCrop(scale=(0.25, 1.0), seed=0)
    >>> images = np.repeat(np.arange(64.0).reshape(1, 8, 8, 1), 4, axis=0).repeat(3, -1)
    >>> out = np.asarray(crop(images))
    >>> out.shape, len({o.tobytes() for o in out})
    ((4, 8, 8, 3), 4)
    """

    _TRIES = 10

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomResizedCrop: scale must be 0 < min <= max <= 1. Got {scale}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCrop: ratio must be 0 < min <= max. Got {ratio}.")
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)

    def augment(self, images, seed):
        np_, random = self.backend.numpy, self.backend.random
        shape = self.backend.core.shape(images)
        batch = shape[0]
        height = self.backend.cast(shape[1], "float32")
        width = self.backend.cast(shape[2], "float32")
        tries = (batch, self._TRIES)
        area = height * width * random.uniform(tries, *self.scale, seed=seed)
        log_ratio = random.uniform(tries, *map(math.log, self.ratio), seed=seed)
        crop_w = np_.sqrt(area * np_.exp(log_ratio))
        crop_h = np_.sqrt(area / np_.exp(log_ratio))
        fits = self.backend.cast(np_.logical_and(crop_w <= width, crop_h <= height), "int32")
        first = np_.expand_dims(np_.argmax(fits, axis=1), 1)
        found = np_.max(fits, axis=1) > 0
        crop_w = np_.where(found, np_.take_along_axis(crop_w, first, axis=1)[:, 0], width)
        crop_h = np_.where(found, np_.take_along_axis(crop_h, first, axis=1)[:, 0], height)
        left = random.uniform((batch,), 0, 1, seed=seed) * (width - crop_w)
        top = random.uniform((batch,), 0, 1, seed=seed) * (height - crop_h)
        # Pixel centres: input x = left + (output x + 0.5) * crop_w / width - 0.5.
        x_scale, y_scale = crop_w / width, crop_h / height
        transforms = _transforms(
            self.backend, x_scale, left + 0.5 * x_scale - 0.5, y_scale, top + 0.5 * y_scale - 0.5
        )
        return self.backend.image.affine_transform(
            images, transforms, interpolation="bilinear", fill_mode="nearest"
        )

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RandomPaddedCrop(_PerImageLayer):
    """Zero-pads each image by `padding` pixels and crops it back at a random whole-pixel offset.

    The CIFAR augmentation of He et al. 2015 ("Deep Residual Learning for
    Image Recognition", Sec. 4.2): "4 pixels are padded on each side, and a
    32x32 crop is randomly sampled from the padded image", drawn per image
    (Keras' `RandomCrop` draws one offset per batch). Done as an integer
    shift with zero fill, which is the same crop without materializing the
    padded batch.

    Args:
        padding: pixels of zero padding on each side. Defaults to 4.
        seed: int or None. Defaults to None.

    Example:

    >>> import numpy as np
    >>> shift = RandomPaddedCrop(padding=4, seed=0)
    >>> out = np.asarray(shift(np.ones((8, 32, 32, 3))))
    >>> out.shape, bool(((out == 0) | (out == 1)).all())
    ((8, 32, 32, 3), True)
    """

    def __init__(self, padding=4, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if int(padding) != padding or padding < 0:
            raise ValueError(f"RandomPaddedCrop: padding must be an int >= 0. Got {padding!r}.")
        self.padding = int(padding)

    def augment(self, images, seed):
        batch = self.backend.core.shape(images)[0]

        def offsets():
            drawn = self.backend.random.randint(
                (batch,), -self.padding, self.padding + 1, seed=seed
            )
            return self.backend.cast(drawn, "float32")

        ones = self.backend.numpy.ones((batch,), "float32")
        transforms = _transforms(self.backend, ones, offsets(), ones, offsets())
        return self.backend.image.affine_transform(
            images, transforms, interpolation="nearest", fill_mode="constant", fill_value=0
        )

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RandAugment(_PerImageLayer):
    """RandAugment with the operations drawn per image (Cubuk et al. 2020, "RandAugment").

    The operations, ranges and defaults of `keras.layers.RandAugment`
    (shear, translation, rotation, brightness, colour, contrast, sharpness,
    posterization, solarization, auto-contrast, equalization; `num_ops`
    of them in sequence, magnitude `factor`), made of the same Keras
    layers, but each image draws its own `num_ops` operations, as in the
    paper and in timm, where `keras.layers.RandAugment` applies one choice
    to the whole batch. Every operation runs on the whole batch in each
    round and each image keeps the output of its own choice, which is what
    `keras.layers.RandAugment` computes too, so per-image choice costs
    nothing more.

    Args:
        value_range: the range of pixel values. Defaults to `(0, 255)`.
        num_ops: operations applied to each image, in sequence. Defaults to 2.
        factor: magnitude, as `keras.layers.RandAugment`. Defaults to 0.5.
        interpolation: of the geometric operations. Defaults to `"bilinear"`.
        seed: int or None. Defaults to None.

    Example:

    >>> import numpy as np
    >>> randaugment = RandAugment(seed=0)
    >>> images = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).repeat(6, axis=0)
    >>> out = np.asarray(randaugment(images))
    >>> len({o.tobytes() for o in out}) > 1
    True
    """

    def __init__(
        self,
        value_range=(0, 255),
        num_ops=2,
        factor=0.5,
        interpolation="bilinear",
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.value_range = tuple(value_range)
        self.num_ops = int(num_ops)
        self.factor = factor
        self.interpolation = interpolation
        self.operations = _randaugment_operations(self.value_range, factor, interpolation, seed)

    def build(self, input_shape):
        for operation in self.operations:
            operation.build(input_shape)
        self.built = True

    def augment(self, images, seed):
        batch = self.backend.core.shape(images)[0]
        choices = self.backend.random.randint(
            (batch, self.num_ops), 0, len(self.operations), seed=seed
        )
        for round_ in range(self.num_ops):
            chosen = self.backend.numpy.reshape(choices[:, round_], (-1, 1, 1, 1))
            result = images
            for index, operation in enumerate(self.operations):
                output = self.backend.cast(operation(images, training=True), self.compute_dtype)
                result = self.backend.numpy.where(chosen == index, output, result)
            images = result
        return images

    def get_config(self):
        return {
            **super().get_config(),
            "value_range": self.value_range,
            "num_ops": self.num_ops,
            "factor": self.factor,
            "interpolation": self.interpolation,
        }


def _randaugment_operations(value_range, factor, interpolation, seed):
    """The operations of `keras.layers.RandAugment`, made with the arguments it gives them."""
    layers = keras.layers
    # RandAugment's own factor handling (bounds (0, 1)): a number f becomes the range (0, f).
    factor = tuple(sorted(factor)) if isinstance(factor, (tuple, list)) else (0.0, float(factor))

    def seeded(offset):
        return None if seed is None else seed + offset

    color = dict(value_range=value_range)
    return [
        layers.RandomShear(factor, factor, interpolation=interpolation, seed=seeded(1)),
        layers.RandomTranslation(factor, factor, interpolation=interpolation, seed=seeded(2)),
        layers.RandomRotation(factor, interpolation=interpolation, seed=seeded(3)),
        layers.RandomBrightness(factor, seed=seeded(4), **color),
        layers.RandomColorDegeneration(factor, seed=seeded(5), **color),
        layers.RandomContrast(factor, seed=seeded(6), **color),
        layers.RandomSharpness(factor, seed=seeded(7), **color),
        layers.RandomPosterization(max(1, int(8 * factor[1])), seed=seeded(8), **color),
        layers.Solarization(factor, factor, seed=seeded(9), **color),
        layers.AutoContrast(**color),
        layers.Equalization(**color),
    ]
