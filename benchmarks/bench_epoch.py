#!/usr/bin/env python
"""An epoch of ``train.py`` against the bare training-step loops it is compared with, at 224×224.

    python benchmarks/bench_epoch.py --rounds 5 --json benchmarks/results/epoch.json

Writes ``--images`` photo-like JPEGs (500×375, as ``bench_data.py``) as an image folder of two classes,
then, for ``--rounds`` rounds, runs in turn, each in a fresh process:

* ``train.py``: ``python train.py googlenet --dataset folder ... --epochs 1`` with its defaults (the
  CPU-training pass, loader workers, metrics, VisualDL, checkpoint); its rate is the epoch's
  ``img_per_s`` from ``metrics.jsonl``: training images over the seconds of the training loop, from
  its first batch to its last (evaluation and the checkpoint come after);
* ``vision``: a bare loop of ``paddle.vision.models.googlenet`` steps (forward, loss of its three
  heads, backward, Momentum) on one random batch: no data loading, no metrics, no logging;
* ``ours``: the same bare loop with this project's GoogLeNet and CPU-training pass (what
  ``bench_speed.py`` calls the path ``ours``).

Each bare loop times as many steps as the epoch has, after one warm-up step; every process gets the
same MKL threads and kernels (``configure_threads``) and train.py's malloc policy. Reported: the
median img/s of each, and the median over rounds of the per-round ratios train.py / vision and
train.py / ours (ratios of one round share the machine's state).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

KINDS = ("train.py", "vision", "ours")


def write_dataset(folder, images, seed=0):
    """``folder/{train,val}/{a,b}/*.jpg``: ``images`` training images and 16 validation ones, photo-like."""
    from bench_data import write_jpegs

    for split, count in (("train", images), ("val", 16)):
        for label, name in enumerate("ab"):
            target = Path(folder) / split / name
            target.mkdir(parents=True)
            write_jpegs(target, count // 2, seed=seed + 2 * label + (split == "val"))
    return folder


def run_train_py(data_dir, args):
    """The epoch's img/s of a real train.py run (a fresh process, a fresh output folder)."""
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, str(REPO / "train.py"), "googlenet", "--dataset", "folder", "--data-dir", str(data_dir),
                   "--image-size", str(args.image_size), "--batch-size", str(args.batch), "--epochs", "1",
                   "--output", output, *args.train_args]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"train.py failed:\n{result.stderr[-2000:]}")
        record = json.loads((Path(output) / "metrics.jsonl").read_text().splitlines()[-1])
        return record["img_per_s"]


def run_bare(kind, steps, args):
    """img/s of a bare step loop (``vision`` or ``ours``) in a fresh process."""
    command = [sys.executable, __file__, "--child", kind, "--steps", str(steps), "--batch", str(args.batch),
               "--image-size", str(args.image_size)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{kind} loop failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def child(kind, steps, batch, image_size):
    """Print the img/s of ``steps`` training steps of ``kind`` after one warm-up step."""
    import speed_peers
    from paddle_googlenet.device import keep_freed_memory

    keep_freed_memory()  # as train.py
    train_step, _ = speed_peers.PATHS[kind][0]("googlenet", batch, image_size, 2)
    train_step()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    print(steps * batch / (time.perf_counter() - start))


def measure(args):
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        data_dir = write_dataset(folder, args.images)
        steps = -(-args.images // args.batch)
        for index in range(args.rounds):
            rates = {"train.py": run_train_py(data_dir, args)}
            rates.update({kind: run_bare(kind, steps, args) for kind in KINDS[1:]})
            rounds.append(rates)
            print(f"round {index + 1}: " + ", ".join(f"{kind} {rate:.2f} img/s" for kind, rate in rates.items()), flush=True)
    return rounds


def summary(rounds):
    medians = {kind: statistics.median(r[kind] for r in rounds) for kind in KINDS}
    ratios = {f"train.py / {kind}": statistics.median(r["train.py"] / r[kind] for r in rounds) for kind in KINDS[1:]}
    return medians, ratios


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320, help="training images of the epoch (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=224, help="input size (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three measurements (default: %(default)s)")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="further train.py flags, e.g. --train-args --workers 1 (must come last)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", choices=KINDS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    from paddle_googlenet import configure_threads

    configure_threads()  # the thread count and kernels every child inherits, as train.py sets them
    args = get_args_parser().parse_args(argv)
    if args.child:
        return child(args.child, args.steps, args.batch, args.image_size)
    from speed_timing import machine_summary

    machine = machine_summary(args.batch, args.image_size, os.environ.get("MKL_NUM_THREADS"), "freed memory kept (as train.py)")
    rounds = measure(args)
    medians, ratios = summary(rounds)
    print("median img/s: " + ", ".join(f"{kind} {rate:.2f}" for kind, rate in medians.items()))
    print("median ratios: " + ", ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items()))
    if args.json:
        report = {"command": "bench_epoch.py " + " ".join(sys.argv[1:] if argv is None else argv), "machine": machine,
                  "images": args.images, "batch": args.batch, "image_size": args.image_size, "rounds": rounds,
                  "median_img_per_s": medians, "median_ratios": ratios, "load_average_at_end": os.getloadavg()}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
