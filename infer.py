"""Predict top-k classes with names from a checkpoint or an exported model: ``python infer.py --help``."""

import sys

import paddle_googlenet  # noqa: F401  (first: lets Paddle use every core)
from paddle_googlenet.inference import main

if __name__ == "__main__":
    sys.exit(main())
