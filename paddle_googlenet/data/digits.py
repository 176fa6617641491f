"""scikit-learn's 1,797 real 8x8 handwritten digits: a real dataset that needs no download.

The 0..16 grey levels become 0..255 RGB (three equal channels); the transforms upscale them to
the training image size. The 80/20 train/validation split is stratified by class and fixed
(independent of ``--seed``), so validation accuracy is comparable between runs.
"""

import numpy as np

from .errors import DataError

CLASS_NAMES = [str(digit) for digit in range(10)]
# Pixel statistics of all 1,797 digits on the 0..1 scale: mostly black images, far from ImageNet's.
MEAN = (0.305, 0.305, 0.305)
STD = (0.376, 0.376, 0.376)
VAL_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_rgb():
    """``(images N x 8 x 8 x 3 uint8, labels N int64)`` for all 1,797 digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "--dataset digits needs scikit-learn, which is not installed: pip install scikit-learn"
        ) from None
    digits = load_digits()
    grey = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), digits.target.astype(np.int64)


def stratified_split(labels, val_fraction=VAL_FRACTION, seed=SPLIT_SEED):
    """``(train_indices, val_indices)``: ``round(val_fraction * n)`` of each class go to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def digits_splits():
    """``((train_images, train_labels), (val_images, val_labels))``."""
    images, labels = load_digits_rgb()
    train, val = stratified_split(labels)
    return (images[train], labels[train]), (images[val], labels[val])
