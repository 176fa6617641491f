"""Image folders in the ImageFolder convention: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``.

Classes are the sub-folders of ``train/`` in sorted order (label = position). Images are found
recursively by extension (case-insensitive); other files and hidden entries are ignored.
"""

import os
from pathlib import Path

from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")


def _image_files(class_dir):
    found = []
    for folder, subfolders, files in os.walk(class_dir, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(
            os.path.join(folder, name)
            for name in sorted(files)
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        )
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
            samples.extend((path, label) for path in _image_files(split_dir / name))
    return samples
