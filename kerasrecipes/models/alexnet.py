"""AlexNet (Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS), in its single-tower form (Krizhevsky 2014, "One weird trick
for parallelizing convolutional neural networks", arXiv:1404.5997).

Five convolutions (11x11/4, 5x5, three 3x3) with ReLU and three overlapping
3x3/2 max poolings, then three fully connected layers (4096, 4096, classes)
with dropout 0.5 on the first two. The 2012 network split its layers over two
GPUs; the single-tower version of 2014 has 64, 192, 384, 256 and 256
channels, as torchvision's `alexnet` (61.1M parameters with the 1000-class top).

No local response normalization, as is common practice since (BatchNorm
replaces it when `batch_norm=True`). The top flattens the final map, 6x6x256
= 9216 values at 224, so the first fully connected layer depends on the
input size. No keras.applications twin exists, so there are no ImageNet weights.

Not torchvision's adaptive average pooling to 6x6 before the top: with
Keras 3.15 on TensorFlow, `AdaptiveAveragePooling2D` failed to enlarge a
1x1 map to 6x6 inside a compiled train step ("Negative dimension size"),
and every input below 223x223 needs such an enlargement.
"""

import keras

from kerasrecipes.cards import FeatureTap, register_model, stage_blocks
from kerasrecipes.models.common import check_common_args, conv_relu, finish_model, model_inputs

PAPER = "Krizhevsky et al. 2012, ImageNet Classification with Deep Convolutional Neural Networks"
# (filters, kernel size, stride) of the convolutions of each stage; each stage ends in a max pool.
STAGES = (
    ((64, 11, 4),),
    ((192, 5, 1),),
    ((384, 3, 1), (256, 3, 1), (256, 3, 1)),
)
HIDDEN_UNITS = (4096, 4096)
# Three 3x3/2 poolings after the 11x11/4 convolution (padded by 2) leave at
# least 1x1 only from 63x63 up.
MIN_INPUT_SIZE = 63


def single_tower_alexnet(
    *,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    dropout=0.5,
    drop_path_rate=0.0,
    batch_norm_after_conv=False,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="unit",
    name="alexnet",
):
    """Builds the single-tower AlexNet.

    Layer names: `stage1_block1_pad` (the 2-pixel zero padding of the first
    convolution), `stage{i}_block{j}_conv` (with `_bn` and `_relu` when
    batch-normalized), `stage{i}_pool`, then the top: `head_flatten`,
    `head_fc1`, `head_dropout1`, `head_fc2`, `head_dropout2`, `head_dense`.

    Args:
        num_classes: int, classes of the classifier. Defaults to 1000.
        input_shape: (height, width, channels), at least 63x63. Defaults to (224, 224, 3).
        include_top: bool, add the three fully connected layers. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout after each hidden fully connected layer (0.5
            in the paper, Sec. 4.2). Defaults to 0.5.
        batch_norm_after_conv: bool, BatchNormalization between each
            convolution and its ReLU. Defaults to False.
        weights: None or the path of a .weights.h5 / .keras file. Defaults to None.
        drop_path_rate: must be 0.0: the network has no residual branches;
            accepted so every builder takes the same arguments. Defaults to 0.0.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "unit" ([0, 1]).
        name: model name. Defaults to "alexnet".

    Example:

    >>> single_tower_alexnet(num_classes=10, input_shape=(63, 63, 3)).output_shape
    (None, 10)
    """
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=MIN_INPUT_SIZE,
        drop_path=False,
    )
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    x = keras.layers.ZeroPadding2D(2, name="stage1_block1_pad")(x)
    for stage, convs in enumerate(STAGES, start=1):
        for block, (filters, size, stride) in enumerate(convs, start=1):
            x = conv_relu(
                x,
                filters,
                size,
                f"stage{stage}_block{block}",
                strides=stride,
                padding="valid" if stride > 1 else "same",
                batch_norm_after_conv=batch_norm_after_conv,
                use_bias=not batch_norm_after_conv,
            )
        x = keras.layers.MaxPooling2D(3, strides=2, name=f"stage{stage}_pool")(x)

    return finish_model(
        inputs,
        x,
        name=name,
        weights=weights,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        flatten=True,
        hidden_units=HIDDEN_UNITS,
    )


@register_model(
    "alexnet",
    family="alexnet",
    bn_momentum=None,
    paper=PAPER,
    default_input_shape=(224, 224, 3),
    min_input_size=MIN_INPUT_SIZE,
    variant={"stages": STAGES, "hidden_units": HIDDEN_UNITS},
    blocks=stage_blocks(len(convs) for convs in STAGES),
    # Each stage's last convolution (strides 4, 8, 16), then the last pooling (32).
    feature_taps=(
        FeatureTap("stage1_block1", 64, 4),
        FeatureTap("stage2_block1", 192, 8),
        FeatureTap("stage3_block3", 256, 16),
        FeatureTap("stage3_pool", 256, 32),
    ),
    drop_path=False,
)
def alexnet(**kwargs):
    """AlexNet, single tower: 61.1M parameters, 0.71G multiply-adds at 224.

    `batch_norm=True` builds the batch-normalized variant (convolutions without bias).
    """
    batch_normalized = kwargs.pop("batch_norm", False)
    return single_tower_alexnet(
        **{
            "name": "alexnet_bn" if batch_normalized else "alexnet",
            "batch_norm_after_conv": batch_normalized,
            **kwargs,
        }
    )
