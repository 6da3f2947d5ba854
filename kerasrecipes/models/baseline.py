"""The lecture's plain baseline: ten weighted layers, batch normalization, no shortcuts.

The "basic design" the lecture starts from before residual networks: three
stages of three 3x3 conv-BN-ReLU layers (32, 64, 128 filters), max pooling
between stages, global average pooling and a linear classifier, for nine
convolutions and one linear layer. Train it beside `resnet20` to see what
depth and skip connections add.
"""

import keras

from kerasrecipes.cards import FeatureTap, register_model, stage_blocks
from kerasrecipes.layers.normalization import batch_norm
from kerasrecipes.models.common import check_common_args, finish_model, model_inputs

BASELINE_STAGES = (
    {"filters": 32, "convs": 3},
    {"filters": 64, "convs": 3},
    {"filters": 128, "convs": 3},
)


def plain_cnn(
    stages=BASELINE_STAGES,
    *,
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    pooling=None,
    dropout=0.0,
    drop_path_rate=0.0,
    weights=None,
    classifier_activation="softmax",
    include_preprocessing=True,
    preprocessing="unit",
    name="baseline_cnn",
):
    """Builds a plain (non-residual) CNN from a table of stages.

    Args:
        stages: sequence of dicts with `filters` and `convs` (3x3 conv-BN-ReLU
            layers); 2x2 max pooling follows every stage but the last.
            Defaults to `BASELINE_STAGES` (9 convolutions).
        num_classes: int, classes of the classifier. Defaults to 10.
        input_shape: (height, width, channels). Defaults to (32, 32, 3).
        include_top: bool, add the classifier. Defaults to True.
        pooling: None, "avg" or "max": the output without the top. Defaults to None.
        dropout: float, dropout before the classifier. Defaults to 0.0.
        drop_path_rate: must be 0.0: a network without residual branches has
            nothing to drop; accepted so every builder takes the same arguments.
        weights: None or the path of a .weights.h5 / .keras file. Defaults to None.
        classifier_activation: activation of the classifier. Defaults to "softmax".
        include_preprocessing: bool, take RGB images in [0, 255] and apply
            `preprocessing` inside the model. Defaults to True.
        preprocessing: the `ImagePreprocessing` mode. Defaults to "unit" ([0, 1]).
        name: model name. Defaults to "baseline_cnn".

    Example:

    >>> plain_cnn(num_classes=3).output_shape
    (None, 3)
    """
    input_shape = check_common_args(
        name,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        min_input_size=2 ** (len(stages) - 1),
        drop_path=False,
    )
    inputs, x = model_inputs(
        input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing
    )
    for stage, spec in enumerate(stages, start=1):
        for block in range(1, spec["convs"] + 1):
            prefix = f"stage{stage}_block{block}"
            x = keras.layers.Conv2D(
                spec["filters"],
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"{prefix}_conv",
            )(x)
            x = batch_norm(f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
        if stage < len(stages):
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
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
    )


@register_model(
    "baseline_cnn",
    family="baseline",
    paper="The lecture's basic design: depth 10 (9 conv + 1 linear), batch normalization, pooling",
    default_input_shape=(32, 32, 3),
    min_input_size=4,
    variant={"stages": BASELINE_STAGES},
    blocks=stage_blocks(stage["convs"] for stage in BASELINE_STAGES),
    feature_taps=tuple(
        FeatureTap(f"stage{stage}_block{spec['convs']}", spec["filters"], 2 ** (stage - 1))
        for stage, spec in enumerate(BASELINE_STAGES, start=1)
    ),
    drop_path=False,
)
def baseline_cnn(**kwargs):
    """The lecture's 10-layer plain baseline: 484,074 parameters, 66.9M multiply-adds at 32x32."""
    return plain_cnn(**kwargs)
