"""Data: built-in generated demo datasets (image folders and augmentation come later)."""

from kerasrecipes.data.demo import demo_images

__all__ = ["demo_images"]
