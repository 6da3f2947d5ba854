"""Model builders, one module per architecture family; importing registers them."""

from kerasrecipes.models import baseline, resnet

__all__ = ["baseline", "resnet"]
