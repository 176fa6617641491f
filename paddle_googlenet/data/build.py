"""The data flags of ``train.py`` and the validated datasets they select.

``add_data_arguments`` adds the ``data`` flags to a parser, ``apply_dataset_defaults`` fills the
unset training flags with the chosen dataset's defaults and ``build_datasets`` reads and validates
the input into a ``DataBundle``. Every problem with the input is a ``DataError`` raised before
training starts (undecodable images excepted: they are skipped and counted during training, see
``loader.py``). See ``docs/data.md``.
"""

from dataclasses import dataclass, field
from typing import Optional

import paddle

from . import digits, flowers
from .datasets import ArrayImageDataset, ImageFileDataset
from .errors import DataError
from .folder import read_image_folders
from .lists import read_class_names, read_list_file
from .loader import default_workers
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, flowers_class_names, make_preprocess
from .validation import require_existing_files, require_samples, require_val_classes_in_train

DATASETS = ("flowers", "list", "folder", "digits")

# No "lr" for image files: the legacy rate depends on the model (0.01, ResNet 0.1), so the trainer picks it.
_IMAGE_FILE_DEFAULTS = {"image_size": 224, "epochs": 200, "batch_size": 128, "hflip": True}
DATASET_DEFAULTS = {
    "flowers": {**_IMAGE_FILE_DEFAULTS, "workers": default_workers()},
    "list": {**_IMAGE_FILE_DEFAULTS, "workers": default_workers()},
    "folder": {**_IMAGE_FILE_DEFAULTS, "workers": default_workers()},
    # Tiny in-memory images: loading in the main process beats forking workers. Batch 16 and one
    # ×0.1 decay after epoch 5 of 7: the quick start, sized to take minutes on 2 cores (docs/training.md).
    "digits": {"image_size": 64, "epochs": 7, "batch_size": 16, "lr": 0.01, "lr_decay_epochs": 5, "hflip": False, "workers": 0},
}

# Which data flags each dataset reads; any other data flag given is a mistake worth reporting.
_DATASET_FLAGS = {
    "flowers": {"data_dir"},
    "list": {"train_list", "val_list", "data_root", "labels"},
    "folder": {"data_dir"},
    "digits": set(),
}
_FLAG_NAMES = {"data_dir": "--data-dir", "train_list": "--train-list", "val_list": "--val-list",
               "data_root": "--data-root", "labels": "--labels"}


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
    group.add_argument("--workers", type=int, metavar="N",
                       help=f"data loading processes, 0 = in the main process "
                            f"(default: {default_workers()}; 0 for digits)")
    group.add_argument("--classes", nargs="+", metavar="CLASS",
                       help="train and evaluate on these classes only (names or label numbers), relabelled 0.. in this order")
    group.add_argument("--train-per-class", type=int, metavar="N",
                       help="use only the first N training images of each class (e.g. to fine-tune on few images)")
    group.add_argument("--strict-images", action="store_true",
                       help="stop at the first undecodable image instead of skipping and counting it")


def apply_dataset_defaults(args):
    """Set every ``DATASET_DEFAULTS`` entry of ``args.dataset`` that ``args`` lacks or holds as None."""
    for name, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def build_datasets(args):
    """Read, validate and wrap the datasets chosen by ``args``; raises ``DataError`` on bad input.

    Reads ``args.dataset``, the data flags, ``args.image_size`` (an int) and ``args.strict_images``;
    ``args.hflip`` if present (else the dataset's default).
    """
    _reject_foreign_flags(args)
    mean, std = (digits.MEAN, digits.STD) if args.dataset == "digits" else (IMAGENET_MEAN, IMAGENET_STD)
    preprocess = make_preprocess(args.image_size, mean, std)
    hflip = getattr(args, "hflip", None)
    hflip = DATASET_DEFAULTS[args.dataset]["hflip"] if hflip is None else hflip
    train_transform = build_train_transform(preprocess, hflip)
    eval_transform = build_eval_transform(preprocess)
    strict = bool(getattr(args, "strict_images", False))

    if args.dataset == "digits":  # samples are (index into the split's images, label)
        arrays = dict(zip(("train", "val"), digits.digits_splits()))
        splits = {split: list(enumerate(labels)) for split, (_, labels) in arrays.items()}
        class_names, sources, hint = list(digits.CLASS_NAMES), dict.fromkeys(arrays, "scikit-learn's digits"), ""
    else:  # samples are (path, label)
        splits, class_names, sources, hint = _file_splits(args)
    if getattr(args, "classes", None):
        splits, class_names = select_classes(splits, class_names, args.classes)
    if getattr(args, "train_per_class", None):
        splits["train"] = first_per_class(splits["train"], args.train_per_class)
    for split, samples in splits.items():
        require_samples(samples, split, sources[split])
        if args.dataset != "digits":
            require_existing_files([path for path, _ in samples], split, sources[split], hint)
    train_labels = [label for _, label in splits["train"]]
    require_val_classes_in_train(train_labels, [label for _, label in splits["val"]], class_names, sources["val"])

    if args.dataset == "digits":
        def dataset(split, transform):
            images = arrays[split][0][[index for index, _ in splits[split]]]
            return ArrayImageDataset(images, [label for _, label in splits[split]], transform, train=split == "train")
    else:
        def dataset(split, transform):
            return ImageFileDataset(splits[split], transform, train=split == "train", strict=strict)
    return DataBundle(
        train=dataset("train", train_transform),
        val=dataset("val", eval_transform),
        test=dataset("test", eval_transform) if "test" in splits else None,
        class_names=class_names,
        preprocess=preprocess,
        warnings=_empty_class_warnings(train_labels, class_names),
    )


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


def _reject_foreign_flags(args):
    for name, flag in _FLAG_NAMES.items():
        if getattr(args, name, None) is not None and name not in _DATASET_FLAGS[args.dataset]:
            users = [dataset for dataset, flags in _DATASET_FLAGS.items() if name in flags]
            raise DataError(
                f"{flag} does not apply to --dataset {args.dataset}; it is for --dataset {' or '.join(users)}"
            )


def _file_splits(args):
    """``(splits, class_names, sources, missing-file hint)`` for the file-based datasets."""
    if args.dataset == "flowers":
        splits, image_dir = flowers.flowers_splits(args.data_dir)
        source = f"Flowers-102 images in {image_dir}"
        hint = (f"The image folder {image_dir} looks incomplete (an interrupted extraction?): delete it and run "
                "again to extract 102flowers.tgz afresh.")
        splits = {"train": splits["train"], "val": splits["valid"], "test": splits["test"]}
        return splits, flowers_class_names(), dict.fromkeys(splits, source), hint
    if args.dataset == "folder":
        if args.data_dir is None:
            raise DataError("--dataset folder needs --data-dir DIR, with DIR/train/<class>/* and DIR/val/<class>/*")
        train, val, class_names = read_image_folders(args.data_dir)
        return {"train": train, "val": val}, class_names, {"train": f"{args.data_dir}/train",
                                                            "val": f"{args.data_dir}/val"}, ""
    return _list_splits(args)


def _list_splits(args):
    if args.train_list is None or args.val_list is None:
        raise DataError("--dataset list needs both --train-list FILE and --val-list FILE "
                        "(lines of '<image path><TAB><integer label>', labels from 0)")
    class_names = read_class_names(args.labels) if args.labels is not None else None
    num_classes = len(class_names) if class_names is not None else None
    splits = {
        "train": read_list_file(args.train_list, args.data_root, num_classes),
        "val": read_list_file(args.val_list, args.data_root, num_classes),
    }
    if class_names is None:
        highest = max((label for samples in splits.values() for _, label in samples), default=-1)
        class_names = [str(label) for label in range(highest + 1)]
    sources = {"train": f"list file {args.train_list}", "val": f"list file {args.val_list}"}
    if args.data_root is not None:
        hint = f"Relative paths are resolved against --data-root {args.data_root}."
    else:
        hint = "Relative paths are resolved against the list file's folder; set --data-root to change that."
    return splits, class_names, sources, hint
