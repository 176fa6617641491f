"""Training data: Oxford Flowers-102, list files, image folders and scikit-learn's digits (docs/data.md)."""

from .build import DATASET_DEFAULTS, DATASETS, DataBundle, add_data_arguments, apply_dataset_defaults, build_datasets
from .errors import DataError
from .loader import build_loader, default_workers
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageReadError,
    build_eval_transform,
    build_train_transform,
    denormalize,
    flowers_class_names,
    load_image,
    make_preprocess,
)

__all__ = [
    "DATASETS",
    "DATASET_DEFAULTS",
    "DataBundle",
    "DataError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageReadError",
    "add_data_arguments",
    "apply_dataset_defaults",
    "build_datasets",
    "build_eval_transform",
    "build_loader",
    "build_train_transform",
    "default_workers",
    "denormalize",
    "flowers_class_names",
    "load_image",
    "make_preprocess",
]
