"""int8 accuracy: top-1 of a checkpoint, its float32 export and its int8 exports, on the same labelled images.

    python benchmarks/bench_int8.py output/googlenet/best.pdckpt --digits
    python benchmarks/bench_int8.py output/flowers/best.pdckpt --calibrate train.txt --val-list val.txt

The int8 exports are made as ``python -m paddle_googlenet.export --int8 --calibrate INPUT...`` makes
them, one per ``--algos`` entry, and every model reads the validation images through the same
evaluation transform. ``--digits`` writes scikit-learn's digits as PNG files (the train split to
calibrate on, the validation split of ``train.py --dataset digits`` to score) in a temporary folder.
Reported per model: top-1, agreement of its top-1 with the checkpoint's, the largest probability
difference, and the export's calibration time. Results also go to a JSON file.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from paddle_googlenet.runtime import configure_threads, import_paddle

configure_threads()  # before Paddle is imported: it would pin itself to one thread
from paddle_googlenet.data.lists import read_list_file
from paddle_googlenet.data.transforms import build_eval_transform, load_image
from paddle_googlenet.export import CALIBRATION_IMAGES, export_checkpoint
from paddle_googlenet.inference import CheckpointPredictor, ExportedPredictor
from paddle_googlenet.quantization import ALGORITHMS, DEFAULT_ALGORITHM

from bench_inference import machine

paddle = import_paddle()
REPO = Path(__file__).resolve().parents[1]


def write_digits(folder):
    """The digits splits as PNG files: ``(train folder, val list file)``."""
    from PIL import Image

    from paddle_googlenet.data.digits import digits_splits

    folder = Path(folder)
    list_files = {}
    for split, (images, labels) in zip(("train", "val"), digits_splits()):
        lines = []
        for index, (image, label) in enumerate(zip(images, labels)):
            path = folder / split / f"{index:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            lines.append(f"{path}\t{label}")
        list_files[split] = folder / f"{split}.txt"
        list_files[split].write_text("\n".join(lines) + "\n")
    return folder / "train", list_files["val"]


def probabilities(predictor, paths, batch_size=64):
    transform = build_eval_transform(predictor.preprocess)
    return np.concatenate([predictor.predict(np.stack([transform(load_image(p)) for p in paths[i : i + batch_size]]))
                           for i in range(0, len(paths), batch_size)])


def score(probs, labels, reference):
    return {"top1": float((probs.argmax(1) == labels).mean()),
            "top1_agreement_with_checkpoint": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(probs - reference).max())}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", help="a train.py checkpoint")
    parser.add_argument("--digits", action="store_true", help="calibrate and score on scikit-learn's digits (see above)")
    parser.add_argument("--calibrate", nargs="+", metavar="INPUT", help="calibration images (files, folders, list files)")
    parser.add_argument("--val-list", metavar="FILE", help="labelled images to score on: '<path><TAB><label>' lines")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES)
    parser.add_argument("--algos", nargs="+", choices=ALGORITHMS, default=[DEFAULT_ALGORITHM])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "int8_accuracy.json"), help="JSON results file")
    return parser


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    given_files = bool(args.calibrate or args.val_list)
    if args.digits == given_files or (given_files and not (args.calibrate and args.val_list)):
        parser.error("give either --digits, or --calibrate and --val-list")
    paddle.set_device("cpu")
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        calibrate, val_list = ([str(p) for p in write_digits(Path(tmp) / "digits")] if args.digits
                               else (args.calibrate, args.val_list))
        samples = read_list_file(val_list)
        paths, labels = [path for path, _ in samples], np.array([label for _, label in samples])
        checkpoint = CheckpointPredictor(args.checkpoint, device="cpu")
        reference = probabilities(checkpoint, paths)
        results = {"checkpoint (dygraph fp32)": score(reference, labels, reference)}
        fp32 = export_checkpoint(args.checkpoint, Path(tmp) / "fp32")
        results["export fp32 oneDNN"] = score(probabilities(ExportedPredictor(fp32, device="cpu"), paths), labels, reference)
        for algorithm in args.algos:
            start = time.perf_counter()
            int8 = export_checkpoint(args.checkpoint, Path(tmp) / f"int8_{algorithm}", calibrate=[calibrate],
                                     calibration_images=args.calibration_images, algorithm=algorithm)
            seconds = time.perf_counter() - start
            scores = score(probabilities(ExportedPredictor(int8, device="cpu"), paths), labels, reference)
            results[f"export int8 oneDNN ({algorithm})"] = dict(scores, export_seconds=seconds)
    print(f"{len(paths)} images; calibration on {args.calibration_images} of {'the digits train split' if args.digits else calibrate}; "
          f"{info['cpu']}, Paddle {info['paddle']}")
    print(f"{'model':<32} {'top-1':>7} {'agrees':>7} {'max |dp|':>9}")
    for name, r in results.items():
        print(f"{name:<32} {100 * r['top1']:>6.2f}% {100 * r['top1_agreement_with_checkpoint']:>6.1f}% {r['max_abs_prob_diff']:>9.4f}")
    record = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "checkpoint": str(args.checkpoint), "images": len(paths), "calibration_images": args.calibration_images,
              "machine": info, "results": results}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
