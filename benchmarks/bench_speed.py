#!/usr/bin/env python
"""Training and evaluation speed of paddle-googlenet against ``paddle.vision.models`` (and PyTorch if installed).

The command line; the work is done by three modules beside this file: ``speed_peers`` (the
implementations measured, the *paths*), ``speed_timing`` (round-robin trials, paired ratios, peak
memory, the machine) and ``speed_report`` (table, JSON, plot). Modes, all printing a table and
writing JSON with ``--json PATH``:

``compare`` (the default)
    Training img/s (forward, loss with the auxiliary heads for GoogLeNet, backward, Momentum step)
    and evaluation img/s of each model under each path (``ours``, ``ours-plain``, ``vision``,
    ``torch``, ``torch-cl``; see ``--list-paths``), at one batch and image size. The paths run
    round-robin, one timed block each per trial, so a change in machine load hits them all alike;
    ratios to the reference path (``vision``) are taken trial by trial and their median is
    reported, with the best and median img/s. ``--nproc N``: N data-parallel processes.

``curve``
    Training img/s and peak memory against batch size (at ``--image-size``) and against image size
    (at ``--batch``), one fresh process per point so that each peak is its own: peak RSS on CPU,
    Paddle's allocator peak (``max_memory_allocated``) on GPU. ``--plot PNG`` draws img/s and memory
    against batch size for each path.

``variants``
    Settings that only take effect at process start (thread environment variables, oneDNN flag,
    malloc policy, data-parallel processes): each variant runs ``compare`` in a child process,
    variants alternate for ``--rounds`` rounds, and every variant's img/s is divided by the first
    variant's of the same round.

``point``
    One path and model at one batch and image size, training only, with its peak memory: what
    ``curve`` runs in each child process.

Examples::

    python benchmarks/bench_speed.py --models googlenet alexnet vgg16 resnet50 --json speed.json
    python benchmarks/bench_speed.py --models googlenet --paths ours ours-plain vision torch torch-cl
    python benchmarks/bench_speed.py curve --paths ours vision torch --plot docs/img/throughput_vs_batch.png
    python benchmarks/bench_speed.py variants --variants omp-mkl mkl-only one-thread dp-2x1

On a machine shared with other work, trust the ratios (measured interleaved) more than the
absolute figures, and repeat a run before believing a difference under about 1.2x.
"""

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the modules beside this file, also when it is loaded by path

from paddle_googlenet.runtime import usable_cores  # noqa: E402
from speed_peers import DYGRAPH_PATHS, PATHS, REFERENCE, import_paddle  # noqa: E402
from speed_report import plot_curve, print_table, write_json  # noqa: E402
from speed_timing import (machine_summary, median_or_none, paired_ratio,  # noqa: E402
                          peak_memory_bytes, profile_step, round_robin, summarise)

MODELS = ("googlenet", "alexnet", "vgg16", "resnet50")

# What paddle_googlenet.device.keep_freed_memory() sets, as environment variables read at process start.
HEAP_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**30)}

# Settings read once at process start, for ``variants``: (environment of the child, number of processes).
VARIANTS = {
    "omp-mkl": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}"}, 1),
    "mkl-only": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "{t}"}, 1),
    "mkl-generic": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "{t}", "MKL_DEBUG_CPU_TYPE": ""}, 1),  # MKL's own kernel choice
    "one-thread": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, 1),
    "blocktime-0": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}", "KMP_BLOCKTIME": "0"}, 1),
    "onednn-flag": ({"OMP_NUM_THREADS": "{t}", "MKL_NUM_THREADS": "{t}", "FLAGS_use_mkldnn": "1"}, 1),
    "dp-2x1": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, 2),
    "heap-malloc": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "{t}", **HEAP_MALLOC}, 1),
    "dp-2x1-heap": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **HEAP_MALLOC}, 2),
}


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Training/evaluation img/s of paddle-googlenet vs paddle.vision.models (and PyTorch).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("mode", nargs="?", default="compare", choices=("compare", "curve", "variants", "point"),
                        help="compare: paths side by side; curve: cost against batch and image size; variants: start-up settings; "
                             "point: one curve point")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to measure")
    parser.add_argument("--paths", nargs="+", help="implementations to measure (default: ours vision, plus torch when installed); see --list-paths")
    parser.add_argument("--list-paths", action="store_true", help="print the available paths and exit")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width")
    parser.add_argument("--num-classes", type=int, default=102, help="classifier outputs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per path before the trials")
    parser.add_argument("--trials", type=int, default=5, help="timed blocks per path (round-robin over the paths)")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed block")
    parser.add_argument("--no-eval", action="store_true", help="measure training only")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds of rest before each timed block (lets spinning OpenMP threads sleep)")
    parser.add_argument("--threads", type=int, help="CPU threads (OMP_NUM_THREADS and MKL_NUM_THREADS; default: the usable cores)")
    parser.add_argument("--nproc", type=int, default=1, help="compare: data-parallel processes (CPU: gloo, threads split; dygraph paths only)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: a GPU when Paddle sees one")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc at its defaults (by default every path runs with freed memory kept for reuse, as train.py does)")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--profile", action="store_true", help="compare: print paddle.profiler's operator table of each Paddle path's train step")
    curve = parser.add_argument_group("curve")
    curve.add_argument("--curve-batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64], help="batch sizes (at --image-size)")
    curve.add_argument("--curve-sizes", nargs="+", type=int, default=[64, 96, 128, 160, 224, 299], help="image sizes (at --batch)")
    curve.add_argument("--plot", metavar="PNG", help="draw img/s and peak memory against batch size")
    var = parser.add_argument_group("variants")
    var.add_argument("--variants", nargs="+", default=["omp-mkl", "mkl-only", "dp-2x1"], choices=sorted(VARIANTS),
                     help="start-up settings to compare; the first is the reference")
    var.add_argument("--rounds", type=int, default=3, help="variants: alternating rounds")
    return parser


def _importable(name):
    return importlib.util.find_spec(name) is not None


def usage_error(message):
    """Print ``message`` as argparse does and return the exit (status 2) to raise."""
    print(f"bench_speed.py: error: {message}", file=sys.stderr)
    return SystemExit(2)


def resolve_defaults(args):
    """Fill in the default paths and check the arguments; exit with status 2 and a message if they cannot run."""
    torch_available = _importable("torch")
    if args.paths is None:
        args.paths = ["ours", "vision"] + (["torch"] if torch_available and args.mode in ("compare", "curve") else [])
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown:
        raise usage_error(f"unknown path(s) {', '.join(unknown)}; valid: {', '.join(PATHS)} "
                         "(paths of finished experiments are described in benchmarks/NOTES.md)")
    if any(p.startswith("torch") for p in args.paths) and not torch_available:
        raise usage_error("the torch paths need PyTorch (pip install torch); it is never a dependency of paddle-googlenet")
    if args.plot and not _importable("matplotlib"):
        raise usage_error("--plot needs matplotlib (pip install matplotlib)")
    if args.mode == "curve" and args.models == list(MODELS):
        args.models = ["googlenet"]
    for name in ("batch", "image_size", "trials", "steps"):
        if getattr(args, name) < 1:
            raise usage_error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# ----------------------------------------------------------------------------------------------
# Process settings
# ----------------------------------------------------------------------------------------------

def apply_thread_environment(threads):
    """Fix the thread count before Paddle (or torch) is imported; both read it only once."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def apply_allocator_policy(args):
    """Keep freed memory for reuse as train.py does (for every path of the process alike), unless --system-malloc."""
    if not args.system_malloc:
        import_paddle()
        from paddle_googlenet.device import keep_freed_memory

        keep_freed_memory()


def malloc_policy(args):
    """How this process's malloc treats freed memory, for the JSON."""
    if args.mode == "variants":
        return "set by each variant (records[*].malloc)"
    if not args.system_malloc:
        return "freed memory kept (as train.py)"
    if all(os.environ.get(name) == value for name, value in HEAP_MALLOC.items()):
        return "freed memory kept (MALLOC_* variables)"
    return "glibc defaults"


def select_device(choice):
    paddle = import_paddle()
    gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if choice == "gpu" and not gpu:
        raise usage_error("--device gpu, but this Paddle sees no GPU")
    device = "gpu" if gpu and choice != "cpu" else "cpu"
    paddle.set_device(device)
    os.environ["BENCH_DEVICE"] = device  # the torch paths follow Paddle's choice
    return device


# ----------------------------------------------------------------------------------------------
# Measuring one model under several paths
# ----------------------------------------------------------------------------------------------

def build_paths(model, args, batch=None, wrap=None):
    """{path: (train_step, eval_step)} for the paths that implement ``model``."""
    built = {}
    for path in args.paths:
        factory = PATHS[path][0]
        steps = factory(model, batch or args.batch, args.image_size, args.num_classes, **({"wrap": wrap} if wrap else {}))
        if steps is not None:
            built[path] = steps
    return built


def measure_model(model, args, batch=None, wrap=None, images_per_step=None):
    """Records (one per path and kind) for one model, with paired ratios to the reference path when it ran."""
    built = build_paths(model, args, batch, wrap)
    images = (images_per_step or args.batch) * args.steps
    records = []
    for kind, index in (("train", 0), ("eval", 1)):
        if kind == "eval" and args.no_eval:
            continue
        steps_by_path = {path: steps[index] for path, steps in built.items() if steps[index] is not None}
        times = round_robin(steps_by_path, warmup=args.warmup, trials=args.trials, steps=args.steps, pause=args.pause)
        summaries = {path: summarise(blocks, images) for path, blocks in times.items()}
        reference = summaries.get(REFERENCE)
        for path, summary in summaries.items():
            ratio = paired_ratio(summary["img_s_trials"], reference["img_s_trials"]) if reference else None
            records.append({"model": model, "path": path, "kind": kind, "ratio_to_" + REFERENCE: ratio, **summary})
    if args.profile:
        for path, (train_step, _) in built.items():
            if not path.startswith("torch"):
                profile_step(f"{model} {path}", train_step, args.steps)
    del built
    gc.collect()
    return records


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------

def compare(args):
    apply_allocator_policy(args)
    device = select_device(args.device)
    if args.nproc > 1:
        return data_parallel_compare(args, device)
    records = []
    for model in args.models:
        records += measure_model(model, args)
    return {"mode": "compare", "device": device, "records": records}


def _data_parallel_worker(args):
    apply_allocator_policy(args)
    paddle = import_paddle()
    paddle.distributed.init_parallel_env()
    records = []
    for model in args.models:
        records += measure_model(model, args, batch=args.batch // args.nproc, wrap=paddle.DataParallel, images_per_step=args.batch)
    return records


def data_parallel_compare(args, device):
    """``--nproc N``: N DataParallel processes (threads split between them on CPU), each with batch / N."""
    if args.batch % args.nproc:
        raise usage_error(f"--batch {args.batch} is not divisible by --nproc {args.nproc}")
    unsupported = [p for p in args.paths if p not in DYGRAPH_PATHS]
    if unsupported:
        raise usage_error(f"--nproc supports the dygraph paths {', '.join(DYGRAPH_PATHS)}, not {', '.join(unsupported)}")
    paddle = import_paddle()
    if device == "cpu":
        threads = int(os.environ.get("MKL_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or usable_cores())
        if not os.environ.get("BENCH_KEEP_THREADS"):
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(max(1, threads // args.nproc))
    args.no_eval = True  # evaluation is not data-parallel here
    context = paddle.distributed.spawn(_data_parallel_worker, args=(args,), nprocs=args.nproc, join=True)
    records = context.return_queues[0].get()
    for record in records:
        record["nproc"] = args.nproc
    return {"mode": "compare", "device": device, "nproc": args.nproc, "records": records}


def point(args):
    """One path, one model, one batch and image size, in a fresh process: img/s and peak memory (for ``curve``)."""
    apply_allocator_policy(args)
    device = select_device(args.device)
    args.no_eval = True
    start_peak = peak_memory_bytes()
    records = measure_model(args.models[0], args)
    for record in records:
        record.update(batch=args.batch, image_size=args.image_size, peak_memory_mib=peak_memory_bytes() / 2**20,
                      startup_memory_mib=start_peak / 2**20, memory_kind="allocator peak" if device == "gpu" else "peak RSS")
    return {"mode": "point", "device": device, "records": records}


def child_command(args, mode, system_malloc=None, **overrides):
    """The command line of a child run of this script with the given settings."""
    settings = {"models": args.models, "paths": args.paths, "batch": args.batch, "image_size": args.image_size,
                "num_classes": args.num_classes, "warmup": args.warmup, "trials": args.trials, "steps": args.steps,
                "device": args.device, "pause": args.pause, "nproc": 1, **overrides}
    command = [sys.executable, str(Path(__file__).resolve()), mode]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        command += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    if args.no_eval or mode == "point":
        command.append("--no-eval")
    if args.system_malloc if system_malloc is None else system_malloc:
        command.append("--system-malloc")
    return command


def run_child(command, env=None):
    """Run a child of this script; return its JSON, or {"error": ...} if it failed (e.g. out of memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        done = subprocess.run(command + ["--json", str(out)], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"error": f"exit code {done.returncode}: {' | '.join(tail)}"}
        return json.loads(out.read_text())


def curve(args):
    """img/s and peak memory against batch size, then against image size; one child process per point and path."""
    points = [("batch", b, args.image_size) for b in args.curve_batches] + [("image_size", args.batch, s) for s in args.curve_sizes]
    records = []
    for axis, batch, size in points:
        for path in args.paths:  # paths alternate within a point, so load changes hit them alike
            result = run_child(child_command(args, "point", models=args.models[:1], paths=[path], batch=batch, image_size=size))
            if "error" in result:
                print(f"{path} batch {batch} size {size}: {result['error']}", file=sys.stderr)
                records.append({"model": args.models[0], "path": path, "kind": "train", "batch": batch, "image_size": size, "axis": axis, **result})
                continue
            for record in result["records"]:
                records.append({**record, "axis": axis, "malloc": result["machine"]["malloc"]})
                print(f"{path:<12} batch {batch:>3} size {size:>3}: {record['img_s_median']:7.2f} img/s (best {record['img_s_best']:.2f}), "
                      f"peak {record['peak_memory_mib']:.0f} MiB", file=sys.stderr, flush=True)
    return {"mode": "curve", "records": records}


def variant_environment(name, threads):
    """(environment, processes) of a ``variants`` child: this process's environment with the variant's settings."""
    env_settings, nproc = VARIANTS[name]
    reset = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME", "FLAGS_use_mkldnn", *HEAP_MALLOC)
    env = {k: v for k, v in os.environ.items() if k not in reset}
    env.update({k: v.format(t=threads) for k, v in env_settings.items()})
    if nproc > 1:
        env["BENCH_KEEP_THREADS"] = "1"  # the variant sets the per-process threads itself
    return env, nproc


def variants(args):
    """Each variant in a child process, alternating for ``--rounds``; img/s ratios to the first variant, round by round."""
    threads = args.threads or usable_cores()
    rows, vision_ratios, malloc = {}, {}, {}
    for _ in range(args.rounds):
        for name in args.variants:
            env, nproc = variant_environment(name, threads)
            # the variant's environment alone decides the allocator (HEAP_MALLOC or glibc's defaults)
            result = run_child(child_command(args, "compare", system_malloc=True, nproc=nproc), env=env)
            if "error" in result:
                print(f"variant {name}: {result['error']}", file=sys.stderr)
                continue
            malloc[name] = result["machine"]["malloc"]
            for record in result["records"]:
                key = (record["model"], record["path"], record["kind"])
                rows.setdefault(key, {}).setdefault(name, []).append(record["img_s_median"])
                vision_ratios.setdefault(key, {}).setdefault(name, []).append(record.get("ratio_to_" + REFERENCE))
    records = []
    reference = args.variants[0]
    for (model, path, kind), by_variant in rows.items():
        for name, rates in by_variant.items():
            ratios = [a / b for a, b in zip(rates, by_variant.get(reference, []))]
            records.append({"model": model, "path": path, "kind": kind, "variant": name, "env": VARIANTS[name][0], "nproc": VARIANTS[name][1],
                            "malloc": malloc[name], "img_s_rounds": rates, "img_s_median": statistics.median(rates),
                            "ratio_to_" + reference: statistics.median(ratios) if ratios else None,
                            "ratio_to_" + REFERENCE: median_or_none(vision_ratios[(model, path, kind)][name])})
    return {"mode": "variants", "reference_variant": reference, "threads": threads, "records": records}


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.list_paths:
        for name, (_, description) in PATHS.items():
            print(f"{name:<12} {description}")
        return 0
    args = resolve_defaults(args)
    apply_thread_environment(args.threads)
    result = {"compare": compare, "curve": curve, "variants": variants, "point": point}[args.mode](args)
    threads = args.threads or os.environ.get("MKL_NUM_THREADS") or usable_cores()
    result["machine"] = machine_summary(args.batch, args.image_size, threads, malloc_policy(args))
    result["paths"] = {path: PATHS[path][1] for path in args.paths}
    if args.mode == "curve" and args.plot:
        plot_curve(result["records"], args.plot, result["machine"])
    print_table(result)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
