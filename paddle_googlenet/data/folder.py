"""Image folders in the ImageFolder convention: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``.

Classes are the sub-folders of ``train/`` in sorted order (label = position). ``image_files`` is
the one finder of images in a folder, for training and for ``infer.py``: recursively, folder by
folder in sorted order, by extension (any case), hidden files and folders skipped.
"""

import os
from pathlib import Path

from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")


def is_image_file(path):
    """Whether ``path`` ends in one of ``IMAGE_EXTENSIONS``, in any case."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def image_files(folder):
    """Image files under ``folder``, recursively, folder by folder in sorted order; hidden entries skipped."""
    found = []
    for parent, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(os.path.join(parent, name) for name in sorted(files) if not name.startswith(".") and is_image_file(name))
    return found


def _class_dirs(split_dir):
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))


def read_image_folders(data_dir):
    """``(train_samples, val_samples, class_names)`` from ``data_dir/train`` and ``data_dir/val``."""
    data_dir = Path(data_dir)
    missing = [str(data_dir / split) for split in ("train", "val") if not (data_dir / split).is_dir()]
    if missing:
        raise DataError(
            f"--dataset folder expects {data_dir}/train/<class>/* and {data_dir}/val/<class>/*; "
            f"missing folder(s): {', '.join(missing)}"
        )
    class_names = _class_dirs(data_dir / "train")
    if not class_names:
        raise DataError(f"{data_dir / 'train'} has no class sub-folders (expected train/<class>/<image>)")
    unknown = [name for name in _class_dirs(data_dir / "val") if name not in class_names]
    if unknown:
        raise DataError(
            f"{data_dir / 'val'} has class folder(s) that {data_dir / 'train'} lacks: {', '.join(unknown)}. "
            "Every validation class needs training images under the same folder name."
        )
    train = _samples(data_dir / "train", class_names)
    present = {label for _, label in train}
    empty = [name for label, name in enumerate(class_names) if label not in present]
    if empty:
        raise DataError(
            f"training class folder(s) without images under {data_dir / 'train'}: {', '.join(empty)} "
            f"(recognised extensions: {' '.join(IMAGE_EXTENSIONS)})"
        )
    return train, _samples(data_dir / "val", class_names), class_names


def _samples(split_dir, class_names):
    samples = []
    for label, name in enumerate(class_names):
        if (split_dir / name).is_dir():
            samples.extend((path, label) for path in image_files(split_dir / name))
    return samples
