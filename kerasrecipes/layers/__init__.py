"""Reusable blocks, each written once and imported by the model files."""

from kerasrecipes.layers.augmentation import RandAugment, RandomPaddedCrop, RandomResizedCrop
from kerasrecipes.layers.convnext import ConvNeXtBlock
from kerasrecipes.layers.inception import (
    InceptionModule,
    inception_a,
    inception_b,
    inception_c,
    inception_d,
    inception_e,
)
from kerasrecipes.layers.layer_scale import LayerScale
from kerasrecipes.layers.mobile import InvertedResidual, MBConv, SqueezeExcite, make_divisible
from kerasrecipes.layers.normalization import BatchNormalization, LayerNormalization
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.layers.regularization import DropPath, drop_path_schedule
from kerasrecipes.layers.residual import (
    BasicBlock,
    BottleneckBlock,
    ZeroPadShortcut,
)
from kerasrecipes.layers.vit import (
    ClassTokenPooling,
    PatchEmbedding,
    PatchTokensToGrid,
    TransformerEncoderBlock,
    resize_position_embedding,
)

__all__ = [
    "BasicBlock",
    "BatchNormalization",
    "BottleneckBlock",
    "ClassTokenPooling",
    "ConvNeXtBlock",
    "DropPath",
    "ImagePreprocessing",
    "InceptionModule",
    "InvertedResidual",
    "LayerNormalization",
    "LayerScale",
    "MBConv",
    "PatchEmbedding",
    "PatchTokensToGrid",
    "RandAugment",
    "RandomPaddedCrop",
    "RandomResizedCrop",
    "SqueezeExcite",
    "TransformerEncoderBlock",
    "ZeroPadShortcut",
    "drop_path_schedule",
    "inception_a",
    "inception_b",
    "inception_c",
    "inception_d",
    "inception_e",
    "make_divisible",
    "resize_position_embedding",
]
