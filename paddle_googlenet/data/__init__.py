"""Training data: Oxford Flowers-102, list files, image folders and scikit-learn's digits (docs/data.md)."""

from ..runtime import import_paddle

import_paddle()  # before the modules below import Paddle: it filters Paddle's import-time warning

from .build import DATASETS, DataBundle, add_data_arguments, build_datasets, data_source, default_preprocess
from .errors import DataError
from .flowers import flowers_class_names
from .loader import build_loader, default_workers
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageReadError,
    build_eval_transform,
    build_train_transform,
    denormalize,
    legacy_preprocess,
    load_image,
    make_preprocess,
)

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageReadError",
    "add_data_arguments",
    "build_datasets",
    "build_eval_transform",
    "build_loader",
    "build_train_transform",
    "data_source",
    "default_preprocess",
    "default_workers",
    "denormalize",
    "flowers_class_names",
    "legacy_preprocess",
    "load_image",
    "make_preprocess",
]
