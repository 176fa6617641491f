"""Predict top-k classes with names from a checkpoint or an exported model: ``python infer.py --help``."""

import sys

from paddle_googlenet import configure_threads

if __name__ == "__main__":
    configure_threads()  # before Paddle is imported: it would pin itself to one thread
    from paddle_googlenet.inference import main

    sys.exit(main())
