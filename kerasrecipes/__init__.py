"""kerasrecipes: a Keras 3 model zoo and training recipes for image classification.

>>> import kerasrecipes as kr
>>> model = kr.create_model("resnet20", num_classes=10, input_shape=(32, 32, 3))
>>> kr.list_models("resnet2?")
['resnet20', 'resnet26']
"""

from kerasrecipes import _startup  # noqa: F401  (first: the command's quiet TensorFlow import)
from kerasrecipes import (
    callbacks,
    data,
    distribute,
    layers,
    losses,
    models,
    optimizers,
    plots,
    schedules,
)
from kerasrecipes.backbones import LoadedBackbone, demo_backbone, load_backbone
from kerasrecipes.features import ParamGroup, feature_info, param_groups
from kerasrecipes.finetune import (
    FineTuneConfig,
    FineTuneHistory,
    Phase,
    fine_tune,
    plan_phases,
    resolve_config,
)
from kerasrecipes.info import ModelInfo, model_info
from kerasrecipes.models.efficientnet import efficientnet_scaling
from kerasrecipes.registry import (
    FeatureTap,
    ModelCard,
    PretrainedWeights,
    create_model,
    get_model_entry,
    list_models,
    model_card,
    register_model,
)
from kerasrecipes.weights import port_weights

__version__ = "0.1.0"

__all__ = [
    "FeatureTap",
    "FineTuneConfig",
    "FineTuneHistory",
    "LoadedBackbone",
    "ModelCard",
    "ModelInfo",
    "ParamGroup",
    "Phase",
    "PretrainedWeights",
    "callbacks",
    "create_model",
    "data",
    "demo_backbone",
    "distribute",
    "efficientnet_scaling",
    "feature_info",
    "fine_tune",
    "get_model_entry",
    "layers",
    "list_models",
    "load_backbone",
    "losses",
    "model_card",
    "model_info",
    "models",
    "optimizers",
    "param_groups",
    "plan_phases",
    "plots",
    "port_weights",
    "register_model",
    "resolve_config",
    "schedules",
]
