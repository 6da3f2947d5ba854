"""The public API of `kerasrecipes`, imported eagerly (Keras and TensorFlow with it).

`kerasrecipes/__init__.py` takes its names from here: at once in a user's
program, on first use in the `kerasrecipes` command (so `--help` does not
import TensorFlow).
"""

from kerasrecipes import (
    ablation,
    callbacks,
    data,
    distribute,
    inference,
    layers,
    losses,
    models,
    optimizers,
    plots,
    precision,
    schedules,
    tasks,
)
from kerasrecipes.ablation import ablate
from kerasrecipes.backbones import LoadedBackbone, load_backbone
from kerasrecipes.demo_backbone import demo_backbone
from kerasrecipes.features import ParamGroup, feature_info, param_groups
from kerasrecipes.finetune import (
    FineTuneConfig,
    FineTuneHistory,
    Phase,
    fine_tune,
    plan_phases,
    resolve_budget,
    resolve_config,
)
from kerasrecipes.finetune.pipeline import RunResult, run
from kerasrecipes.inference import (
    ImageClassifier,
    ImageSegmenter,
    ObjectDetector,
    evaluate,
    export,
    load_classifier,
    load_model,
)
from kerasrecipes.info import ModelInfo, model_info
from kerasrecipes.models.efficientnet import efficientnet_scaling
from kerasrecipes.precision import auto_precision, training_compile_options
from kerasrecipes.registry import (
    FeatureTap,
    ModelCard,
    PretrainedWeights,
    create_model,
    get_model_entry,
    list_heads,
    list_models,
    model_card,
    register_head,
    register_model,
)
from kerasrecipes.weights import port_weights

__all__ = [
    "FeatureTap",
    "FineTuneConfig",
    "FineTuneHistory",
    "ImageClassifier",
    "ImageSegmenter",
    "LoadedBackbone",
    "ModelCard",
    "ModelInfo",
    "ObjectDetector",
    "ParamGroup",
    "Phase",
    "PretrainedWeights",
    "RunResult",
    "ablate",
    "ablation",
    "auto_precision",
    "callbacks",
    "create_model",
    "data",
    "demo_backbone",
    "distribute",
    "efficientnet_scaling",
    "evaluate",
    "export",
    "feature_info",
    "fine_tune",
    "get_model_entry",
    "inference",
    "layers",
    "list_heads",
    "list_models",
    "load_backbone",
    "load_classifier",
    "load_model",
    "losses",
    "model_card",
    "model_info",
    "models",
    "optimizers",
    "param_groups",
    "plan_phases",
    "plots",
    "port_weights",
    "precision",
    "register_head",
    "register_model",
    "resolve_budget",
    "resolve_config",
    "run",
    "schedules",
    "tasks",
    "training_compile_options",
]
