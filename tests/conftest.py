"""Shared fixtures: a tiny image-list dataset that trains in seconds, and a checkpoint trained on it."""

import numpy as np
import pytest

from paddle_googlenet import configure_threads

configure_threads()  # before any test imports Paddle, as train.py and infer.py do

CLASS_NAMES = ["blue square", "green square", "red square"]  # of the tiny dataset's labels 0, 1, 2


def write_tiny_list_dataset(root, classes=3, per_class=8, size=72, seed=0):
    """PNG images of coloured squares, one colour per class, and train/val list files; returns the lists."""
    import cv2

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "val": []}
    for label in range(classes):
        colour = np.zeros(3)
        colour[label % 3] = 200
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3)).astype(np.float64)
            image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += colour
            name = f"c{label}_{i}.png"
            cv2.imwrite(str(root / name), np.clip(image, 0, 255).astype(np.uint8))
            lines["val" if i % 4 == 0 else "train"].append(f"{name}\t{label}")
    for split, split_lines in lines.items():
        (root / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    return root / "train.txt", root / "val.txt"


def tiny_args(lists, output, *extra, model="googlenet", epochs=2):
    """train.py arguments for a short run on the tiny list dataset: 64×64, batch 6, no loader workers."""
    train_list, val_list = lists
    return [model, "--dataset", "list", "--train-list", str(train_list), "--val-list", str(val_list),
            "--image-size", "64", "--batch-size", "6", "--epochs", str(epochs), "--workers", "0", "--output", str(output),
            *map(str, extra)]


@pytest.fixture(scope="session")
def tiny_lists(tmp_path_factory):
    """(train list, val list) of 18 + 6 images in 3 classes."""
    return write_tiny_list_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def checkpoint(tiny_lists, tmp_path_factory):
    """A real train.py checkpoint: GoogLeNet at 64x64, one epoch on the tiny dataset, with class names."""
    train_list, val_list = tiny_lists
    output = tmp_path_factory.mktemp("infer_run")
    labels = output / "labels.txt"
    labels.write_text("\n".join(CLASS_NAMES) + "\n")
    argv = [
        "googlenet", "--dataset", "list", "--train-list", str(train_list), "--val-list", str(val_list),
        "--labels", str(labels), "--image-size", "64", "--batch-size", "6", "--epochs", "1", "--workers", "0",
        "--output", str(output),
    ]
    from paddle_googlenet.training import main as train_main

    assert train_main(argv) == 0
    return output / "latest.pdckpt"
