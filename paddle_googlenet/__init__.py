"""paddle-googlenet: the classic paddle.v2 image classifiers (GoogLeNet, AlexNet, VGG, ResNet) on PaddlePaddle 3.x."""

from .runtime import configure_threads, import_paddle

__version__ = "0.1.0"
__all__ = ["configure_threads", "import_paddle", "__version__"]
