"""Reusable blocks, each written once and imported by the model files."""

from kerasrecipes.layers.regularization import DropPath, drop_path_schedule
from kerasrecipes.layers.residual import (
    BasicBlock,
    BottleneckBlock,
    ZeroPadShortcut,
)

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DropPath",
    "ZeroPadShortcut",
    "drop_path_schedule",
]
