"""Model builders, one module per architecture family; importing registers them."""

from kerasrecipes.models import baseline, convnext, efficientnet, mobilenet_v2, resnet

__all__ = ["baseline", "convnext", "efficientnet", "mobilenet_v2", "resnet"]
