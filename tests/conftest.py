"""Shared fixtures: a tiny image-list dataset that trains in seconds, and a checkpoint trained on it."""

import pytest

from paddle_googlenet import configure_threads

configure_threads()  # before any test imports Paddle, as train.py and infer.py do

from helpers import CLASS_NAMES, tiny_args, write_tiny_list_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lists(tmp_path_factory):
    """(train list, val list) of 18 + 6 images in 3 classes."""
    return write_tiny_list_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def checkpoint(tiny_lists, tmp_path_factory):
    """A real train.py checkpoint: GoogLeNet at 64x64, one epoch on the tiny dataset, with class names."""
    output = tmp_path_factory.mktemp("infer_run")
    labels = output / "labels.txt"
    labels.write_text("\n".join(CLASS_NAMES) + "\n")
    from paddle_googlenet.training import main as train_main

    assert train_main(tiny_args(tiny_lists, output, "--labels", labels, epochs=1)) == 0
    return output / "latest.pdckpt"
