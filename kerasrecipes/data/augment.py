"""Augmentation presets, usable in the model (on the GPU) and in a `tf.data` pipeline."""

import keras

from kerasrecipes.layers.augmentation import RandAugment, RandomPaddedCrop, RandomResizedCrop

# The augmentation vocabulary: one list, one meaning per name, for every task. A name means the
# same kind of change wherever it is used; for masks and boxes, which must move with the image,
# "basic" draws its crop as a shift and a zoom (Keras' box- and mask-aware layers) instead of a
# `RandomResizedCrop` (see `kerasrecipes.tasks.dense.augmentation`).
PRESETS = ("none", "flip", "basic", "cifar", "randaugment", "mixup", "cutmix")
# The presets that move masks and boxes with their image (segmentation and detection).
MASK_AND_BOX_PRESETS = ("none", "flip", "basic")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class Augmentation(keras.layers.Layer):
    """A training-time augmentation preset; every image of a batch is augmented on its own.

    - `"none"`: nothing.
    - `"flip"`: a horizontal flip.
    - `"basic"`: Inception-style random resized crop of 25% to 100% of the
      area, aspect ratio 3/4 to 4/3, resized back to `image_size`
      (`RandomResizedCrop`), and a horizontal flip. The milder area range
      suits fine-tuning on small datasets, where an 8% crop often cuts the
      object out.
    - `"cifar"`: 4-pixel zero padding and a random crop back to
      `image_size` (`RandomPaddedCrop`), and a horizontal flip, as He et al.
      2015 (Sec. 4.2) train on CIFAR-10.
    - `"randaugment"`: a random resized crop of 8% to 100% (Szegedy et al.
      2015), a flip and `RandAugment` (2 operations, factor 0.5; Cubuk et
      al. 2020), the operations of `keras.layers.RandAugment` drawn per image.
    - `"mixup"`: `"basic"`, then `keras.layers.MixUp` (alpha 0.2;
      Zhang et al. 2018): each image draws its own weight and partner.
    - `"cutmix"`: `"basic"`, then `keras.layers.CutMix` (Yun et al. 2019,
      area ratio ~ Beta(1, 1) as in the paper): each image draws its own
      box and partner.

    Crops, flips, RandAugment's operations and magnitudes, and the mixing
    partners are all drawn per image (Keras' `RandomCrop` and `RandAugment`
    draw one choice per batch, so this package does not use them).

    Call it on images, on an `(images, labels)` tuple or on an
    `{"images", "labels"}` dict; it returns the same structure. The two mixing
    presets need the labels, one-hot (`image_folder(label_mode="categorical")`).
    With `training=False` it returns its input unchanged, so it can sit at the
    start of a model: it augments in `fit` and does nothing in `evaluate` and
    `predict`. In a `tf.data` pipeline, call it in `dataset.map` on batches
    (`image_folder(augment=...)` does). With a seed, two layers made alike
    give the same batches. For MixUp and CutMix inside the model, where a
    layer never sees labels, wrap the model in `AugmentedModel`.

    Args:
        preset: one of `"none"`, `"flip"`, `"basic"`, `"cifar"`, `"randaugment"`,
            `"mixup"`, `"cutmix"`. Defaults to `"basic"`.
        image_size: `(height, width)` of the images; the output has the same
            size. Required by every preset that crops (all but `"none"` and
            `"flip"`). Defaults to None.
        seed: int or None; seeds every random layer. Defaults to None.
        value_range: the range of pixel values, for RandAugment's colour
            operations. Defaults to `(0, 255)`.

    Example:

    >>> import numpy as np
    >>> augment = Augmentation("cifar", image_size=(32, 32), seed=0)
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    >>> tuple(augment(images, training=True).shape)
    (2, 32, 32, 3)
    >>> bool(np.array_equal(augment(images, training=False), images))
    True
    """

    def __init__(self, preset="basic", image_size=None, seed=None, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        if preset not in PRESETS:
            raise ValueError(f"Unknown augmentation preset {preset!r}. Choose one of {PRESETS}.")
        if preset not in ("none", "flip"):  # the others crop and resize back to the image size
            if image_size is None:
                raise ValueError(
                    f"Augmentation preset {preset!r} crops and resizes back, so it needs "
                    "image_size=(height, width) of the images."
                )
            image_size = tuple(int(s) for s in image_size)
        self.preset = preset
        self.image_size = image_size
        self.seed = seed
        self.value_range = tuple(value_range)
        self.image_layers = self._make_image_layers()
        self.mixer = None
        if preset == "mixup":
            self.mixer = keras.layers.MixUp(alpha=0.2, seed=self._layer_seed(10))
        elif preset == "cutmix":
            # factor=(1, 1) is the paper's lambda ~ Beta(1, 1); Keras' default (factor=1.0)
            # draws Beta's alpha from U(0, 1), so most images are left whole or fully replaced.
            self.mixer = keras.layers.CutMix(factor=(1.0, 1.0), seed=self._layer_seed(10))

    def _layer_seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def _make_image_layers(self):
        if self.preset == "none":
            return []
        flip = keras.layers.RandomFlip("horizontal", seed=self._layer_seed(1))
        if self.preset == "flip":
            return [flip]
        if self.preset == "cifar":
            return [RandomPaddedCrop(padding=4, seed=self._layer_seed(0)), flip]
        smallest_area = 0.08 if self.preset == "randaugment" else 0.25
        layers = [RandomResizedCrop(scale=(smallest_area, 1.0), seed=self._layer_seed(0)), flip]
        if self.preset == "randaugment":
            layers.append(RandAugment(value_range=self.value_range, seed=self._layer_seed(2)))
        return layers

    def build(self, input_shape):
        # The sublayers build on their first call; there is nothing else to create.
        self.built = True

    def call(self, inputs, training=True):
        if not training or self.preset == "none":
            return inputs
        if isinstance(inputs, dict):
            images, labels = inputs["images"], inputs.get("labels")
        elif isinstance(inputs, (tuple, list)):
            images, labels = inputs
        else:
            images, labels = inputs, None
        self._check_size(images)
        for layer in self.image_layers:
            images = layer(images, training=True)
        if self.mixer is not None:
            if labels is None or len(labels.shape) < 2:
                raise ValueError(
                    f"Augmentation preset {self.preset!r} mixes labels too, so it needs "
                    "(images, one-hot labels): use image_folder(label_mode='categorical') in "
                    "tf.data, or AugmentedModel(model, preset) in the model. Received labels: "
                    f"{None if labels is None else labels.shape}."
                )
            mixed = self.mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        if isinstance(inputs, dict):
            return {**inputs, "images": images, "labels": labels}
        if isinstance(inputs, (tuple, list)):
            return images, labels
        return images

    def _check_size(self, images):
        if self.image_size is None:
            return
        size = tuple(images.shape[1:3])
        if None not in size and size != self.image_size:
            raise ValueError(
                f"Augmentation({self.preset!r}) was made for image_size={self.image_size} and "
                f"received images of size {size}. Pass the images' own size."
            )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            preset=self.preset,
            image_size=self.image_size,
            seed=self.seed,
            value_range=self.value_range,
        )
        return config


def augmentation(preset="basic", image_size=None, seed=None, value_range=(0, 255)):
    """Returns the `Augmentation` layer of a preset; see `Augmentation` for the presets.

    Example:

    >>> augmentation("randaugment", image_size=(64, 64), seed=0).preset
    'randaugment'
    """
    return Augmentation(preset, image_size=image_size, seed=seed, value_range=value_range)


def augment(dataset, preset, image_size=None, seed=None):
    """Applies an augmentation to a batched `(images, labels)` dataset.

    One call per batch, in order, so a seeded preset gives the same batches
    every time the dataset is iterated from a fresh layer.

    Args:
        dataset: a batched `tf.data.Dataset` of `(images, labels)` or of images.
        preset: a preset name or an augmentation layer.
        image_size: the images' `(height, width)`; read from the dataset when
            None. Defaults to None.
        seed: int or None. Defaults to None.

    Returns:
        The augmented dataset.
    """
    labelled = isinstance(dataset.element_spec, tuple)
    if image_size is None:
        spec = dataset.element_spec[0] if labelled else dataset.element_spec
        image_size = tuple(spec.shape[1:3])
    layer = as_augmentation(preset, image_size, seed)
    if not labelled:  # image batches only (image_folder(labels=None))
        return dataset.map(lambda images: layer(images, training=True))
    return dataset.map(lambda images, labels: layer((images, labels), training=True))


def as_augmentation(augmentation, image_size, seed=None):
    """The layer itself, or the `Augmentation` of a preset name at `image_size`."""
    if isinstance(augmentation, str):
        return Augmentation(augmentation, image_size=image_size, seed=seed)
    return augmentation


@keras.saving.register_keras_serializable(package="kerasrecipes")
class AugmentedModel(keras.Model):
    """Trains `model` on augmented batches, the labels included; predicts with `model` as is.

    A layer inside a model sees only the images, which is enough for
    flips, crops and RandAugment but not for MixUp and CutMix, which mix the
    labels as well. This wrapper applies the augmentation to each training
    batch's `(images, labels)` at the start of the train step, on the
    device, then runs the usual Keras train step (timm and fastai mix
    batches the same way, in the training loop). `evaluate` and `predict`
    see the plain inputs. Backends: TensorFlow and PyTorch (the JAX train
    step is stateless, so put image-only presets inside the model there).

    Args:
        model: the Keras model to train.
        augmentation: an `Augmentation` layer or a preset name (the image
            size is read from `model.input_shape`).
        seed: seed of a preset given by name. Defaults to None.

    Example:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model = AugmentedModel(inner, "mixup", seed=0)
    >>> model.compile("sgd", "categorical_crossentropy")
    >>> model.predict(keras.ops.zeros((1, 8, 8, 3)), verbose=0).shape
    (1, 2)
    """

    def __init__(self, model, augmentation, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.augmentation = as_augmentation(augmentation, model.input_shape[1:3], seed)
        self.seed = seed

    def build(self, input_shape):
        # The wrapped model is built already (or builds on its first call).
        self.built = True

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def train_step(self, *args):
        # The JAX backend passes (state, data); TensorFlow and PyTorch pass (data,).
        *state, data = args
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, labels = self.augmentation((images, labels), training=True)
        data = keras.utils.pack_x_y_sample_weight(images, labels, sample_weight)
        return super().train_step(*state, data)

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.model),
            "augmentation": keras.saving.serialize_keras_object(self.augmentation),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        return cls(**config)
