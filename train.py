"""Train GoogLeNet, AlexNet, VGG or ResNet with the legacy recipe: ``python train.py googlenet --help``."""

import sys

import paddle_googlenet  # noqa: F401  (first: lets Paddle use every core)
from paddle_googlenet.training import main

if __name__ == "__main__":
    sys.exit(main())
