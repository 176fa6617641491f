"""Batching: a seeded, resumable, distributed-aware batch sampler and a DataLoader that skips bad images.

Every batch is ``(images float32 [N, 3, H, W], labels int64 [N], skipped int64 0-d)``, where
``skipped`` counts the samples of this batch dropped because their image could not be decoded, so
``N`` may be smaller than the batch size, even 0. Each undecodable file is reported once on stderr
(path and reason); with ``strict`` datasets (``--strict-images``) the first one raises ``DataError``.
"""

import sys

import numpy as np
import paddle

from ..runtime import usable_cores
from .datasets import SHUFFLE_STREAM, SampleFailure
from .errors import DataError

MAX_DEFAULT_WORKERS = 4
_REPORTED_PATHS = set()  # undecodable files already reported by this process


def default_workers():
    """Loader processes when ``--workers`` is not given: one per usable core, at most four."""
    return min(MAX_DEFAULT_WORKERS, usable_cores())


class EpochBatchSampler:
    """Batches of sample keys ``(index, seed, epoch)``; the order is a pure function of ``(seed, epoch)``.

    Args:
        num_samples: dataset size.
        batch_size: samples per batch (per rank).
        shuffle: permute the indices with ``default_rng((SHUFFLE_STREAM, seed, epoch))``.
        seed: non-negative run seed, passed on in the keys for the augmentation.
        drop_last: drop this rank's last incomplete batch.
        num_replicas, rank: shard the epoch across ``num_replicas`` processes; this one gets every
            ``num_replicas``-th index starting at ``rank``.
        pad_shards: repeat indices so every rank gets the same number of samples (and batches), as
            ``paddle.io.DistributedBatchSampler`` does. Use it for training; leave it off for
            evaluation, where the unpadded shards partition the dataset exactly.

    Call ``set_epoch(epoch, start_batch)`` before iterating: ``start_batch`` skips the first batches
    of the epoch without reading them (to resume mid-epoch). ``len()`` is the full epoch's batch count.
    """

    def __init__(
        self, num_samples, batch_size, shuffle, seed, drop_last=False, num_replicas=1, rank=0, pad_shards=False
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.pad_shards = pad_shards
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        """Select the epoch to iterate and how many of its leading batches to skip."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} is outside 0..{len(self)} (batches in the epoch)")
        self.epoch = epoch
        self.start_batch = start_batch

    def _shard_size(self):
        if self.pad_shards:
            return -(-self.num_samples // self.num_replicas)
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def epoch_indices(self):
        """This rank's dataset indices for the current epoch, in batch order."""
        if self.shuffle:
            order = np.random.default_rng((SHUFFLE_STREAM, self.seed, self.epoch)).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        if self.pad_shards and self.num_samples:
            order = np.resize(order, self._shard_size() * self.num_replicas)  # wraps around to pad
        return order[self.rank :: self.num_replicas]

    def __iter__(self):
        indices = self.epoch_indices()
        for batch in range(self.start_batch, len(self)):
            chunk = indices[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield [(int(index), self.seed, self.epoch) for index in chunk]

    def __len__(self):
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)


class _Crops:
    """The dataset as the loader reads it: ``dataset.crop(key)``, the uint8 crop before normalisation."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset.crop(key)


class NormalizeCollate:
    """Normalise the good crops straight into one batch array; count and list the failed samples.

    Returns ``(images, labels, skipped, failures, num_good)``; the loader reports and strips
    ``failures`` and ``num_good``. Paddle cannot pass zero-size arrays between processes, so a batch
    without a good sample carries one zero placeholder image (label -1) that the loader cuts off.
    """

    def __init__(self, normalize, image_shape):
        self.normalize = normalize
        self.image_shape = tuple(image_shape)

    def __call__(self, items):
        good = [item for item in items if not isinstance(item, SampleFailure)]
        failures = [[item.path, item.reason] for item in items if isinstance(item, SampleFailure)]
        images = np.zeros((max(len(good), 1), *self.image_shape), np.float32)
        for slot, (crop, _) in zip(images, good):
            self.normalize.into(crop, slot)
        labels = np.array([label for _, label in good] or [-1], np.int64)
        return images, labels, np.array(len(failures), np.int64), failures, len(good)


class ImageDataLoader(paddle.io.DataLoader):
    """A ``paddle.io.DataLoader`` yielding ``(images, labels, skipped)`` and reporting undecodable images.

    It reads ``dataset.crop(key)`` through a thin view and normalises in the collate function, so
    each image is converted to float32 once, directly into its batch.
    """

    def __init__(self, dataset, batch_sampler, workers):
        super().__init__(
            _Crops(dataset),
            batch_sampler=batch_sampler,
            num_workers=workers,
            collate_fn=NormalizeCollate(dataset.transform.normalize, dataset.image_shape),
            return_list=True,
        )
        self.strict = getattr(dataset, "strict", False)

    def __iter__(self):
        for images, labels, skipped, failures, num_good in super().__iter__():
            for path, reason in failures:
                self._report_failure(path, reason)
            if num_good == 0:
                images, labels = images[:0], labels[:0]
            yield images, labels, skipped

    def _report_failure(self, path, reason):
        if self.strict:
            raise DataError(
                f"cannot decode image {path}: {reason}. Fix or remove the file, or run without "
                "--strict-images to skip undecodable images."
            )
        if path not in _REPORTED_PATHS:
            _REPORTED_PATHS.add(path)
            print(f"warning: skipping undecodable image {path}: {reason}", file=sys.stderr, flush=True)


def build_loader(dataset, batch_size, train, workers, seed, drop_last=False):
    """A loader over ``dataset`` for training (shuffled, padded shards) or evaluation (in order).

    Under ``paddle.distributed`` (world size > 1) each rank iterates its own shard. Call
    ``loader.batch_sampler.set_epoch(epoch, start_batch=0)`` before each epoch.

    Args:
        dataset: a dataset from ``build_datasets``.
        batch_size: samples per batch on this rank.
        train: shuffle and augment; otherwise sequential, no sample dropped or repeated.
        workers: loader processes (0 = load in the main process; None = ``default_workers()``).
        seed: non-negative seed of the shuffle order and augmentation.
        drop_last: training only: drop the last incomplete batch.
    """
    sampler = EpochBatchSampler(
        len(dataset),
        batch_size,
        shuffle=train,
        seed=int(seed),
        drop_last=drop_last and train,
        num_replicas=paddle.distributed.get_world_size(),
        rank=paddle.distributed.get_rank(),
        pad_shards=train,
    )
    return ImageDataLoader(dataset, sampler, default_workers() if workers is None else int(workers))
