"""Inference speed on the CPU: one exported model through each engine a CPU user might pick, against dygraph.

    python benchmarks/bench_inference.py                      # GoogLeNet, 224x224, batch 32, seeded weights, sample photos
    python benchmarks/bench_inference.py --rounds 7 --output benchmarks/results/inference.json
    python benchmarks/bench_inference.py --checkpoint output/googlenet/best.pdckpt --images photos/
    python benchmarks/bench_inference.py --input random --no-int8 --threads 1

What is measured. The model (``--checkpoint``, or seeded random weights of ``--model``) is exported
once in fp32 as ``python -m paddle_googlenet.export`` exports it; that one export runs in Paddle
Inference (oneDNN, fp32, and bf16 where the CPU computes bfloat16 natively), and its ``model.onnx``
(``export.write_onnx``) in ONNX Runtime and in OpenVINO (when installed). An int8 export, calibrated
on the benchmark's own inputs, runs in Paddle Inference's oneDNN int8 kernels; dygraph evaluation of
the same weights is the baseline. Engines that cannot run here are skipped with a note.

The inputs are real photographs by default: scikit-learn's two sample photos (china.jpg,
flower.jpg), made into ``--batch-size`` distinct views (crops at several positions and scales, and
mirror images: ``photo_views``), each preprocessed by the model's evaluation transform; or the
user's ``--images``; or ``--input random`` (normal noise).

How. Every engine is timed in a child process of its own (``inference_engines.py``), one at a time,
so thread pools left spinning by one engine (OpenMP in oneDNN, ONNX Runtime's, OpenVINO's) end with
its process and take nothing from the next. The engines run in turn, and the sequence is repeated
``--rounds`` times, so changes in machine load hit all alike. Each child warms its engine up, then
times ``--batches`` runs of the whole batch (throughput, img/s, from their median) and
``--latency-runs`` single-image runs (latency, their median). All engines get ``--threads`` threads.
Reported per engine: the medians over rounds, the median over rounds of the per-round ratio to
Paddle Inference fp32 and to dygraph, and the agreement of its probabilities with dygraph's (largest
absolute difference, share of equal top-1) on the inputs. A table is printed; everything, with each
library's version and each run's process id, goes to the ``--output`` JSON file.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from paddle_googlenet.runtime import configure_threads, default_thread_count, import_paddle

configure_threads()  # before Paddle is imported: it would pin itself to one thread
from paddle_googlenet.checkpoint import build_model, load_checkpoint, read_record
from paddle_googlenet.data.inputs import collect_images
from paddle_googlenet.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, ImageReadError, build_eval_transform, load_image,
                                              make_preprocess, resized_preprocess)
from paddle_googlenet.export import export_model, write_onnx
from paddle_googlenet.inference import cpu_has_fast_bfloat16
from paddle_googlenet.models import get_model

from inference_engines import time_in_child

paddle = import_paddle()
REPO = Path(__file__).resolve().parents[1]
DYGRAPH, PADDLE_FP32, PADDLE_BF16, PADDLE_INT8 = "dygraph fp32", "inference fp32 oneDNN", "inference bf16 oneDNN", "inference int8 oneDNN"
ONNX_ENGINES = {"onnxruntime fp32": "onnxruntime", "openvino fp32": "openvino"}  # engine: the package it needs
CROP_SCALES = (0.8, 0.6, 0.45)  # side of a crop relative to the photo's
CROP_PLACES = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # (top, left) as fractions of the free space


def model_and_metadata(args):
    """``(model in eval mode, export metadata, its constructor arguments)``."""
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        record = read_record(state)
        return build_model(state), {"model_name": record.model_name, "model_kwargs": record.model_kwargs,
                                    "class_names": record.class_names,
                                    "preprocess": resized_preprocess(record.preprocess, args.image_size)}, record.model_kwargs
    paddle.seed(args.seed)
    kwargs = {"num_classes": 102}
    model = get_model(args.model, **kwargs)
    model.eval()
    return model, {"model_name": args.model, "model_kwargs": kwargs, "class_names": [str(i) for i in range(102)],
                   "preprocess": make_preprocess(args.image_size or 224, IMAGENET_MEAN, IMAGENET_STD)}, kwargs


def view_boxes():
    """``(scale, top, left, mirrored)`` of each view of a photo: the whole photo and its mirror image first,
    then crops, the scale changing fastest."""
    boxes = [(1.0, 0.5, 0.5, False), (1.0, 0.5, 0.5, True)]
    return boxes + [(scale, top, left, mirrored) for top, left in CROP_PLACES for mirrored in (False, True)
                    for scale in CROP_SCALES]


def photo_views(images, count):
    """``count`` views (HWC uint8) of ``images``: crops at several positions and scales, and mirror images.

    The images take turns, each giving its next view (``view_boxes``: 32 distinct ones per image).
    The evaluation transform then resizes and centre-crops each view as it would a photo.
    """
    boxes, views = view_boxes(), []
    for index in range(count):
        image = images[index % len(images)]
        scale, top, left, mirrored = boxes[(index // len(images)) % len(boxes)]
        height, width = image.shape[:2]
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        y, x = round((height - crop_h) * top), round((width - crop_w) * left)
        view = image[y : y + crop_h, x : x + crop_w]
        views.append(np.ascontiguousarray(view[:, ::-1] if mirrored else view))
    return views


def sample_photos():
    """scikit-learn's bundled sample photos (china.jpg, flower.jpg; 427x640 RGB) and their file names."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    return list(bunch.images), [Path(name).name for name in bunch.filenames]


def user_photos(inputs, count):
    """Up to ``count`` images (HWC uint8 RGB) of the files, folders and list files ``inputs``, and their paths."""
    paths, problems = collect_images(inputs)
    if problems:
        raise SystemExit(f"bench_inference.py: --images: {problems[0]}")
    images, names = [], []
    for path in paths[: 4 * count]:  # enough readable ones even if some are not
        try:
            images.append(load_image(path))
            names.append(str(path))
        except ImageReadError as exc:
            print(f"notice: skipped {exc}", file=sys.stderr)
        if len(images) == count:
            break
    if not images:
        raise SystemExit("bench_inference.py: --images: none of the images could be read")
    return images, names


def benchmark_inputs(args, preprocess):
    """``(float32 N x 3 x H x W batch, a description of it for the JSON)``."""
    size = int(preprocess["image_size"])
    if args.input == "random":
        rng = np.random.default_rng(args.seed)
        batch = rng.standard_normal((args.batch_size, 3, size, size), dtype=np.float32)
        return batch, {"kind": "random", "distribution": "standard normal", "seed": args.seed}
    images, names = user_photos(args.images, args.batch_size) if args.images else sample_photos()
    transform = build_eval_transform(preprocess)
    batch = np.stack([transform(view) for view in photo_views(images, args.batch_size)])
    source = "user images (--images)" if args.images else "scikit-learn sample images (sklearn.datasets.load_sample_images)"
    return batch, {"kind": "photos", "source": source, "files": names,
                   "views": "whole photo, mirror image, crops at 5 positions x 3 scales (0.8, 0.6, 0.45), mirrored or not; "
                            "then the evaluation transform"}


def convert_onnx(export_dir):
    """``(model.onnx path, how it was made)``, or ``(None, why not)`` when paddle2onnx is missing or fails.

    The converter's messages to the standard output (file descriptor 1) are held back.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 1)
            try:
                onnx_file = write_onnx(export_dir)
            finally:
                os.dup2(saved, 1)
    except Exception as exc:  # noqa: BLE001  (any converter failure only leaves out the ONNX engines)
        return None, f"no ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    finally:
        os.close(saved)
    return str(onnx_file), {"converter": f"paddle2onnx {importlib.metadata.version('paddle2onnx')}",
                            "opset": onnx_opset(onnx_file), "from": "the fp32 export (paddle_googlenet.export.write_onnx)"}


def onnx_opset(onnx_file):
    """The ONNX file's default-domain opset, where the ``onnx`` package is installed (else None)."""
    try:
        import onnx
    except ImportError:
        return None
    return next((entry.version for entry in onnx.load(str(onnx_file)).opset_import if entry.domain in ("", "ai.onnx")), None)


def prepare_job(work, model, metadata, batch, args):
    """Write the exports, ONNX model, inputs, weights and the job file the children read; ``(job file, job)``."""
    fp32_dir = export_model(model, work / "fp32", metadata)
    int8_dir = export_model(model, work / "int8", metadata, calibration=[batch]) if args.int8 else None
    onnx_file, onnx_about = convert_onnx(fp32_dir)
    np.save(work / "inputs.npy", batch)
    paddle.save(model.state_dict(), str(work / "weights.pdparams"))
    job = {"inputs_file": str(work / "inputs.npy"), "weights_file": str(work / "weights.pdparams"),
           "model_name": metadata["model_name"], "model_kwargs": metadata["model_kwargs"],
           "fp32_export": str(fp32_dir), "int8_export": str(int8_dir) if int8_dir else None, "onnx_file": onnx_file,
           "onnx": onnx_about, "threads": args.threads, "batches": args.batches, "latency_runs": args.latency_runs}
    (work / "job.json").write_text(json.dumps(job, indent=2))
    return work / "job.json", job


def engine_plan(job):
    """``(engines to time, in order; {engine: why it is skipped})``."""
    names, skipped = [DYGRAPH, PADDLE_FP32], {}
    if cpu_has_fast_bfloat16():
        names.append(PADDLE_BF16)
    else:
        skipped[PADDLE_BF16] = "no native bfloat16 on this CPU (AVX512-BF16/AMX)"
    if job["int8_export"]:
        names.append(PADDLE_INT8)
    else:
        skipped[PADDLE_INT8] = "left out (--no-int8)"
    for name, package in ONNX_ENGINES.items():
        if job["onnx_file"] is None:
            skipped[name] = job["onnx"]
        elif importlib.util.find_spec(package) is None:
            skipped[name] = f"{package} is not installed (pip install {package})"
        else:
            names.append(name)
    return names, skipped


def run_rounds(names, job_file, rounds, threads):
    """Each engine in its own child process, in turn, ``rounds`` times.

    Returns ``(per-engine lists over rounds, {engine: version and settings}, {engine: probabilities},
    {engine: why it failed})``; an engine that fails is left out of every round.
    """
    results = {name: {"img_per_s": [], "latency_ms": [], "pids": []} for name in names}
    about, probabilities, failed = {}, {}, {}
    for round_index in range(rounds):
        for name in [name for name in names if name not in failed]:
            result_file = Path(job_file).parent / f"{name.replace(' ', '_')}_{round_index}.json"
            try:
                result, probabilities[name] = time_in_child(name, job_file, result_file, threads)
            except RuntimeError as exc:
                failed[name] = f"failed: {exc}"
                print(f"note: {name} {failed[name]}; left out", flush=True)
                continue
            for key in ("img_per_s", "latency_ms"):
                results[name][key].append(result[key])
            results[name]["pids"].append(result["pid"])
            about[name] = {"version": result["version"], "settings": result["settings"]}
        print(f"round {round_index + 1}/{rounds}: " + ", ".join(
            f"{name} {results[name]['img_per_s'][-1]:.1f} img/s" for name in names if name not in failed), flush=True)
    return {name: r for name, r in results.items() if name not in failed}, about, probabilities, failed


def median_ratio(values, baseline):
    """The median over rounds of ``values[i] / baseline[i]``; None without a baseline for every round."""
    if not baseline or len(baseline) != len(values):
        return None
    return statistics.median(a / b for a, b in zip(values, baseline))


def summarize(results, about):
    """Per engine: version, settings, medians over rounds, the per-round lists and the ratios to the baselines."""
    dygraph = results.get(DYGRAPH, {}).get("img_per_s")
    fp32 = results.get(PADDLE_FP32, {}).get("img_per_s")
    summary = {}
    for name, result in results.items():
        summary[name] = {
            **about[name],
            "median_img_per_s": statistics.median(result["img_per_s"]),
            "median_latency_ms": statistics.median(result["latency_ms"]),
            "ratio_to_inference_fp32_median_per_round": median_ratio(result["img_per_s"], fp32),
            "speedup_median_per_round": median_ratio(result["img_per_s"], dygraph),
            "speedup_ratio_of_medians": statistics.median(result["img_per_s"]) / statistics.median(dygraph) if dygraph else None,
            **result,
        }
    return summary


def agreement(probabilities):
    """Largest probability difference and top-1 agreement of each engine with dygraph on the inputs."""
    reference = probabilities.get(DYGRAPH)
    if reference is None:
        return {}
    return {name: {"max_abs_prob_diff": float(np.abs(probs - reference).max()),
                   "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean())}
            for name, probs in probabilities.items()}


def machine(load_at_start):
    """The CPU, its instruction sets of interest, the versions, and ``load_at_start`` (``os.getloadavg()``)."""
    model_name, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model_name,
        "usable_cores": default_thread_count(),
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "paddle": paddle.__version__,
        "python": platform.python_version(),
        "load_average_at_start": list(load_at_start),
    }


def write_results(path, script, argv, record):
    """Write ``record`` as JSON to ``path``, with the command line (``script``, then ``argv`` or the
    process's arguments) and the load average at its end."""
    command = " ".join([Path(script).name, *(argv if argv is not None else sys.argv[1:])])
    record = dict(command=command, **record)
    record["machine"] = dict(record["machine"], load_average_at_end=list(os.getloadavg()))
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results written to {output}")


def _number(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(summary, checks, skipped, batch_size):
    print(f"\n{'engine':<24} {'version':<22} {f'img/s b={batch_size}':>11} {'latency b=1':>12} {'x Paddle fp32':>13} "
          f"{'x dygraph':>10} {'max |dp|':>9} {'top-1 =':>8}")
    for name, s in summary.items():
        check = checks.get(name, {})
        print(f"{name:<24} {s['version'].split('-')[0]:<22} {s['median_img_per_s']:>11.1f} {s['median_latency_ms']:>10.1f}ms "
              f"{_number(s['ratio_to_inference_fp32_median_per_round'], '.2f'):>13} {_number(s['speedup_median_per_round'], '.2f'):>10} "
              f"{_number(check.get('max_abs_prob_diff'), '.1e'):>9} {_number(check.get('top1_agreement'), '.0%'):>8}")
    for name, reason in skipped.items():
        print(f"{name:<24} skipped: {reason}")
    print("(medians over rounds; ratios: median over rounds of each round's ratio; max |dp| and top-1 = against dygraph)")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", help="benchmark these weights (a train.py checkpoint) instead of seeded random ones")
    parser.add_argument("--model", default="googlenet", help="model for seeded random weights")
    parser.add_argument("--image-size", type=int, help="input size (default: 224, or the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch for the throughput")
    parser.add_argument("--input", choices=("photos", "random"), default="photos",
                        help="photos: views of real photographs (scikit-learn's samples, or --images); random: normal noise")
    parser.add_argument("--images", nargs="+", metavar="FILE_OR_FOLDER", help="your own images, folders or list files instead of the samples")
    parser.add_argument("--rounds", "--trials", type=int, default=5, help="rounds; every engine runs once per round, in its own process")
    parser.add_argument("--batches", type=int, default=3, help="timed batch runs per engine and round (their median is kept)")
    parser.add_argument("--latency-runs", type=int, default=5, help="timed single-image runs per engine and round (their median is kept)")
    parser.add_argument("--threads", type=int, default=default_thread_count(), help="CPU threads of every engine")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="leave out the int8 export")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and of --input random")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "inference.json"), help="JSON results file")
    return parser


def parse_args(argv):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.images and args.input == "random":
        parser.error("--images are photos; leave out --input random")
    for name in ("batch_size", "rounds", "batches", "latency_runs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    load_at_start = os.getloadavg()  # before the exports: they load the machine themselves
    paddle.set_device("cpu")
    model, metadata, _ = model_and_metadata(args)
    size = int(metadata["preprocess"]["image_size"])
    batch, input_record = benchmark_inputs(args, metadata["preprocess"])
    info = machine(load_at_start)
    print(f"{metadata['model_name']} {size}x{size}, batch {args.batch_size}, {args.threads} threads, {input_record['kind']} input, "
          f"{info['cpu']}, load average {info['load_average_at_start'][0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        job_file, job = prepare_job(Path(tmp), model, metadata, batch, args)
        names, skipped = engine_plan(job)
        for name, reason in skipped.items():
            print(f"note: {name} skipped: {reason}", flush=True)
        results, about, probabilities, failed = run_rounds(names, job_file, args.rounds, args.threads)
    skipped.update(failed)
    summary, checks = summarize(results, about), agreement(probabilities)
    print_table(summary, checks, skipped, args.batch_size)
    write_results(args.output, __file__, argv, {
        "model": metadata["model_name"], "image_size": size, "batch_size": args.batch_size, "rounds": args.rounds,
        "batches_per_round": args.batches, "latency_runs": args.latency_runs, "threads": args.threads,
        "weights": args.checkpoint or f"seeded random ({args.seed})", "input": input_record, "parent_pid": os.getpid(),
        "onnx": job["onnx"], "machine": info, "engines": summary, "skipped": skipped, "agreement_with_dygraph": checks,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
