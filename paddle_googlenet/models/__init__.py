"""The model zoo: ``get_model(name, num_classes=102, **kwargs)`` and ``list_models()``."""

from ..runtime import import_paddle

import_paddle()

from . import alexnet, googlenet, resnet, vgg  # noqa: E402,F401  (registers the models)
from .googlenet import GoogLeNet, GoogLeNetOutputs  # noqa: E402
from .registry import get_model, list_models, register_model  # noqa: E402

__all__ = ["get_model", "list_models", "register_model", "GoogLeNet", "GoogLeNetOutputs"]
