"""Decode + augment throughput of the training data pipeline at 224x224, and Pillow's decoding for comparison.

Writes synthetic photo-like JPEGs (500x375, quality 75, about 33 KB or 1.4 bits per pixel: a little
denser than Flowers-102, whose 8,189 JPEGs average 40 KB at 500 pixels on the short side, about
1 bit per pixel) into a temporary folder, then times:

* ``decode``: ``load_image`` alone (OpenCV), in this process; ``decode/pillow``: Pillow's decoding
  to an RGB array, the alternative the pipeline does not use;
* ``loader/0`` and ``loader/2`` (the ``--workers`` values): full epochs of the training loader
  (decode, resize short side to 256, random 224 crop, flip, normalise, batch), with 0 or 2 worker
  processes, worker start-up included.

Besides img/s it reports the CPU time per image (this process plus its loader workers), which
other load on a shared machine disturbs much less: 2000 / (CPU ms per image) is what two free
cores would sustain.

Each measurement runs ``--repeat`` times; on a shared machine the best run is the fairest figure.

Usage: python benchmarks/bench_data.py [--images 1200] [--batch-size 32] [--workers 0 2] [--repeat 3] [--json out.json]
"""

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paddle_googlenet import configure_threads  # noqa: E402

configure_threads()  # before Paddle is imported: it would pin itself to one thread
from paddle_googlenet.data import transforms  # noqa: E402
from paddle_googlenet.data.datasets import ImageFileDataset  # noqa: E402
from paddle_googlenet.data.loader import build_loader  # noqa: E402
from speed_timing import cpu_model  # noqa: E402

IMAGE_SIZE = 224
JPEG_SHAPE = (375, 500)  # height, width
JPEG_QUALITY = 75


def _smooth_noise(rng, shape, sigma):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-6)


def photo_like(rng, shape=JPEG_SHAPE):
    """Luminance detail at several scales and smooth colour: compresses like a photograph."""
    scales = ((40, 60), (10, 35), (3, 20), (1, 8))  # (blur sigma, amplitude)
    luma = sum(amplitude * _smooth_noise(rng, shape, sigma) for sigma, amplitude in scales)
    image = np.full((*shape, 3), 128.0, np.float32) + luma[..., None]
    for sigma, amplitude in ((30, 40), (8, 15)):
        image += amplitude * np.stack([_smooth_noise(rng, shape, sigma) for _ in range(3)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpegs(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    distinct = [photo_like(rng) for _ in range(min(count, 16))]
    paths = []
    for index in range(count):
        path = Path(folder) / f"image_{index:05d}.jpg"
        Image.fromarray(distinct[index % len(distinct)]).save(path, quality=JPEG_QUALITY)
        paths.append(str(path))
    return paths


def cpu_seconds():
    """CPU time of this process and its finished children (loader workers are joined after each epoch)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(run, images):
    """``(img/s, CPU ms per image)`` of ``run()``."""
    start, cpu = time.perf_counter(), cpu_seconds()
    run()
    return images / (time.perf_counter() - start), (cpu_seconds() - cpu) * 1000 / images


def pillow_load(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def time_decode(paths, decode):
    def run():
        for path in paths:
            decode(path)

    return measure(run, len(paths))


def time_loader(paths, workers, batch_size, epochs=2):
    preprocess = transforms.make_preprocess(IMAGE_SIZE)
    dataset = ImageFileDataset([(path, 0) for path in paths], transforms.build_train_transform(preprocess, True), True)
    loader = build_loader(dataset, batch_size, train=True, workers=workers, seed=0)

    def run():
        for epoch in range(epochs):
            loader.batch_sampler.set_epoch(epoch)
            for _ in loader:
                pass

    return measure(run, epochs * len(paths))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200, help="JPEGs per epoch (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="loader batch size (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (default: 0 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best and median are shown")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images)
        size_kb = sum(os.path.getsize(path) for path in paths) / len(paths) / 1024
        measurements = [("decode", lambda: time_decode(paths, transforms.load_image)),
                        ("decode/pillow", lambda: time_decode(paths, pillow_load))]
        measurements += [(f"loader/{workers}", lambda workers=workers: time_loader(paths, workers, args.batch_size))
                         for workers in args.workers]
        for stage, run in measurements:
            rates, cpu_ms = zip(*(run() for _ in range(args.repeat)))
            results.append({"stage": stage, "best": max(rates), "median": float(np.median(rates)),
                            "cpu_ms_per_image": float(np.median(cpu_ms)), "runs": list(rates)})

    print(f"{args.images} JPEGs {JPEG_SHAPE[1]}x{JPEG_SHAPE[0]} (~{size_kb:.0f} KB, quality {JPEG_QUALITY}), "
          f"crop {IMAGE_SIZE}, batch {args.batch_size}, {cpu_model()}, {os.cpu_count()} CPUs, load average at the start "
          f"{load_at_start[0]:.2f}")
    print(f"{'stage':14} {'best img/s':>10} {'median':>8} {'CPU ms/img':>10}")
    for row in results:
        print(f"{row['stage']:14} {row['best']:10.0f} {row['median']:8.0f} {row['cpu_ms_per_image']:10.2f}")
    if args.json:
        report = {"command": "bench_data.py " + " ".join(sys.argv[1:] if argv is None else argv), "images": args.images,
                  "image_kb": size_kb, "batch_size": args.batch_size, "cpu": cpu_model(), "cpus": os.cpu_count(),
                  "load_average_at_start": load_at_start, "load_average": os.getloadavg()[0],
                  "python": platform.python_version(), "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
