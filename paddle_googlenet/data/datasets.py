"""Map-style datasets of labelled images with reproducible, per-sample augmentation.

A dataset item is addressed by a *sample key* ``(index, seed, epoch)`` (the batch sampler in
``loader.py`` produces them; a plain ``int`` index means ``(index, 0, 0)``). The training transform
draws its randomness from ``np.random.default_rng((AUGMENT_STREAM, seed, epoch, index))``, so an
image is augmented the same way whichever worker process decodes it and however many there are.

An image that cannot be decoded does not raise: the item is a ``SampleFailure`` naming the file and
the reason, which the loader's collate function drops and counts (see ``loader.py``).

``dataset[key]`` gives the normalised CHW float32 image; the loader uses ``dataset.crop(key)``
(the uint8 crop) instead and normalises into the batch array itself.
"""

from dataclasses import dataclass

import numpy as np
import paddle

from .transforms import ImageReadError, load_image

SHUFFLE_STREAM = 0  # first word of the seed: keeps shuffling and augmentation streams apart
AUGMENT_STREAM = 1


def augmentation_rng(seed, epoch, index):
    """The generator for one sample's random augmentation: a pure function of (seed, epoch, index)."""
    return np.random.default_rng((AUGMENT_STREAM, seed, epoch, index))


@dataclass(frozen=True)
class SampleFailure:
    """A sample dropped because its image could not be read."""

    path: str
    reason: str


class SampleDataset(paddle.io.Dataset):
    """Labelled images, transformed on access; subclasses say where the pixels come from.

    Args:
        labels: one int label per sample.
        transform: ``TrainTransform`` (called with an rng) when ``train`` else ``EvalTransform``.
        train: apply random augmentation.
        strict: an undecodable image stops the run instead of being skipped (read by the loader).
    """

    def __init__(self, labels, transform, train, strict=False):
        super().__init__()
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.train = train
        self.strict = strict

    @property
    def image_shape(self):
        """CHW shape of a transformed image."""
        return (3, self.transform.image_size, self.transform.image_size)

    def read_image(self, index):
        """HWC uint8 RGB pixels of sample ``index``; raises ``ImageReadError``."""
        raise NotImplementedError

    def __len__(self):
        return len(self.labels)

    def crop(self, key):
        """``(HWC uint8 crop, label)`` of a sample key before normalisation, or a ``SampleFailure``.

        The loader normalises crops straight into its batch array, saving a float copy per image.
        """
        index, seed, epoch = key if isinstance(key, tuple) else (int(key), 0, 0)
        try:
            image = self.read_image(index)
        except ImageReadError as exc:
            return SampleFailure(exc.path, exc.reason)
        if self.train:
            image = self.transform.geometry(image, augmentation_rng(seed, epoch, index))
        else:
            image = self.transform.geometry(image)
        return image, self.labels[index]

    def __getitem__(self, key):
        """``(CHW float32 image, int64 label)`` of a sample key, or a ``SampleFailure``."""
        item = self.crop(key)
        if isinstance(item, SampleFailure):
            return item
        image, label = item
        return self.transform.normalize(image), label


class ImageFileDataset(SampleDataset):
    """Images read from files: ``samples`` is a sequence of ``(path, label)``."""

    def __init__(self, samples, transform, train, strict=False):
        super().__init__([label for _, label in samples], transform, train, strict)
        self.paths = [str(path) for path, _ in samples]

    def read_image(self, index):
        return load_image(self.paths[index])


class ArrayImageDataset(SampleDataset):
    """Images held in memory as an ``N x H x W x 3`` uint8 RGB array."""

    def __init__(self, images, labels, transform, train):
        super().__init__(labels, transform, train)
        self.images = np.ascontiguousarray(images, dtype=np.uint8)

    def read_image(self, index):
        return self.images[index]
