"""The input scaling each family's ImageNet weights were trained with, as a layer."""

import keras
from keras import ops

# keras.applications' `preprocess_input` modes (keras/src/applications/imagenet_utils.py).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "unit", "none", "normalize")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images in [0, 255] to what a pretrained backbone expects.

    The modes of `keras.applications.imagenet_utils.preprocess_input`, plus two:

    * `"caffe"`: RGB to BGR, minus the ImageNet mean per channel (ResNet, VGG).
    * `"tf"`: scaled to [-1, 1] (MobileNetV2, InceptionV3).
    * `"torch"`: scaled to [0, 1], then standardized with ImageNet's mean and std.
    * `"unit"`: scaled to [0, 1].
    * `"none"`: unchanged (EfficientNet and ConvNeXt scale inside the model).
    * `"normalize"`: scaled to [0, 1], then standardized with the given
      `mean` and `std` (a timm checkpoint's other than ImageNet's, e.g. CLIP's).

    Why our own: keras.applications has these as functions only, and a
    `Lambda` layer around one cannot be loaded from a `.keras` file without
    `safe_mode=False`; `Rescaling` covers "tf" and "unit" but cannot swap
    channels. Putting the step inside the model means a saved fine-tuned
    model takes the same [0, 255] images as `image_folder` yields.

    Args:
        mode: one of "caffe", "tf", "torch", "unit", "none", "normalize"; or a
            dict {"mean": [...], "std": [...]} for "normalize".
        mean: three floats in [0, 1], for "normalize". Defaults to None.
        std: three floats, for "normalize". Defaults to None.

    Example:

    >>> layer = ImagePreprocessing("tf")
    >>> keras.ops.convert_to_numpy(layer(keras.ops.full((1, 1, 1, 3), 255.0)))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, mode, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mode, dict):
            mode, mean, std = "normalize", mode.get("mean"), mode.get("std")
        if mode not in MODES:
            raise ValueError(
                f"ImagePreprocessing: mode must be one of {MODES}. Received: mode={mode!r}"
            )
        if (mode == "normalize") != (mean is not None and std is not None):
            raise ValueError(
                "ImagePreprocessing: mode 'normalize' takes mean and std (three floats each), "
                f"and only it does. Received: mode={mode!r}, mean={mean!r}, std={std!r}"
            )
        self.mode = mode
        self.mean = None if mean is None else [float(value) for value in mean]
        self.std = None if std is None else [float(value) for value in std]

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            images = ops.flip(images, axis=-1)
            return images - ops.convert_to_tensor(IMAGENET_MEAN_RGB[::-1], self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode in ("torch", "normalize"):
            mean = self.mean or TORCH_MEAN_RGB
            std = self.std or TORCH_STD_RGB
            mean = ops.convert_to_tensor(mean, self.compute_dtype)
            std = ops.convert_to_tensor(std, self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "unit":
            return images / 255.0
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "mean": self.mean, "std": self.std}
