"""The data flags of ``train.py`` and the validated datasets they select.

``add_data_arguments`` adds the ``data`` flags to a parser; ``data_source`` keeps from the parsed
flags what says where the images come from (stored in checkpoints, so an export can read a run's
training images again); ``build_datasets`` reads and validates that input into a ``DataBundle``.
Every problem with the input is a ``DataError`` raised before training starts (undecodable images
excepted: they are skipped and counted during training, see ``loader.py``). See ``docs/data.md``.
"""

from dataclasses import dataclass, field
from typing import Optional

import paddle

from ..cli import at_least
from . import digits, flowers
from .datasets import ArrayImageDataset, ImageFileDataset
from .errors import DataError
from .folder import read_image_folders
from .lists import read_class_names, read_list_file
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, make_preprocess
from .validation import require_existing_files, require_samples, require_val_classes_in_train

DATASETS = ("flowers", "list", "folder", "digits")
NO_HFLIP = ("digits",)  # datasets whose images must not be mirrored (a mirrored digit is another shape)

# Which data flags each dataset reads; any other data flag given is a mistake worth reporting.
_DATASET_FLAGS = {
    "flowers": {"data_dir"},
    "list": {"train_list", "val_list", "data_root", "labels"},
    "folder": {"data_dir"},
    "digits": set(),
}
_FLAG_NAMES = {"data_dir": "--data-dir", "train_list": "--train-list", "val_list": "--val-list",
               "data_root": "--data-root", "labels": "--labels"}
SOURCE_FLAGS = ("dataset", *_FLAG_NAMES, "classes", "train_per_class")


@dataclass
class DataBundle:
    """The validated datasets of a run and what describes them.

    ``val`` is evaluated every epoch; ``test`` (Flowers-102 only) is the held-out split.
    ``preprocess`` is the ``make_preprocess`` dict to store in checkpoints for inference.
    """

    train: paddle.io.Dataset
    val: paddle.io.Dataset
    test: Optional[paddle.io.Dataset]
    class_names: list
    preprocess: dict
    warnings: list = field(default_factory=list)  # problems worth a warning line before training

    def summary(self):
        """One line for the log, e.g. ``102 classes; 6149 train, 1020 val, 1020 test images``."""
        test = f", {len(self.test)} test" if self.test is not None else ""
        return f"{len(self.class_names)} classes; {len(self.train)} train, {len(self.val)} val{test} images"


def add_data_arguments(parser):
    """Add the ``data`` argument group (image size, batch size, epochs and lr are the trainer's)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="flowers",
                       help="flowers: Oxford Flowers-102 (downloaded once into Paddle's cache unless --data-dir); "
                            "list: --train-list/--val-list files of '<path><TAB><label>' lines; "
                            "folder: --data-dir with train/<class>/* and val/<class>/*; "
                            "digits: scikit-learn's 8x8 digits, offline (default: %(default)s)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="flowers: folder holding 102flowers.tgz, imagelabels.mat and setid.mat (no download); "
                            "folder: the folder holding train/ and val/")
    group.add_argument("--train-list", metavar="FILE", help="list: training list file")
    group.add_argument("--val-list", metavar="FILE", help="list: validation list file")
    group.add_argument("--data-root", metavar="DIR",
                       help="list: folder that relative image paths are resolved against "
                            "(default: each list file's folder)")
    group.add_argument("--labels", metavar="FILE",
                       help="list: class names, one per line (line 1 names label 0); default: the label numbers")
    group.add_argument("--workers", type=at_least(0), metavar="N",
                       help="data loading processes, 0 = in the main process (default: one per core, at most 4; 0 for digits)")
    group.add_argument("--classes", nargs="+", metavar="CLASS",
                       help="train and evaluate on these classes only (names or label numbers), relabelled 0.. in this order")
    group.add_argument("--train-per-class", type=at_least(1), metavar="N",
                       help="use only the first N training images of each class (e.g. to fine-tune on few images)")
    group.add_argument("--strict-images", action="store_true",
                       help="stop at the first undecodable image instead of skipping and counting it")


def data_source(args):
    """The data flags of ``args`` that say where the images come from, as a plain dict."""
    return {name: getattr(args, name, None) for name in SOURCE_FLAGS}


def default_preprocess(dataset, image_size):
    """This project's preprocessing for ``dataset`` at ``image_size``: ImageNet statistics, or the digits' own."""
    mean, std = (digits.MEAN, digits.STD) if dataset == "digits" else (IMAGENET_MEAN, IMAGENET_STD)
    return make_preprocess(image_size, mean, std)


def build_datasets(source, preprocess, strict=False):
    """Read, validate and wrap the datasets of ``source`` (a ``data_source`` dict); raises ``DataError``.

    ``preprocess`` (a ``make_preprocess`` dict) sets the training and evaluation transforms;
    ``strict``: an undecodable image stops the run instead of being skipped.
    """
    _reject_foreign_flags(source)
    dataset = source["dataset"]
    splits, class_names, sources, hint, arrays = _read_splits(source)
    if source.get("classes"):
        splits, class_names = select_classes(splits, class_names, source["classes"])
    if source.get("train_per_class"):
        splits["train"] = first_per_class(splits["train"], source["train_per_class"])
    for split, samples in splits.items():
        require_samples(samples, split, sources[split])
        if arrays is None:
            require_existing_files([path for path, _ in samples], split, sources[split], hint)
    train_labels = [label for _, label in splits["train"]]
    require_val_classes_in_train(train_labels, [label for _, label in splits["val"]], class_names, sources["val"])
    transforms = {"train": build_train_transform(preprocess, hflip=dataset not in NO_HFLIP), "eval": build_eval_transform(preprocess)}

    def build(split):
        transform = transforms["train" if split == "train" else "eval"]
        if arrays is None:
            return ImageFileDataset(splits[split], transform, train=split == "train", strict=strict)
        images = arrays[split][0][[index for index, _ in splits[split]]]
        return ArrayImageDataset(images, [label for _, label in splits[split]], transform, train=split == "train")

    return DataBundle(train=build("train"), val=build("val"), test=build("test") if "test" in splits else None,
                      class_names=class_names, preprocess=preprocess, warnings=_empty_class_warnings(train_labels, class_names))


def _read_splits(source):
    """``(splits, class_names, sources, missing-file hint, digit arrays or None)``; samples are ``(item, label)``."""
    if source["dataset"] != "digits":
        return (*_file_splits(source), None)
    arrays = dict(zip(("train", "val"), digits.digits_splits()))  # samples: (index into the split's images, label)
    splits = {split: list(enumerate(labels)) for split, (_, labels) in arrays.items()}
    return splits, list(digits.CLASS_NAMES), dict.fromkeys(arrays, "scikit-learn's digits"), "", arrays


def select_classes(splits, class_names, chosen):
    """Keep only the samples of the ``chosen`` classes (names, or label numbers), relabelled 0.. in that order."""
    labels = []
    for item in chosen:
        if item in class_names:
            labels.append(class_names.index(item))
        elif item.isdigit() and int(item) < len(class_names):
            labels.append(int(item))
        else:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise DataError(f"--classes: {item!r} is neither a class name nor a label 0..{len(class_names) - 1} (classes: {shown})")
    if len(set(labels)) != len(labels):
        raise DataError(f"--classes names a class twice: {' '.join(chosen)}")
    relabel = {old: new for new, old in enumerate(labels)}
    kept = {split: [(item, relabel[label]) for item, label in samples if label in relabel] for split, samples in splits.items()}
    return kept, [class_names[label] for label in labels]


def first_per_class(samples, count):
    """The first ``count`` samples of each class, in their order."""
    seen, kept = {}, []
    for item, label in samples:
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= count:
            kept.append((item, label))
    return kept


def _empty_class_warnings(train_labels, class_names):
    empty = sorted(set(range(len(class_names))) - set(int(label) for label in train_labels))
    if not empty:
        return []
    listed = ", ".join(f"{label} ({class_names[label]!r})" for label in empty[:10]) + (" ..." if len(empty) > 10 else "")
    return [f"{len(empty)} of the {len(class_names)} classes have no training image: {listed}. The model gets outputs "
            "for them that it never learns, and top-5 counts them; name the classes with --labels FILE, or number "
            "the labels without gaps"]


def _reject_foreign_flags(source):
    for name, flag in _FLAG_NAMES.items():
        if source.get(name) is not None and name not in _DATASET_FLAGS[source["dataset"]]:
            users = [dataset for dataset, flags in _DATASET_FLAGS.items() if name in flags]
            raise DataError(
                f"{flag} does not apply to --dataset {source['dataset']}; it is for --dataset {' or '.join(users)}"
            )


def _file_splits(source):
    """``(splits, class_names, sources, missing-file hint)`` for the file-based datasets."""
    if source["dataset"] == "flowers":
        splits, image_dir = flowers.flowers_splits(source["data_dir"])
        where = f"Flowers-102 images in {image_dir}"
        hint = (f"The image folder {image_dir} looks incomplete (an interrupted extraction?): delete it and run "
                "again to extract 102flowers.tgz afresh.")
        splits = {"train": splits["train"], "val": splits["valid"], "test": splits["test"]}
        return splits, flowers.flowers_class_names(), dict.fromkeys(splits, where), hint
    if source["dataset"] == "folder":
        data_dir = source["data_dir"]
        if data_dir is None:
            raise DataError("--dataset folder needs --data-dir DIR, with DIR/train/<class>/* and DIR/val/<class>/*")
        train, val, class_names = read_image_folders(data_dir)
        return {"train": train, "val": val}, class_names, {"train": f"{data_dir}/train", "val": f"{data_dir}/val"}, ""
    return _list_splits(source["train_list"], source["val_list"], source["data_root"], source["labels"])


def _list_splits(train_list, val_list, data_root, labels):
    if train_list is None or val_list is None:
        raise DataError("--dataset list needs both --train-list FILE and --val-list FILE "
                        "(lines of '<image path><TAB><integer label>', labels from 0)")
    class_names = read_class_names(labels) if labels is not None else None
    num_classes = len(class_names) if class_names is not None else None
    splits = {
        "train": read_list_file(train_list, data_root, num_classes),
        "val": read_list_file(val_list, data_root, num_classes),
    }
    if class_names is None:
        highest = max((label for samples in splits.values() for _, label in samples), default=-1)
        class_names = [str(label) for label in range(highest + 1)]
    sources = {"train": f"list file {train_list}", "val": f"list file {val_list}"}
    if data_root is not None:
        hint = f"Relative paths are resolved against --data-root {data_root}."
    else:
        hint = "Relative paths are resolved against the list file's folder; set --data-root to change that."
    return splits, class_names, sources, hint
