"""The input scaling each family's ImageNet weights were trained with, as a layer."""

import keras
from keras import ops

# keras.applications' `preprocess_input` modes (keras/src/applications/imagenet_utils.py).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "unit", "none")


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB images in [0, 255] to what a pretrained backbone expects.

    The modes of `keras.applications.imagenet_utils.preprocess_input`, plus two:

    * `"caffe"`: RGB to BGR, minus the ImageNet mean per channel (ResNet, VGG).
    * `"tf"`: scaled to [-1, 1] (MobileNetV2, InceptionV3).
    * `"torch"`: scaled to [0, 1], then standardized with ImageNet's mean and std.
    * `"unit"`: scaled to [0, 1].
    * `"none"`: unchanged (EfficientNet and ConvNeXt scale inside the model).

    Why our own: keras.applications has these as functions only, and a
    `Lambda` layer around one cannot be loaded from a `.keras` file without
    `safe_mode=False`; `Rescaling` covers "tf" and "unit" but cannot swap
    channels. Putting the step inside the model means a saved fine-tuned
    model takes the same [0, 255] images as `image_folder` yields.

    Args:
        mode: one of "caffe", "tf", "torch", "unit", "none".

    Example:

    >>> layer = ImagePreprocessing("tf")
    >>> keras.ops.convert_to_numpy(layer(keras.ops.full((1, 1, 1, 3), 255.0)))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"ImagePreprocessing: mode must be one of {MODES}. Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            images = ops.flip(images, axis=-1)
            return images - ops.convert_to_tensor(IMAGENET_MEAN_RGB[::-1], self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN_RGB, self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_STD_RGB, self.compute_dtype)
            return (images / 255.0 - mean) / std
        if self.mode == "unit":
            return images / 255.0
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
