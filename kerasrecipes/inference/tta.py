"""Test-time augmentation: predictions averaged over flipped and cropped views of each image.

fastai's `Learner.tta` (n=4, beta=0.25) averages four passes of the
training augmentation (random crops and flips) and mixes the mean with the
plain prediction: `0.25 * plain + 0.75 * mean(augmented)`. The views here
are the same kind, made deterministic so an evaluation can be repeated:
the horizontal flip and the four corner crops of 7/8 of the image
(scaled back up), the corner crops of AlexNet's ten-crop test
(Krizhevsky et al., 2012). Flipping and cropping assume the class does not
change with them, as training's augmentation does.
"""

import keras
import numpy as np

# (name, flip, crop corner): the corners are (top, left) fractions of the free margin.
TTA_VIEWS = (
    ("flip", True, None),
    ("crop_top_left", False, (0.0, 0.0)),
    ("crop_top_right", False, (0.0, 1.0)),
    ("crop_bottom_left", False, (1.0, 0.0)),
    ("crop_bottom_right", False, (1.0, 1.0)),
)
CROP_FRACTION = 0.875
PLAIN_WEIGHT = 0.25  # fastai's `beta`


def tta_views(images, crop_fraction=CROP_FRACTION):
    """The augmented views of a batch of images `(n, h, w, 3)`, each the batch's size."""
    images = keras.ops.convert_to_tensor(images, "float32")
    height, width = images.shape[1], images.shape[2]
    crop_h, crop_w = round(height * crop_fraction), round(width * crop_fraction)
    views = []
    for _, flip, corner in TTA_VIEWS:
        view = images
        if flip:
            view = keras.ops.flip(view, axis=2)
        if corner is not None:
            top = round(corner[0] * (height - crop_h))
            left = round(corner[1] * (width - crop_w))
            view = view[:, top : top + crop_h, left : left + crop_w, :]
            view = keras.ops.image.resize(view, (height, width), interpolation="bilinear")
        views.append(view)
    return views


def predict_with_tta(model, batches):
    """`tta_probabilities` for every batch, concatenated: `(n, num_classes)`."""
    outputs = [tta_probabilities(model, batch) for batch in batches]
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), "float32")
    return np.concatenate(outputs)


def tta_probabilities(model, batch, plain=None):
    """`0.25 * plain + 0.75 * mean over TTA_VIEWS` of `model`'s probabilities for one batch.

    `plain`: the batch's plain probabilities when they are computed already.
    """
    size = tuple(getattr(model, "image_size", None) or model.input_shape[1:3])
    batch = keras.ops.image.resize(keras.ops.convert_to_tensor(batch, "float32"), size)
    if plain is None:
        plain = keras.ops.convert_to_numpy(model.predict_on_batch(batch))
    views = [keras.ops.convert_to_numpy(model.predict_on_batch(v)) for v in tta_views(batch)]
    mixed = PLAIN_WEIGHT * plain + (1 - PLAIN_WEIGHT) * np.mean(views, axis=0)
    return mixed.astype("float32")
