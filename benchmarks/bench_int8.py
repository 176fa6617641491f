"""int8 accuracy: top-1 of a checkpoint, its float32 export and its int8 exports on its run's validation images.

    python benchmarks/bench_int8.py output/googlenet/best.pdckpt
    python benchmarks/bench_int8.py output/googlenet/best.pdckpt --algos hist abs_max avg mse

The data are those the checkpoint's run trained on, read as ``train.py`` read them (its recorded
``--dataset`` and data flags): every model is scored on the validation split, through the same
evaluation transform. The int8 exports are made as ``python -m paddle_googlenet.export --int8``
makes them by default, calibrated on the run's training images, one per ``--algos`` entry.
Reported per model: top-1, agreement of its top-1 with the checkpoint's, the largest probability
difference, and for the int8 exports the time their export took. Results also go to a JSON file.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from paddle_googlenet.runtime import configure_threads, import_paddle

configure_threads()  # before Paddle is imported: it would pin itself to one thread
from paddle_googlenet.checkpoint import load_checkpoint, read_record, training_data
from paddle_googlenet.data import build_datasets
from paddle_googlenet.export import CALIBRATION_IMAGES, export_checkpoint
from paddle_googlenet.inference import CheckpointPredictor, ExportedPredictor
from paddle_googlenet.quantization import ALGORITHMS, DEFAULT_ALGORITHM

from bench_inference import machine, write_results

paddle = import_paddle()
REPO = Path(__file__).resolve().parents[1]


def validation_arrays(checkpoint):
    """``(images N x 3 x H x W float32, labels)`` of the validation split of the checkpoint's run."""
    state = load_checkpoint(checkpoint)
    val = build_datasets(training_data(state), read_record(state).preprocess).val
    items = [val[index] for index in range(len(val))]
    return np.stack([image for image, _ in items]), np.array([label for _, label in items])


def probabilities(predictor, images, batch_size=64):
    return np.concatenate([predictor.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def score(probs, labels, reference):
    return {"top1": float((probs.argmax(1) == labels).mean()),
            "top1_agreement_with_checkpoint": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(probs - reference).max())}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", help="a train.py checkpoint")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES)
    parser.add_argument("--algos", nargs="+", choices=ALGORITHMS, default=[DEFAULT_ALGORITHM])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "int8_accuracy.json"), help="JSON results file")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    paddle.set_device("cpu")
    info = machine(os.getloadavg())
    images, labels = validation_arrays(args.checkpoint)
    reference = probabilities(CheckpointPredictor(args.checkpoint, device="cpu"), images)
    results = {"checkpoint (dygraph fp32)": score(reference, labels, reference)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_checkpoint(args.checkpoint, Path(tmp) / "fp32")
        results["export fp32 oneDNN"] = score(probabilities(ExportedPredictor(fp32, device="cpu"), images), labels, reference)
        for algorithm in args.algos:
            start = time.perf_counter()
            int8 = export_checkpoint(args.checkpoint, Path(tmp) / f"int8_{algorithm}", int8=True,
                                     calibration_images=args.calibration_images, algorithm=algorithm)
            seconds = time.perf_counter() - start
            scores = score(probabilities(ExportedPredictor(int8, device="cpu"), images), labels, reference)
            results[f"export int8 oneDNN ({algorithm})"] = dict(scores, export_seconds=seconds)
    print(f"{len(labels)} validation images; int8 calibrated on {args.calibration_images} training images; "
          f"{info['cpu']}, Paddle {info['paddle']}, load average {info['load_average_at_start'][0]:.1f}")
    print(f"{'model':<32} {'top-1':>7} {'agrees':>7} {'max |dp|':>9} {'export':>8}")
    for name, r in results.items():
        seconds = f"{r['export_seconds']:.0f} s" if "export_seconds" in r else ""
        print(f"{name:<32} {100 * r['top1']:>6.2f}% {100 * r['top1_agreement_with_checkpoint']:>6.1f}% "
              f"{r['max_abs_prob_diff']:>9.4f} {seconds:>8}")
    write_results(args.output, __file__, argv, {"checkpoint": str(args.checkpoint), "images": len(labels),
                                      "calibration_images": args.calibration_images, "machine": info, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
