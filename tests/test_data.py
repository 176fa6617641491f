"""Tests of the data pipeline: datasets, validation errors, transforms and the loader.

Everything runs on tiny data written into temporary folders; nothing is downloaded.
"""

import argparse
import hashlib
import subprocess
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddle_googlenet.data import (
    DataError,
    add_data_arguments,
    build_datasets,
    build_loader,
    data_source,
    default_preprocess,
    flowers,
    transforms,
)
from paddle_googlenet.data.datasets import ImageFileDataset, augmentation_rng
from paddle_googlenet.data import digits
from paddle_googlenet.data.digits import digits_splits, stratified_split
from paddle_googlenet.data.loader import EpochBatchSampler

IMAGE_SIZE = 16


# ---------------------------------------------------------------- helpers


def build(dataset, image_size=IMAGE_SIZE, strict_images=False, **flags):
    """``build_datasets`` as train.py calls it, for ``--dataset DATASET`` and the data flags ``flags``."""
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--dataset", dataset])
    for name, value in flags.items():
        setattr(args, name, str(value))
    return build_datasets(data_source(args), default_preprocess(dataset, image_size), strict=strict_images)


def write_jpeg(path, seed=0, size=(30, 40), mode="RGB"):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def write_list(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def batches(loader, epoch=0, start_batch=0):
    loader.batch_sampler.set_epoch(epoch, start_batch)
    return [(x.numpy(), y.numpy(), int(s)) for x, y, s in loader]


@pytest.fixture
def image_list(tmp_path):
    """12 JPEGs in 3 classes with train/val list files (tab-separated, one path with a space)."""
    lines = []
    for index in range(12):
        name = f"img {index}.jpg" if index == 0 else f"img{index}.jpg"
        write_jpeg(tmp_path / "images" / name, seed=index)
        lines.append(f"images/{name}\t{index % 3}")
    write_list(tmp_path / "train.txt", lines[:9])
    write_list(tmp_path / "val.txt", lines[9:])
    return tmp_path


# ---------------------------------------------------------------- a tiny Flowers-102 in the real format

FLOWER_LABELS = [1, 2, 102] * 4  # 1-based, as imagelabels.mat stores them
SET_IDS = {"tstid": [1, 2, 3, 4, 5, 6], "valid": [7, 8, 9], "trnid": [10, 11, 12]}


def write_flowers(folder):
    """102flowers.tgz (jpg/image_NNNNN.jpg), imagelabels.mat and setid.mat for 12 images."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / "staging"
    with tarfile.open(folder / "102flowers.tgz", "w:gz") as archive:
        for image_id in range(1, len(FLOWER_LABELS) + 1):
            name = f"image_{image_id:05d}.jpg"
            archive.add(write_jpeg(staging / name, seed=image_id), arcname=f"jpg/{name}")
    for path in staging.iterdir():
        path.unlink()
    staging.rmdir()
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
    scipy.io.savemat(folder / "setid.mat", {key: np.array([ids], dtype=np.uint16) for key, ids in SET_IDS.items()})
    return folder


@pytest.fixture
def flowers_dir(tmp_path):
    pytest.importorskip("scipy")
    return write_flowers(tmp_path / "flowers")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Paddle cache and a network that refuses every download."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(flowers, "cache_dir", lambda: cache)

    def refuse(url, path, md5s):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(flowers, "download", refuse)
    return cache


def test_flowers_splits_labels_and_names(flowers_dir):
    bundle = build("flowers", data_dir=flowers_dir)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 3, 3)
    assert bundle.train.labels.tolist() == [0, 1, 101, 0, 1, 101]  # tstid, shifted to 0-based
    assert bundle.val.labels.tolist() == [0, 1, 101]
    assert bundle.test.labels.tolist() == [0, 1, 101]
    assert bundle.train.paths[0].endswith("jpg/image_00001.jpg")
    assert bundle.val.paths[0].endswith("jpg/image_00007.jpg")
    assert bundle.test.paths[0].endswith("jpg/image_00010.jpg")
    assert len(bundle.class_names) == 102
    assert bundle.class_names[0] == "pink primrose" and bundle.class_names[101] == "blackberry lily"
    assert (flowers_dir / "102flowers" / "jpg" / "image_00012.jpg").is_file()  # extracted beside the archive
    image, label = bundle.val[0]
    assert image.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and image.dtype == np.float32 and label == 0


def test_flowers_uses_an_extracted_jpg_folder_without_the_archive(flowers_dir):
    build("flowers", data_dir=flowers_dir)
    (flowers_dir / "102flowers").rename(flowers_dir / "unpacked")
    (flowers_dir / "unpacked" / "jpg").rename(flowers_dir / "jpg")
    (flowers_dir / "102flowers.tgz").unlink()
    bundle = build("flowers", data_dir=flowers_dir)
    assert bundle.train.paths[0] == str(flowers_dir / "jpg" / "image_00001.jpg")


def test_flowers_extracts_into_the_cache_when_the_data_dir_is_read_only(flowers_dir, offline_cache, monkeypatch):
    real_access = flowers.os.access
    monkeypatch.setattr(flowers.os, "access", lambda path, mode: path != flowers_dir and real_access(path, mode))
    bundle = build("flowers", data_dir=flowers_dir)
    assert bundle.train.paths[0].startswith(str(offline_cache / "extracted"))
    assert not (flowers_dir / "102flowers").exists()


def test_flowers_offline_without_files_is_one_clear_error(offline_cache):
    with pytest.raises(DataError) as error:
        build("flowers")
    message = str(error.value)
    for needed in ("102flowers.tgz", "imagelabels.mat", "setid.mat", "--data-dir", "--dataset digits",
                   "robots.ox.ac.uk", "name resolution", str(offline_cache)):
        assert needed in message


def test_flowers_downloads_into_the_cache_with_md5_checks(flowers_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(flowers, "cache_dir", lambda: cache)
    sources = {name: ((flowers_dir / name).as_uri(), hashlib.md5((flowers_dir / name).read_bytes()).hexdigest())
               for name in flowers.FLOWERS_FILES}
    monkeypatch.setattr(flowers, "_paddle_sources", lambda: sources)
    bundle = build("flowers")
    assert len(bundle.train) == 6 and bundle.train.paths[0].startswith(str(cache / "102flowers" / "jpg"))

    sources["setid.mat"] = (sources["setid.mat"][0], "0" * 32)  # the cached copy now fails its md5 check
    with pytest.raises(DataError, match="md5"):
        build("flowers")


def test_flowers_data_dir_missing_files(flowers_dir):
    (flowers_dir / "setid.mat").unlink()
    with pytest.raises(DataError, match="lacks setid.mat") as error:
        build("flowers", data_dir=flowers_dir)
    assert "--dataset digits" in str(error.value)


def test_flowers_incomplete_extraction_names_the_missing_images(flowers_dir):
    build("flowers", data_dir=flowers_dir)
    (flowers_dir / "102flowers" / "jpg" / "image_00003.jpg").unlink()
    with pytest.raises(DataError, match=r"(?s)1 of 6 image files of the train split .*image_00003.jpg.*delete it"):
        build("flowers", data_dir=flowers_dir)


def test_flowers_malformed_mat_file(flowers_dir):
    (flowers_dir / "imagelabels.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match="imagelabels.mat"):
        build("flowers", data_dir=flowers_dir)


def test_flowers_class_names_file():
    names = flowers.flowers_class_names()
    assert len(names) == 102 == len(set(names))
    assert names[:2] == ["pink primrose", "hard-leaved pocket orchid"] and names[-1] == "blackberry lily"


# ---------------------------------------------------------------- list files


def test_list_dataset(image_list):
    write_list(image_list / "names.txt", ["cat", "dog", "bird"])
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt",
                                      labels=image_list / "names.txt")
    assert (len(bundle.train), len(bundle.val), bundle.test) == (9, 3, None)
    assert bundle.class_names == ["cat", "dog", "bird"]
    assert bundle.train.paths[0] == str(image_list / "images" / "img 0.jpg")
    assert bundle.train.labels.tolist() == [0, 1, 2] * 3


def test_list_space_separated_data_root_and_default_names(image_list, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    write_list(lists / "train.txt", ["images/img1.jpg 0", "  images/img2.jpg   1  ", "", "images/img4.jpg\t0"])
    write_list(lists / "val.txt", ["images/img5.jpg 1"])
    bundle = build("list", train_list=lists / "train.txt", val_list=lists / "val.txt",
                                      data_root=image_list)
    assert bundle.class_names == ["0", "1"]
    assert bundle.train.paths == [str(image_list / "images" / f"img{i}.jpg") for i in (1, 2, 4)]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("images/img1.jpg", r"train.txt:2: expected '<image path><TAB><integer label>'"),
        ("images/img1.jpg\tcat", r"train.txt:2: label 'cat' is not an integer"),
        ("images/img1.jpg\t1.5", r"train.txt:2: label '1.5' is not an integer"),
        ("images/img1.jpg\t-1", r"train.txt:2: label -1 is out of range"),
        ("images/img1.jpg -1", r"train.txt:2: label -1 is out of range"),
        ("images/img1.jpg cat", r"train.txt:2: expected '<image path><TAB><integer label>', got 'images/img1.jpg cat'"),
        ("images/img1.jpg\t3", r"train.txt:2: label 3 is out of range; expected 0..2 \(the labels file names 3"),
    ],
)
def test_list_bad_lines_name_file_and_line(image_list, line, expected):
    write_list(image_list / "names.txt", ["a", "b", "c"])
    write_list(image_list / "train.txt", ["images/img2.jpg\t0", line])
    with pytest.raises(DataError, match=expected):
        build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt",
                                 labels=image_list / "names.txt")


def test_list_missing_files_reports_count_and_first_paths(image_list):
    write_list(image_list / "train.txt", [f"images/gone{i}.jpg\t0" for i in range(7)] + ["images/img1.jpg\t1"])
    with pytest.raises(DataError) as error:
        build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")
    message = str(error.value)
    assert "7 of 8 image files of the train split" in message
    assert "gone0.jpg" in message and "gone4.jpg" in message and "gone5.jpg" not in message
    assert "... and 2 more" in message and "--data-root" in message


def test_list_empty_split(image_list):
    write_list(image_list / "val.txt", ["", "  "])
    with pytest.raises(DataError, match="the val split is empty: list file .*val.txt"):
        build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")


def test_list_val_class_missing_from_train(image_list):
    write_list(image_list / "names.txt", ["a", "b", "c", "d"])
    write_list(image_list / "val.txt", ["images/img9.jpg\t3"])
    with pytest.raises(DataError, match=r"1 class\(es\) occur in the validation split but not in the train.*3 \('d'\)"):
        build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt",
                                 labels=image_list / "names.txt")


def test_list_flag_errors(image_list):
    with pytest.raises(DataError, match="needs both --train-list FILE and --val-list FILE"):
        build("list", train_list=image_list / "train.txt")
    with pytest.raises(DataError, match="list file .*nope.txt does not exist"):
        build("list", train_list=image_list / "nope.txt", val_list=image_list / "val.txt")
    with pytest.raises(DataError, match="--train-list does not apply to --dataset flowers; it is for --dataset list"):
        build("flowers", train_list=image_list / "train.txt")
    write_list(image_list / "names.txt", ["a", "b", "a"])
    with pytest.raises(DataError, match="repeats class name"):
        build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt",
                                 labels=image_list / "names.txt")


def test_list_comments_and_bom_are_skipped_in_training_lists_too(image_list):
    (image_list / "train.txt").write_text(
        "# three classes\nimages/img0.jpg\t0\n  # an indented comment\n\nimages/img1.jpg 1\nimages/img2.jpg\t2\n",
        encoding="utf-8-sig",
    )
    (image_list / "images" / "img 0.jpg").rename(image_list / "images" / "img0.jpg")
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")
    assert bundle.train.paths == [str(image_list / "images" / f"img{i}.jpg") for i in (0, 1, 2)]
    assert bundle.train.labels.tolist() == [0, 1, 2]


def test_list_messages_name_the_file_as_written(image_list, monkeypatch):
    monkeypatch.chdir(image_list)
    write_list(image_list / "train.txt", ["images/img1.jpg\t0", "images/img2.jpg"])
    with pytest.raises(DataError, match=r"in list file \./train\.txt:\n  \./train\.txt:2: expected"):
        build("list", train_list="./train.txt", val_list="./val.txt")
    with pytest.raises(DataError, match=r"list file \./nope\.txt does not exist"):
        build("list", train_list="./nope.txt", val_list="./val.txt")


# ---------------------------------------------------------------- image folders


def test_folder_dataset(tmp_path):
    for split, count in (("train", 3), ("val", 1)):
        for name in ("tulip", "rose"):
            for index in range(count):
                write_jpeg(tmp_path / split / name / f"{index}.JPG", seed=index)
    (tmp_path / "train" / "rose" / "notes.txt").write_text("not an image")
    write_jpeg(tmp_path / "train" / "rose" / "nested" / "deep.png")
    bundle = build("folder", data_dir=tmp_path)
    assert bundle.class_names == ["rose", "tulip"]
    assert (len(bundle.train), len(bundle.val)) == (7, 2)
    assert bundle.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="missing folder"):
        build("folder", data_dir=tmp_path)
    write_jpeg(tmp_path / "train" / "rose" / "0.jpg")
    write_jpeg(tmp_path / "val" / "lily" / "0.jpg")
    with pytest.raises(DataError, match="class folder\\(s\\) that .*train lacks: lily"):
        build("folder", data_dir=tmp_path)
    (tmp_path / "val" / "lily" / "0.jpg").rename(tmp_path / "val" / "0.jpg")
    (tmp_path / "val" / "lily").rmdir()
    with pytest.raises(DataError, match="the val split is empty"):
        build("folder", data_dir=tmp_path)
    (tmp_path / "train" / "tulip").mkdir()
    with pytest.raises(DataError, match="without images .*tulip"):
        build("folder", data_dir=tmp_path)
    with pytest.raises(DataError, match="--dataset folder needs --data-dir"):
        build("folder")


# ---------------------------------------------------------------- digits


def test_digits_sizes_split_and_range():
    pytest.importorskip("sklearn")
    (train_images, train_labels), (val_images, val_labels) = digits_splits()
    assert len(train_images) + len(val_images) == 1797
    assert len(val_images) == 359 and train_images.shape[1:] == (8, 8, 3) and train_images.dtype == np.uint8
    assert train_images.max() == 255 and train_images.min() == 0
    assert np.array_equal(np.bincount(val_labels), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    again = digits_splits()
    assert np.array_equal(again[1][0], val_images) and np.array_equal(again[0][1], train_labels)

    bundle = build("digits", image_size=32)
    assert (len(bundle.train), len(bundle.val), bundle.test, bundle.class_names[9]) == (1438, 359, None, "9")
    image, label = bundle.val[0]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    low, high = ((bound - np.array(digits.MEAN)) / np.array(digits.STD) for bound in (0, 1))
    assert np.all(image.min(axis=(1, 2)) >= low - 1e-5) and np.all(image.max(axis=(1, 2)) <= high + 1e-5)
    assert bundle.preprocess["mean"] == list(digits.MEAN)  # the digits' own statistics, stored for inference
    pixels = np.stack([bundle.val[index][0] for index in range(len(bundle.val))])
    assert abs(pixels.mean()) < 0.25 and 0.7 < pixels.std() < 1.3  # roughly standardised


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val = stratified_split(labels)
    assert np.bincount(labels[val]).tolist() == [2, 4, 6, 8]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))


def test_data_arguments():
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    parsed = parser.parse_args([])
    assert parsed.dataset == "flowers" and parsed.workers is None and parsed.strict_images is False
    assert not hasattr(parsed, "image_size") and not hasattr(parsed, "batch_size")


# ---------------------------------------------------------------- transforms


def test_make_preprocess():
    preprocess = transforms.make_preprocess(224, transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)
    assert preprocess["resize_size"] == 256 and preprocess["channel_order"] == "RGB"
    assert transforms.make_preprocess(64)["resize_size"] == 73
    with pytest.raises(ValueError):
        transforms.make_preprocess(224, resize_size=200)


def test_eval_transform_resizes_short_side_and_centre_crops():
    preprocess = transforms.make_preprocess(4, mean=(0, 0, 0), std=(1, 1, 1), resize_size=4)
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, 2:6] = 255  # the centre 4 columns are white
    out = transforms.build_eval_transform(preprocess)(image)
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    assert np.allclose(out, 1.0)
    wide = transforms.build_eval_transform(transforms.make_preprocess(16))(np.zeros((30, 90, 3), np.uint8))
    assert wide.shape == (3, 16, 16)


def test_train_transform_is_a_function_of_the_rng_and_respects_hflip():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    preprocess = transforms.make_preprocess(24)
    flip = transforms.build_train_transform(preprocess, hflip=True)
    assert np.array_equal(flip(image, augmentation_rng(1, 2, 3)), flip(image, augmentation_rng(1, 2, 3)))
    outputs = {flip(image, augmentation_rng(0, 0, index)).tobytes() for index in range(8)}
    assert len(outputs) > 1
    # without hflip, the crop equals a crop of the resized image (no flipped variant)
    plain = transforms.build_train_transform(transforms.make_preprocess(24, resize_size=28), hflip=False)
    resized = plain.normalize(transforms.resize_short_side(image, 28))  # 3 x 28 x 42
    windows = [resized[:, top : top + 24, left : left + 24] for top in range(5) for left in range(19)]
    for index in range(8):
        out = plain(image, augmentation_rng(0, 0, index))
        assert any(np.array_equal(out, window) for window in windows)


def test_denormalize_round_trips():
    preprocess = transforms.make_preprocess(8, resize_size=8)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    chw = transforms.build_eval_transform(preprocess)(image)
    assert np.array_equal(transforms.denormalize(chw, preprocess), image)


def test_bgr_channel_order_reverses_channels():
    rgb = dict(transforms.make_preprocess(4, mean=(0, 0, 0), std=(1, 1, 1)))
    bgr = dict(rgb, channel_order="BGR")
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # pure red
    assert transforms.build_eval_transform(rgb)(image)[0].min() == 1.0
    assert transforms.build_eval_transform(bgr)(image)[2].min() == 1.0


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("P", ".png"), ("CMYK", ".jpg"),
                                          ("RGB", ".jpg"), ("I;16", ".png")])
def test_load_image_modes_give_rgb_uint8(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    if mode == "I;16":
        Image.fromarray(np.full((6, 5), 0x8000, np.uint16)).save(path)
    else:
        write_jpeg(path, size=(6, 5), mode=mode)
    image = transforms.load_image(path)
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    if mode == "I;16":
        assert np.all(image == 128)
    if mode != "I;16":  # Pillow's own decoding of the file, as the reference
        reference = np.asarray(Image.open(path).convert("RGB"), np.int16)
        assert np.abs(image.astype(np.int16) - reference).mean() < (3 if mode == "CMYK" else 2)


@pytest.mark.parametrize(
    "content, reason", [(None, "No such file"), (b"", "empty"), (b"GIF89a garbage", "not a decodable image")]
)
def test_load_image_errors_name_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(transforms.ImageReadError) as error:
        transforms.load_image(path)
    assert str(path) in str(error.value) and reason in str(error.value)


def test_truncated_jpeg_is_undecodable(tmp_path):
    path = write_jpeg(tmp_path / "whole.jpg", size=(64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(transforms.ImageReadError, match="truncated JPEG"):
        transforms.load_image(path)


# ---------------------------------------------------------------- loader


def test_loader_is_deterministic_and_independent_of_workers(image_list):
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")
    single = build_loader(bundle.train, 4, train=True, workers=0, seed=7)
    double = build_loader(bundle.train, 4, train=True, workers=2, seed=7)
    for epoch in (0, 1):
        expected = batches(single, epoch)
        assert len(expected) == 3 and [len(labels) for _, labels, _ in expected] == [4, 4, 1]
        for got, want in zip(batches(double, epoch), expected, strict=True):
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert not np.array_equal(batches(single, 0)[0][0], batches(single, 1)[0][0])
    evaluation = batches(build_loader(bundle.val, 2, train=False, workers=0, seed=7))
    assert [labels.tolist() for _, labels, _ in evaluation] == [[0, 1], [2]]


def test_start_batch_skips_batches_without_reading_them(image_list):
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")
    reads = []

    class CountingDataset(ImageFileDataset):
        def read_image(self, index):
            reads.append(index)
            return super().read_image(index)

    dataset = CountingDataset(list(zip(bundle.train.paths, bundle.train.labels)), bundle.train.transform, train=True)
    loader = build_loader(dataset, 2, train=True, workers=0, seed=3)
    full = batches(loader, epoch=4)
    reads.clear()
    resumed = batches(loader, epoch=4, start_batch=3)
    assert len(reads) == 3 and len(resumed) == 2 and len(loader) == 5
    for got, want in zip(resumed, full[3:], strict=True):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    with pytest.raises(ValueError):
        loader.batch_sampler.set_epoch(0, start_batch=6)


@pytest.mark.parametrize("workers", [0, 2])
def test_undecodable_images_are_skipped_counted_and_reported_once(image_list, capfd, workers):
    (image_list / "images" / "img3.jpg").write_bytes(b"not a jpeg")
    (image_list / "images" / "img9.jpg").write_bytes(b"")
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt")
    train = build_loader(bundle.train, 4, train=True, workers=workers, seed=0)
    for epoch in (0, 1):
        result = batches(train, epoch)
        assert sum(skipped for _, _, skipped in result) == 1
        assert sum(len(labels) for _, labels, _ in result) == 8
        assert all(len(images) == len(labels) for images, labels, _ in result)
    result = batches(build_loader(bundle.val, 1, train=False, workers=workers, seed=0))
    assert [(images.shape[0], labels.tolist(), skipped) for images, labels, skipped in result] == [
        (0, [], 1), (1, [1], 0), (1, [2], 0)]  # a batch of only bad images is empty, not an error
    assert result[0][0].shape == (0, 3, IMAGE_SIZE, IMAGE_SIZE)
    err = capfd.readouterr().err
    assert err.count("img3.jpg: not a decodable image") <= 1 and err.count("img9.jpg: the file is empty") <= 1


def test_strict_images_make_an_undecodable_image_fatal(image_list):
    (image_list / "images" / "img4.jpg").write_bytes(b"not a jpeg")
    bundle = build("list", train_list=image_list / "train.txt", val_list=image_list / "val.txt",
                                      strict_images=True)
    with pytest.raises(DataError, match=r"cannot decode image .*img4.jpg: not a decodable image.*--strict-images"):
        batches(build_loader(bundle.train, 4, train=True, workers=0, seed=0))


def test_distributed_sampler_shards():
    train = [EpochBatchSampler(10, 2, True, seed=1, num_replicas=3, rank=rank, pad_shards=True) for rank in range(3)]
    shards = [sampler.epoch_indices() for sampler in train]
    assert [len(shard) for shard in shards] == [4, 4, 4] and len({len(s) for s in train}) == 1
    assert set(np.concatenate(shards).tolist()) == set(range(10))
    evaluation = [EpochBatchSampler(10, 2, False, seed=1, num_replicas=3, rank=rank) for rank in range(3)]
    assert sorted(np.concatenate([s.epoch_indices() for s in evaluation]).tolist()) == list(range(10))
    assert [len(s) for s in evaluation] == [2, 2, 2]
    assert EpochBatchSampler(10, 4, True, seed=0, drop_last=True).__len__() == 2


DEADLOCK_PROBE = """
import sys
import numpy as np
from paddle_googlenet.data import transforms
from paddle_googlenet.data.datasets import ImageFileDataset
from paddle_googlenet.data.loader import build_loader

transforms.cv2.resize(np.zeros((1000, 1000, 3), np.uint8), (700, 700))  # starts OpenCV's thread pool
preprocess = transforms.make_preprocess(16)
samples = [(path, 0) for path in sys.argv[1:]]
dataset = ImageFileDataset(samples, transforms.build_train_transform(preprocess, True), True)
loader = build_loader(dataset, 4, True, 2, 0)
for epoch in range(8):
    loader.batch_sampler.set_epoch(epoch)
    assert sum(len(labels) for _, labels, _ in loader) == len(samples)
"""


def test_workers_do_not_deadlock_after_the_parent_used_opencv_threads(image_list):
    """Worker processes forked from a parent that ran OpenCV's thread pool must not hang."""
    paths = sorted(str(path) for path in (image_list / "images").iterdir())
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", DEADLOCK_PROBE, *paths], cwd=root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
