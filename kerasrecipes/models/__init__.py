"""Model builders, one module per architecture family; importing registers them."""

from kerasrecipes.models import (
    alexnet,
    baseline,
    convnext,
    efficientnet,
    inception,
    mobilenet_v2,
    resnet,
    retinanet,
    unet,
    vgg,
    vit,
)

__all__ = [
    "alexnet",
    "baseline",
    "convnext",
    "efficientnet",
    "inception",
    "mobilenet_v2",
    "resnet",
    "retinanet",
    "unet",
    "vgg",
    "vit",
]
