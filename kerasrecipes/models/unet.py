"""U-Net: a decoder over any zoo CNN's feature pyramid, for semantic segmentation.

Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (arXiv:1505.04597), with a pre-trained encoder
as in segmentation_models and fastai's `unet_learner`: the backbone's
deepest map of each reduction (`kr.feature_info`) is the encoder; each
decoder stage upsamples by two, concatenates the encoder's map of that
size and applies two 3x3 conv-BN-ReLU; a 3x3 convolution gives one logit
per class and pixel. Every decoder layer is named `head_*`, so
`kr.fine_tune` trains it first with the encoder frozen, then the encoder
at its lower rate, as it does a classifier.
"""

import keras

from kerasrecipes.cards import register_head
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.model_parts import HEAD_PREFIX, record_head
from kerasrecipes.models.encoders import pyramid_encoder

# Filters of the decoder stages, coarsest first (segmentation_models' decoder_channels).
DECODER_FILTERS = (256, 128, 64, 32, 16)


def _conv_bn_relu(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _upsample_to(x, size, name):
    """Upsampling by two, or resizing where the encoder's map is not exactly twice as large."""
    if (x.shape[1] * 2, x.shape[2] * 2) == tuple(size):
        return keras.layers.UpSampling2D(2, name=name)(x)
    return keras.layers.Resizing(*size, interpolation="bilinear", name=name)(x)


@register_head("unet")
def unet(
    backbone="resnet34",
    num_classes=2,
    input_shape=(256, 256, 3),
    weights=None,
    decoder_filters=DECODER_FILTERS,
    name=None,
):
    """Builds a U-Net on `backbone`: [0, 255] images in, per-pixel class probabilities out.

    Args:
        backbone: a registered CNN name (`kr.list_models()`), a model built
            by `kr.create_model(..., include_top=False)` or wrapping one
            (the demo backbones), or a `kr.LoadedBackbone`. A model built at
            another input size is rebuilt at `input_shape` with its weights.
            Defaults to "resnet34".
        num_classes: classes per pixel, background included: a softmax over
            them; 1 gives a sigmoid (foreground probability). Defaults to 2.
        input_shape: (height, width, 3). Defaults to (256, 256, 3).
        weights: the backbone's weights when it is given by name ("imagenet",
            a file, or None). Defaults to None.
        decoder_filters: filters of each decoder stage, coarsest first; a
            backbone with fewer reductions uses the last (finest) ones.
            Defaults to (256, 128, 64, 32, 16).
        name: the model name. Defaults to "unet_<backbone>".

    Returns:
        a functional `keras.Model`: `(batch, H, W, 3)` -> `(batch, H, W, num_classes)`.

    Example:

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("unet", backbone="resnet18", num_classes=3,
    ...                         input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 64, 64, 3)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
    encoder = pyramid_encoder(backbone, input_shape, weights=weights)
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for layer in encoder.preprocessing:
        x = layer(x)
    maps = encoder.model(x)
    skips = {r: m for r, m in zip(encoder.reductions, maps)}
    # One stage per encoder map below the deepest, then stages without a skip up to full size.
    targets = list(encoder.reductions[:-1][::-1])
    while targets[-1] > 1:
        targets.append(targets[-1] // 2)
    if len(targets) > len(decoder_filters):
        raise ValueError(
            f"unet: the decoder needs {len(targets)} stages for {encoder.model.name}'s "
            f"reductions {encoder.reductions}; decoder_filters gives {len(decoder_filters)}."
        )
    x = maps[-1]
    height, width = input_shape[:2]
    for stage, (reduction, filters) in enumerate(
        zip(targets, decoder_filters[-len(targets) :]), start=1
    ):
        prefix = f"{HEAD_PREFIX}decoder{stage}"
        if reduction in skips:
            size = skips[reduction].shape[1:3]
        else:
            size = (2 * x.shape[1], 2 * x.shape[2])
        x = _upsample_to(x, tuple(size), name=f"{prefix}_up")
        if reduction in skips:
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, skips[reduction]])
        x = _conv_bn_relu(x, filters, f"{prefix}_block1")
        x = _conv_bn_relu(x, filters, f"{prefix}_block2")
    if tuple(x.shape[1:3]) != (height, width):
        x = keras.layers.Resizing(height, width, name=f"{HEAD_PREFIX}resize")(x)
    x = keras.layers.Conv2D(num_classes, 3, padding="same", name=f"{HEAD_PREFIX}logits")(x)
    # The probabilities in float32 under mixed precision, as the classifier's.
    activation = "sigmoid" if num_classes == 1 else "softmax"
    outputs = keras.layers.Activation(activation, dtype="float32", name=f"{HEAD_PREFIX}masks")(x)
    model = keras.Model(inputs, outputs, name=name or f"unet_{encoder.model.name}")
    return record_head(model, maps)
