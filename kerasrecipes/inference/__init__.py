"""Using a trained model: load it, predict, evaluate, export; for classifiers, segmenters and
detectors alike."""

from kerasrecipes.inference.classifier import (
    ImageClassifier,
    Prediction,
    Predictions,
)
from kerasrecipes.inference.detector import (
    AnchorBoxDecoder,
    BoxPrediction,
    BoxPredictions,
    ObjectDetector,
    select_boxes,
)
from kerasrecipes.inference.evaluation import Evaluation, evaluate
from kerasrecipes.inference.exporting import ExportError, ExportResult, export
from kerasrecipes.inference.loading import load_classifier, load_model
from kerasrecipes.inference.segmenter import ImageSegmenter, MaskPrediction, MaskPredictions
from kerasrecipes.inference.tta import TTA_VIEWS, tta_views

__all__ = [
    "TTA_VIEWS",
    "AnchorBoxDecoder",
    "BoxPrediction",
    "BoxPredictions",
    "Evaluation",
    "ExportError",
    "ExportResult",
    "ImageClassifier",
    "ImageSegmenter",
    "MaskPrediction",
    "MaskPredictions",
    "ObjectDetector",
    "Prediction",
    "Predictions",
    "evaluate",
    "export",
    "load_classifier",
    "load_model",
    "select_boxes",
    "tta_views",
]
