"""Train GoogLeNet, AlexNet, VGG or ResNet with the legacy recipe: ``python train.py googlenet --help``."""

import sys

from paddle_googlenet import configure_threads

if __name__ == "__main__":
    configure_threads()  # before Paddle is imported: it would pin itself to one thread
    from paddle_googlenet.training import main

    sys.exit(main())
