"""Using a trained classifier: load it, predict, evaluate, export."""

from kerasrecipes.inference.classifier import (
    ImageClassifier,
    Prediction,
    Predictions,
    load_classifier,
)
from kerasrecipes.inference.evaluation import Evaluation, evaluate
from kerasrecipes.inference.exporting import ExportError, ExportResult, export
from kerasrecipes.inference.tta import TTA_VIEWS, tta_views

__all__ = [
    "TTA_VIEWS",
    "Evaluation",
    "ExportError",
    "ExportResult",
    "ImageClassifier",
    "Prediction",
    "Predictions",
    "evaluate",
    "export",
    "load_classifier",
    "tta_views",
]
