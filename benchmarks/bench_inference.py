"""Inference speed: an exported model through Paddle Inference against dygraph evaluation of the same weights.

    python benchmarks/bench_inference.py                      # GoogLeNet, 224x224, batch 32, seeded weights
    python benchmarks/bench_inference.py --checkpoint output/googlenet/best.pdckpt --trials 9

Every engine gets a warm-up, then the engines take turns, one trial each per round, so load from
other processes on a shared machine hits them alike; each trial times one batch (throughput) and
the median of a few single-image runs (latency). Reported: medians over trials, and the speed-up
over dygraph both as a ratio of medians and as the median of per-round ratios. Results also go to
a JSON file. bf16 runs only where the CPU computes bfloat16 natively (see docs/inference.md). The
int8 export is calibrated on the benchmark's own input batch; its accuracy is measured by
bench_int8.py.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from paddle_googlenet.runtime import configure_threads, default_thread_count, import_paddle

configure_threads()  # before Paddle is imported: it would pin itself to one thread
from paddle_googlenet.checkpoint import build_model, load_checkpoint
from paddle_googlenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, make_preprocess
from paddle_googlenet.export import export_model
from paddle_googlenet.inference import ExportedPredictor, cpu_has_fast_bfloat16
from paddle_googlenet.models import get_model

paddle = import_paddle()
REPO = Path(__file__).resolve().parents[1]


class DygraphEngine:
    """The model in eval mode under ``no_grad``, softmax included like the export."""

    def __init__(self, model):
        self.model = model

    def predict(self, batch):
        with paddle.no_grad():
            return paddle.nn.functional.softmax(self.model(paddle.to_tensor(batch)), axis=-1).numpy()


def model_and_metadata(args):
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        size = args.image_size or state["preprocess"]["image_size"]
        return build_model(state), {"model_name": state["model_name"], "class_names": state["class_names"],
                                    "preprocess": dict(state["preprocess"], image_size=size)}
    paddle.seed(args.seed)
    model = get_model(args.model, num_classes=102)
    model.eval()
    return model, {"model_name": args.model, "class_names": [str(i) for i in range(102)],
                   "preprocess": make_preprocess(args.image_size or 224, IMAGENET_MEAN, IMAGENET_STD)}


def build_engines(model, export_dir, int8_dir, threads):
    """``{name: engine}``, and ``{name: reason}`` for the engines this machine cannot run."""
    engines = {"dygraph fp32": DygraphEngine(model)}
    engines["inference fp32 oneDNN"] = ExportedPredictor(export_dir, device="cpu", precision="fp32", threads=threads)
    skipped = {}
    if cpu_has_fast_bfloat16():
        engines["inference bf16 oneDNN"] = ExportedPredictor(export_dir, device="cpu", precision="bf16", threads=threads)
    else:
        skipped["inference bf16 oneDNN"] = "no native bfloat16 on this CPU (AVX512-BF16/AMX)"
    if int8_dir is not None:
        engines["inference int8 oneDNN"] = ExportedPredictor(int8_dir, device="cpu", threads=threads)
    return engines, skipped


def time_call(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(engines, batch, single, trials, latency_runs):
    """Per-engine lists of throughput (img/s) and latency (ms), one value per round."""
    for engine in engines.values():  # warm-up: oneDNN builds its primitives per input shape
        engine.predict(batch)
        engine.predict(single)
    results = {name: {"img_per_s": [], "latency_ms": []} for name in engines}
    for round_index in range(trials):
        for name, engine in engines.items():
            seconds = time_call(lambda: engine.predict(batch))
            latency = statistics.median(time_call(lambda: engine.predict(single)) for _ in range(latency_runs))
            results[name]["img_per_s"].append(len(batch) / seconds)
            results[name]["latency_ms"].append(1000 * latency)
        print(f"round {round_index + 1}/{trials}: "
              + ", ".join(f"{name} {r['img_per_s'][-1]:.1f} img/s" for name, r in results.items()), flush=True)
    return results


def agreement(engines, batch):
    """Largest probability difference and top-1 agreement of each engine with dygraph on ``batch``."""
    reference = engines["dygraph fp32"].predict(batch)
    report = {}
    for name, engine in engines.items():
        probs = engine.predict(batch)
        report[name] = {"max_abs_prob_diff": float(np.abs(probs - reference).max()),
                        "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean())}
    return report


def summarize(results, baseline="dygraph fp32"):
    summary = {}
    for name, result in results.items():
        per_round = [a / b for a, b in zip(result["img_per_s"], results[baseline]["img_per_s"])]
        summary[name] = {
            "median_img_per_s": statistics.median(result["img_per_s"]),
            "median_latency_ms": statistics.median(result["latency_ms"]),
            "speedup_ratio_of_medians": statistics.median(result["img_per_s"]) / statistics.median(results[baseline]["img_per_s"]),
            "speedup_median_per_round": statistics.median(per_round),
            **result,
        }
    return summary


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


def print_table(summary, skipped):
    print(f"\n{'engine':<24} {'img/s (batch)':>14} {'latency b=1':>12} {'x dygraph':>10} {'x per round':>12}")
    for name, s in summary.items():
        print(f"{name:<24} {s['median_img_per_s']:>14.1f} {s['median_latency_ms']:>10.1f}ms "
              f"{s['speedup_ratio_of_medians']:>10.2f} {s['speedup_median_per_round']:>12.2f}")
    for name, reason in skipped.items():
        print(f"{name:<24} skipped: {reason}")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", help="benchmark these weights instead of seeded random ones")
    parser.add_argument("--model", default="googlenet", help="model for seeded random weights")
    parser.add_argument("--image-size", type=int, help="input size (default: 224, or the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--trials", type=int, default=5, help="rounds; every engine runs once per round")
    parser.add_argument("--latency-runs", type=int, default=5, help="batch-1 runs per trial (their median is kept)")
    parser.add_argument("--threads", type=int, default=default_thread_count(), help="CPU math threads of the predictors")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="leave out the int8 export")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "inference.json"), help="JSON results file")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    load_at_start = os.getloadavg()  # before the exports: they load the machine themselves
    paddle.set_device("cpu")
    model, metadata = model_and_metadata(args)
    size = int(metadata["preprocess"]["image_size"])
    rng = np.random.default_rng(args.seed)
    batch = rng.standard_normal((args.batch_size, 3, size, size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, Path(tmp) / "fp32", metadata)
        int8_dir = export_model(model, Path(tmp) / "int8", metadata, calibration=[batch]) if args.int8 else None
        engines, skipped = build_engines(model, Path(tmp) / "fp32", int8_dir, args.threads)
        info = machine(load_at_start)
        print(f"{metadata['model_name']} {size}x{size}, batch {args.batch_size}, {args.threads} threads, "
              f"{info['cpu']}, Paddle {info['paddle']}, load average {info['load_average_at_start'][0]:.1f}", flush=True)
        checks = agreement(engines, batch)
        summary = summarize(measure(engines, batch, batch[:1], args.trials, args.latency_runs))
    print_table(summary, skipped)
    write_results(args.output, __file__, argv, {
        "model": metadata["model_name"], "image_size": size, "batch_size": args.batch_size, "trials": args.trials,
        "threads": args.threads, "weights": args.checkpoint or f"seeded random ({args.seed})",
        "machine": info, "engines": summary, "skipped": skipped, "agreement_with_dygraph": checks,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
