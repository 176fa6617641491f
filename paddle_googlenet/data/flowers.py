"""Oxford Flowers-102, split as the legacy ``paddle.v2.dataset.flowers`` reader had it.

Three files make the dataset: ``102flowers.tgz`` (the 8,189 JPEGs under ``jpg/``),
``imagelabels.mat`` (labels 1..102, one per image) and ``setid.mat`` (1-based image ids of the
``trnid``, ``valid`` and ``tstid`` sets). Like the legacy reader and ``paddle.vision.datasets.Flowers``,
training uses ``tstid`` (6,149 images), per-epoch evaluation ``valid`` (1,020) and the test split
``trnid`` (1,020). Labels are shifted to 0..101 (Paddle's ``Flowers`` returns 1..102).

Where the files come from:

* ``--data-dir DIR``: the three files in DIR (or an already extracted ``DIR/jpg/`` instead of the
  archive); never touches the network.
* otherwise Paddle's dataset cache (``paddle.dataset.common.DATA_HOME/flowers``, the folder
  ``paddle.vision.datasets.Flowers`` uses), downloading missing files from Paddle's mirror with the
  URLs and md5 sums of ``paddle.vision.datasets.flowers``.

The archive is extracted once, next to itself as ``102flowers/jpg`` (Paddle's layout, so an
extraction made by ``paddle.vision.datasets.Flowers`` is reused), or into the cache when that folder
is not writable. Extraction writes only ``jpg/image_NNNNN.jpg`` members, into a temporary folder that
is renamed when complete, so an interrupted run never leaves a half-extracted dataset behind.
"""

import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

IMAGES_FILE, LABELS_FILE, SETID_FILE = "102flowers.tgz", "imagelabels.mat", "setid.mat"
FLOWERS_FILES = (IMAGES_FILE, LABELS_FILE, SETID_FILE)
NUM_CLASSES = 102
SPLIT_FLAGS = {"train": "tstid", "valid": "valid", "test": "trnid"}  # the legacy train/test swap
OXFORD_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
LEGACY_IMAGES_MD5 = "33bfc11892f1e405ca193ae9a9f2a118"  # the archive md5 paddle.v2 expected from Dec 2017
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download is abandoned
_IMAGE_MEMBER = re.compile(r"^(?:\./)?jpg/image_\d{5}\.jpg$")
_NAMES_FILE = Path(__file__).with_name("flowers_names.txt")


def flowers_class_names():
    """The 102 Oxford Flowers category names; list index = 0-based label."""
    names = _NAMES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != NUM_CLASSES:
        raise RuntimeError(f"{_NAMES_FILE} should hold {NUM_CLASSES} names, found {len(names)}; reinstall the package")
    return names


def flowers_splits(data_dir=None):
    """``({"train"|"valid"|"test": [(path, label 0..101), ...]}, image_dir)``.

    With ``data_dir`` the files must be there; otherwise they come from (or are downloaded into)
    Paddle's cache. Raises ``DataError`` with what to do when files are missing or malformed.
    """
    if data_dir is not None:
        folder, image_dir = _local_files(Path(data_dir))
    else:
        folder, image_dir = _cached_files()
    labels = read_labels(folder / LABELS_FILE)
    set_ids = read_set_ids(folder / SETID_FILE, len(labels))
    if image_dir is None:
        image_dir = _extract_images(folder / IMAGES_FILE)
    splits = {
        split: [(str(image_dir / f"image_{image_id:05d}.jpg"), int(labels[image_id - 1])) for image_id in set_ids[flag]]
        for split, flag in SPLIT_FLAGS.items()
    }
    return splits, image_dir


def where_to_get_files():
    """The instructions shown whenever Flowers-102 files are missing."""
    sources = _paddle_sources()
    mirror = sources[IMAGES_FILE][0].rsplit("/", 1)[0] + "/"
    return (
        f"Flowers-102 needs three files: {', '.join(FLOWERS_FILES)} (about 330 MB in all), from\n"
        f"  {OXFORD_URL}  or  {mirror}\n"
        "Put them in a folder and pass --data-dir FOLDER (no network needed), or place them in Paddle's cache\n"
        f"  {cache_dir()}\n"
        "Or train offline on scikit-learn's handwritten digits instead: --dataset digits"
    )


def cache_dir():
    """Paddle's dataset cache folder for Flowers-102 (the one ``paddle.vision.datasets.Flowers`` uses)."""
    from paddle.dataset.common import DATA_HOME

    return Path(DATA_HOME) / "flowers"


def _paddle_sources():
    """``{file name: (url, md5)}`` as published by ``paddle.vision.datasets.flowers``."""
    from paddle.vision.datasets import flowers as paddle_flowers

    return {
        IMAGES_FILE: (paddle_flowers.DATA_URL, paddle_flowers.DATA_MD5),
        LABELS_FILE: (paddle_flowers.LABEL_URL, paddle_flowers.LABEL_MD5),
        SETID_FILE: (paddle_flowers.SETID_URL, paddle_flowers.SETID_MD5),
    }


def _local_files(data_dir):
    """``(folder, image_dir or None)`` for ``--data-dir``; no network, no md5 check."""
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder.\n{where_to_get_files()}")
    image_dir = _existing_image_dir(data_dir)
    needed = (LABELS_FILE, SETID_FILE) if image_dir else FLOWERS_FILES
    missing = [name for name in needed if not (data_dir / name).is_file()]
    if missing:
        raise DataError(f"--data-dir {data_dir} lacks {', '.join(missing)}.\n{where_to_get_files()}")
    return data_dir, image_dir


def _existing_image_dir(folder):
    """An extracted ``jpg/`` folder: ``folder/jpg`` (extracted by hand) or ``folder/102flowers/jpg`` (Paddle's)."""
    for candidate in (folder / "jpg", folder / "102flowers" / "jpg"):
        if candidate.is_dir():
            return candidate
    return None


def _cached_files():
    """``(cache folder, image_dir or None)``, downloading what is missing or fails its md5 check."""
    folder = cache_dir()
    sources = _paddle_sources()
    for name in (LABELS_FILE, SETID_FILE):
        _ensure_cached(folder / name, sources[name][0], {sources[name][1]})
    image_dir = _existing_image_dir(folder)
    if image_dir is None:
        url, md5 = sources[IMAGES_FILE]
        _ensure_cached(folder / IMAGES_FILE, url, {md5, LEGACY_IMAGES_MD5})
    return folder, image_dir


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure_cached(path, url, md5s):
    if path.is_file() and _md5(path) in md5s:
        return
    try:
        download(url, path, md5s)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise DataError(
            f"Oxford Flowers-102 is not available: {path.name} is not in {path.parent} and downloading it failed\n"
            f"  ({url}: {exc}).\n{where_to_get_files()}"
        ) from None


def download(url, path, md5s):
    """Download ``url`` to ``path`` through a temporary file; the result must match one of ``md5s``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part-{os.getpid()}")
    print(f"downloading {url} to {path}", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(partial, "wb") as out:
            _copy_with_progress(response, out, int(response.headers.get("Content-Length") or 0))
        digest = _md5(partial)
        if digest not in md5s:
            raise ValueError(f"md5 {digest} does not match the expected {' or '.join(sorted(md5s))}")
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def _copy_with_progress(source, out, total):
    done, reported = 0, 0
    for chunk in iter(lambda: source.read(1 << 20), b""):
        out.write(chunk)
        done += len(chunk)
        if total and done * 10 // total > reported:
            reported = done * 10 // total
            print(f"  {done >> 20} of {total >> 20} MB", file=sys.stderr, flush=True)


def _load_mat_array(path, key, what):
    try:
        import scipy.io
    except ImportError:
        raise DataError("--dataset flowers needs SciPy to read its .mat files: pip install scipy") from None
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several unrelated types for a damaged file
        raise DataError(f"{path} is not a readable MATLAB file ({what}): {exc}") from None
    if key not in content:
        raise DataError(f"{path} holds no {key!r} array; is it the Flowers-102 {what}?")
    values = np.asarray(content[key]).ravel()
    if values.size == 0 or not np.all(np.equal(np.mod(values, 1), 0)):
        raise DataError(f"{path}: {key!r} should be a non-empty array of integers ({what})")
    return values.astype(np.int64)


def read_labels(path):
    """0-based labels (0..101) of all images, from ``imagelabels.mat`` (which stores 1..102)."""
    labels = _load_mat_array(path, "labels", "imagelabels.mat")
    if labels.min() < 1 or labels.max() > NUM_CLASSES:
        raise DataError(f"{path}: labels must lie in 1..{NUM_CLASSES}, found {labels.min()}..{labels.max()}")
    return labels - 1


def read_set_ids(path, num_images):
    """``{"trnid"|"valid"|"tstid": 1-based image ids}`` from ``setid.mat``."""
    set_ids = {flag: _load_mat_array(path, flag, "setid.mat") for flag in SPLIT_FLAGS.values()}
    for flag, ids in set_ids.items():
        if ids.min() < 1 or ids.max() > num_images:
            raise DataError(
                f"{path}: {flag!r} ids must lie in 1..{num_images} (the images labelled in imagelabels.mat)"
            )
    return set_ids


def _extraction_target(archive):
    """``102flowers/`` beside the archive (Paddle's layout) if writable, else a folder in the cache."""
    beside = archive.parent / "102flowers"
    if os.access(archive.parent, os.W_OK) and (not beside.exists() or os.access(beside, os.W_OK)):
        return beside
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "extracted" / key


def _extract_images(archive):
    """The ``jpg/`` folder of ``archive``, extracting it first unless already done."""
    target = _extraction_target(archive)
    if (target / "jpg").is_dir():
        return target / "jpg"
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".jpg.partial-{os.getpid()}"
    print(f"extracting {archive} to {target / 'jpg'} (once)", file=sys.stderr, flush=True)
    try:
        count = _extract_image_members(archive, partial)
        if count == 0:
            raise DataError(f"{archive} contains no jpg/image_NNNNN.jpg files; is it the Flowers-102 archive?")
        try:
            partial.rename(target / "jpg")
        except OSError:
            if not (target / "jpg").is_dir():  # not a concurrent extraction that finished first
                raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"cannot extract {archive} into {target}: {exc}. If the archive is damaged or incomplete, delete it "
            f"and run again.\n{where_to_get_files()}"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target / "jpg"


def _extract_image_members(archive, destination):
    """Write the archive's ``jpg/image_NNNNN.jpg`` members into ``destination``; return how many."""
    destination.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile() and _IMAGE_MEMBER.match(member.name):
                with tar.extractfile(member) as source, open(destination / Path(member.name).name, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                count += 1
    return count
