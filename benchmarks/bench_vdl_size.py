#!/usr/bin/env python
"""How much disk a run's VisualDL records take: a Flowers-102-size run written with train.py's logger.

    python benchmarks/bench_vdl_size.py --json benchmarks/results/vdl_record_size.json

Writes, with ``paddle_googlenet.vdl.TrainingLogger`` into a temporary folder, the records of a run of
``--epochs`` epochs of the legacy Flowers-102 run's shape: 6,149 training images in batches of 128 (a
progress point every ``--log-interval`` steps), and after each epoch an evaluation of ``--val-images``
images in ``--classes`` classes (validation scalars, the per-class chart and the PR curves: one pooled
and one per class). Probabilities are random; record sizes do not depend on their values. Reports the
bytes of each kind per evaluation and for the whole run, with and without the PR curves.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_googlenet.vdl import TrainingLogger  # noqa: E402
from paddle_googlenet.vdl_records import displayed_record_file, read_records  # noqa: E402


def write_run(folder, args):
    """Write the run's records; return the path of the records file."""
    rng = np.random.default_rng(0)
    steps_per_epoch = -(-args.train_images // args.batch)
    names = [f"class {index}" for index in range(args.classes)]
    labels = np.arange(args.val_images) % args.classes
    with TrainingLogger(folder) as logger:
        for epoch in range(args.epochs):
            for step in range(args.log_interval, steps_per_epoch + 1, args.log_interval):
                logger.log_train(epoch * steps_per_epoch + step, {"loss": 1.0, "top1": 0.5, "lr": 0.01, "img_per_s": 6.0,
                                                                  "loss_aux1": 1.0, "loss_aux2": 1.0, "top1_aux1": 0.5,
                                                                  "top1_aux2": 0.5})
            step = (epoch + 1) * steps_per_epoch
            probs = rng.dirichlet(np.ones(args.classes), size=args.val_images)
            logger.log_val(step, {"loss": 1.0, "top1": 0.5, "top5": 0.8})
            logger.log_per_class(step, probs, labels, names)
    return displayed_record_file(str(folder))


def sizes_by_kind(path):
    """Bytes of the file by record kind (scalar, image, pr_curve)."""
    records, _ = read_records(path)
    totals = {}
    for record in records:
        totals[record.kind] = totals.get(record.kind, 0) + len(record.raw) + 8  # the length header
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs written (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=102)
    parser.add_argument("--val-images", type=int, default=1020)
    parser.add_argument("--train-images", type=int, default=6149)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--log-interval", type=int, default=20)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = write_run(folder, args)
        total, kinds = os.path.getsize(path), sizes_by_kind(path)
    per_evaluation = {kind: size / args.epochs for kind, size in kinds.items()}
    print(f"{args.epochs} epochs, {args.classes} classes, {args.val_images} validation images: {total / 2**20:.2f} MB in all")
    for kind, size in sorted(per_evaluation.items()):
        print(f"  {kind:10} {size / 1024:8.1f} KB per epoch")
    without_pr = total - kinds.get("pr_curve", 0)
    print(f"per epoch: {total / args.epochs / 1024:.1f} KB, of which PR curves {per_evaluation.get('pr_curve', 0) / 1024:.1f} KB; "
          f"200 epochs: {200 * total / args.epochs / 2**20:.1f} MB ({200 * without_pr / args.epochs / 2**20:.1f} MB without PR curves)")
    if args.json:
        report = {"command": "bench_vdl_size.py " + " ".join(sys.argv[1:] if argv is None else argv), **vars(args),
                  "bytes_total": total, "bytes_per_epoch_by_kind": per_evaluation,
                  "bytes_per_epoch": total / args.epochs, "bytes_per_epoch_without_pr_curves": without_pr / args.epochs}
        report.pop("json")
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
