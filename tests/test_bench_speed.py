"""benchmarks/bench_speed.py: a tiny run of each mode, so the benchmark keeps working."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_googlenet.models import get_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_speed.py"
TINY = ["--batch", "2", "--image-size", "64", "--warmup", "0", "--trials", "2", "--steps", "1", "--pause", "0"]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(tmp_path, *args):
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_compare_writes_rates_and_paired_ratios(tmp_path):
    result, table = run_script(tmp_path, "--models", "resnet50", "googlenet", "--paths", "ours", "vision", "ours-static-onednn", *TINY)
    records = {(r["model"], r["path"], r["kind"]): r for r in result["records"]}
    # paddle.vision's GoogLeNet takes only 224x224 input and the static path is GoogLeNet-only at this size in the test
    assert {k for k in records if k[0] == "resnet50"} >= {("resnet50", p, k) for p in ("ours", "vision") for k in ("train", "eval")}
    assert ("googlenet", "ours-static-onednn", "train") in records and ("googlenet", "vision", "train") not in records
    for record in records.values():
        assert len(record["img_s_trials"]) == 2 and record["img_s_best"] >= record["img_s_median"] > 0
    assert records[("resnet50", "vision", "train")]["ratio_to_vision"] == 1.0
    assert records[("resnet50", "ours", "eval")]["ratio_to_vision"] > 0
    assert records[("googlenet", "ours", "train")]["ratio_to_vision"] is None
    assert result["machine"]["batch"] == 2 and "paddle" in result["machine"]
    assert "ours-static-onednn" in table and "x vision" in table


def test_point_reports_peak_memory(tmp_path):
    result, _ = run_script(tmp_path, "point", "--models", "googlenet", "--paths", "ours", *TINY)
    (record,) = result["records"]
    assert record["kind"] == "train" and record["batch"] == 2 and record["image_size"] == 64
    assert record["peak_memory_mib"] >= record["startup_memory_mib"] > 10


@pytest.mark.slow
def test_curve_and_variants_run_children(tmp_path):
    png = tmp_path / "curve.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    result, _ = run_script(tmp_path, "curve", "--paths", "ours", "--curve-batches", "1", "2", "--curve-sizes", "64", *TINY, *plot)
    assert [(r["axis"], r["batch"]) for r in result["records"]] == [("batch", 1), ("batch", 2), ("image_size", 2)]
    assert all(r["peak_memory_mib"] > 0 for r in result["records"])
    assert not plot or png.stat().st_size > 10_000
    result, _ = run_script(tmp_path, "variants", "--models", "alexnet", "--paths", "ours", "--variants", "omp-mkl", "mkl-only",
                           "--rounds", "1", "--no-eval", *TINY)
    ratios = {r["variant"]: r["ratio_to_omp-mkl"] for r in result["records"]}
    assert ratios["omp-mkl"] == 1.0 and ratios["mkl-only"] > 0


def test_children_run_under_the_allocator_policy_they_are_meant_to_measure():
    bench = load_bench()
    args = bench.resolve_defaults(bench.get_args_parser().parse_args(["curve", "--paths", "ours"]))
    assert "--system-malloc" not in bench.child_command(args, "point")  # as train.py: freed memory kept
    args.system_malloc = True
    assert "--system-malloc" in bench.child_command(args, "point")
    args.system_malloc = False  # variants: the variant's environment decides, never the child's default
    assert "--system-malloc" in bench.child_command(args, "compare", system_malloc=True)
    plain, _ = bench.variant_environment("mkl-only", 2)
    heap, _ = bench.variant_environment("heap-malloc", 2)
    assert not any(name.startswith("MALLOC_") for name in plain) and heap["MALLOC_MMAP_MAX_"] == "0"


def test_torch_googlenet_has_our_architecture():
    pytest.importorskip("torch")
    bench = load_bench()
    ours = sum(int(np.prod(p.shape)) for p in get_model("googlenet", num_classes=102).parameters())
    theirs = sum(p.numel() for p in bench.torch_googlenet(102).parameters())
    assert theirs == ours
