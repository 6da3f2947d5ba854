"""Data: image folders, segmentation mask folders, COCO detection folders, bad-file scans,
augmentation presets, class imbalance, semi-supervised training and built-in demo datasets."""

from kerasrecipes.data.augment import (
    PRESETS,
    Augmentation,
    AugmentedModel,
    augment,
    augmentation,
)
from kerasrecipes.data.coco import AnnotationError, CocoFolderInfo, coco_folder
from kerasrecipes.data.demo import DEMO_TASKS, demo_images, make_demo_dataset
from kerasrecipes.data.folder import FolderInfo, image_folder
from kerasrecipes.data.imbalance import class_weights, oversample
from kerasrecipes.data.masks import MaskFolderInfo, mask_folder
from kerasrecipes.data.semi_supervised import FixMatch, semi_supervised_dataset
from kerasrecipes.data.verify import ScanReport, decode_rgb, verify_images

__all__ = [
    "AnnotationError",
    "CocoFolderInfo",
    "DEMO_TASKS",
    "PRESETS",
    "Augmentation",
    "AugmentedModel",
    "FixMatch",
    "FolderInfo",
    "MaskFolderInfo",
    "ScanReport",
    "augment",
    "augmentation",
    "class_weights",
    "coco_folder",
    "decode_rgb",
    "demo_images",
    "image_folder",
    "make_demo_dataset",
    "mask_folder",
    "oversample",
    "semi_supervised_dataset",
    "verify_images",
]
