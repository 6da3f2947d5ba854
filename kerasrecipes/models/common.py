"""What every model builder shares: argument checks, the input and the classifier head.

Layer-name scheme (fine-tuning freezes and sets learning rates by it):
`stem_*` for the layers before the first stage, `stage{i}_block{j}` (or
`stage{i}_block{j}_*`) for the blocks of stage i (both counted from 1),
`stage{i}_pool` for the pooling between stages of plain networks,
`stage{i}_downsample_*` for the layers that open stage i by changing the
resolution (ConvNeXt), `post_*` for the layers after the last stage that
belong to the backbone and come with its pretrained weights (the final norm
of pre-activation networks, EfficientNet's 1x1 convolution, ConvNeXt's norm
after pooling), and `head_*` for the pooling and the classifier (with
`head_fc{k}` for the hidden fully connected layers of AlexNet and VGG).
"""

import numbers

import keras

from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.model_parts import HEAD_PREFIX, record_head
from kerasrecipes.weights import load_model_weights

POOLINGS = (None, "avg", "max")


def check_common_args(
    model_name,
    *,
    num_classes,
    input_shape,
    include_top,
    pooling,
    dropout,
    drop_path_rate,
    min_input_size,
    poolings=POOLINGS,
    drop_path=True,
):
    """Validates the arguments every builder takes; returns `input_shape` as a tuple.

    `poolings` lists the `pooling` values the family accepts (ViT adds "token");
    `drop_path=False` says the network has no residual branches, so a
    `drop_path_rate` other than 0 is an error.
    """
    if drop_path_rate and not drop_path:
        raise ValueError(
            f"{model_name}: drop_path_rate needs residual branches, and this network has "
            f"none. Received: drop_path_rate={drop_path_rate}. Use dropout instead."
        )
    is_integer = isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool)
    if include_top and (not is_integer or num_classes < 1):
        raise ValueError(
            f"{model_name}: num_classes must be an integer >= 1 when include_top=True. "
            f"Received: num_classes={num_classes!r}"
        )
    if pooling not in poolings:
        raise ValueError(
            f"{model_name}: pooling must be one of {poolings}. Received: pooling={pooling!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{model_name}: dropout must be in [0, 1). Received: dropout={dropout}")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(
            f"{model_name}: drop_path_rate must be in [0, 1). "
            f"Received: drop_path_rate={drop_path_rate}"
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"{model_name}: input_shape must be (height, width, channels). "
            f"Received: input_shape={input_shape}"
        )
    height, width, channels = input_shape
    if channels is None or channels < 1:
        raise ValueError(
            f"{model_name}: input_shape needs a known number of channels >= 1. "
            f"Received: input_shape={input_shape}"
        )
    for size in (height, width):
        if size is not None and size < min_input_size:
            raise ValueError(
                f"{model_name}: input_shape={input_shape} is too small: the network "
                f"downsamples by {min_input_size}, so height and width must be at least "
                f"{min_input_size}. Use a larger input_shape or resize the images."
            )
    return input_shape


def model_inputs(input_shape, *, include_preprocessing, preprocessing):
    """The model's `input` and, with `include_preprocessing`, the `stem_preprocess` layer after it.

    As Keras' `include_preprocessing=True` (MobileNetV3, EfficientNetV2): the
    model takes RGB images in [0, 255] and applies `preprocessing` (an
    `ImagePreprocessing` mode, the card's) itself. Returns `(inputs, x)`.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    if not include_preprocessing or preprocessing == "none":
        return inputs, inputs
    return inputs, ImagePreprocessing(preprocessing, name="stem_preprocess")(inputs)


def classification_head(
    x,
    *,
    num_classes,
    include_top,
    pooling,
    dropout,
    classifier_activation,
    pooled_norm=None,
    dense_initializer="glorot_uniform",
    flatten=False,
    hidden_units=(),
    dense_dtype=None,
):
    """Global pooling, optional dropout and the linear classifier (`head_*` layers).

    As keras.applications: with `include_top`, average pooling then the
    classifier; without it, `pooling` decides the feature output (None keeps
    the 4D feature map, "avg" or "max" pools it). `pooled_norm`, a layer of
    the backbone applied after the pooling (ConvNeXt's final LayerNorm), is
    applied to the feature map when nothing pools it, as keras.applications does.

    The classic networks' top differs: with `flatten`, the top flattens the
    feature map instead of pooling it globally (AlexNet, VGG), and
    `hidden_units` adds the hidden fully connected ReLU layers `head_fc{k}`,
    each followed by `dropout`. An `x` that is already one vector per image
    (ViT's class token) is not pooled. `dense_dtype` "float32" keeps the
    classifier in float32 under mixed precision (`kr.fine_tune`'s head: a
    bf16 softmax loses the small probabilities the loss needs).
    """
    if len(x.shape) == 2:
        pass  # already one vector per image (ViT's class token)
    elif include_top and flatten:
        x = keras.layers.Flatten(name=f"{HEAD_PREFIX}flatten")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=f"{HEAD_PREFIX}pool")(x)
    elif include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=f"{HEAD_PREFIX}pool")(x)
    if pooled_norm is not None:
        x = pooled_norm(x)
    if not include_top:
        return x
    for index, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=dense_initializer,
            name=f"{HEAD_PREFIX}fc{index}",
        )(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout{index}")(x)
    if dropout > 0 and not hidden_units:
        x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    return keras.layers.Dense(
        int(num_classes),
        activation=classifier_activation,
        kernel_initializer=dense_initializer,
        dtype=dense_dtype,
        name=f"{HEAD_PREFIX}dense",
    )(x)


def conv_relu(
    x,
    filters,
    size,
    prefix,
    *,
    strides=1,
    padding="same",
    batch_norm_after_conv=False,
    use_bias=True,
):
    """The unit of the plain networks (AlexNet, VGG): conv + ReLU, or conv + BN + ReLU.

    Layers are named `{prefix}_conv`, and with BatchNorm `{prefix}_bn` and
    `{prefix}_relu`; without it the ReLU is the convolution's activation, as
    in keras.applications, so the pretrained weights port.
    """
    x = keras.layers.Conv2D(
        filters,
        size,
        strides=strides,
        padding=padding,
        activation=None if batch_norm_after_conv else "relu",
        use_bias=use_bias,
        name=f"{prefix}_conv",
    )(x)
    if batch_norm_after_conv:
        x = batch_norm(f"{prefix}_bn")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    return x


def finish_model(
    inputs,
    x,
    *,
    name,
    weights,
    num_classes,
    include_top,
    pooling,
    dropout,
    classifier_activation,
    keras_twin=None,
    head_from=None,
    **head_options,
):
    """Adds the head to the backbone output `x`, makes the `keras.Model` and loads `weights`.

    The closing steps of every builder. `keras_twin` is the keras.applications
    network with the same variables, for `weights="imagenet"`: its name in
    `keras.applications` (e.g. "ResNet50"), a function that builds it, or None.
    `head_from` is where the head starts when the builder began it before
    `x` (ViT's class-token pooling); by default `x`. The model records its
    head (`kr.model_parts.record_head`). `head_options` go to
    `classification_head` (`pooled_norm`, `flatten`, ...).
    """
    outputs = classification_head(
        x,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        **head_options,
    )
    model = record_head(
        keras.Model(inputs, outputs, name=name),
        x if head_from is None else head_from,
        backbone_layers=[head_options["pooled_norm"]] if head_options.get("pooled_norm") else [],
    )
    if isinstance(keras_twin, str):
        keras_twin = getattr(keras.applications, keras_twin)
    return load_model_weights(
        model, weights, keras_twin=keras_twin, include_top=include_top, num_classes=num_classes
    )
