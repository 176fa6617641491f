"""benchmarks/bench_speed.py: a tiny run of each mode, so the benchmark keeps working.

The in-process tests call the script's ``main`` with ``--system-malloc`` (they must not change this
test process's malloc policy); the slow ones run the script as documented, in child processes.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_googlenet.models import get_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_speed.py"
sys.path.insert(0, str(SCRIPT.parent))

import bench_speed  # noqa: E402
import speed_peers  # noqa: E402

TINY = ["--batch", "2", "--image-size", "64", "--warmup", "0", "--trials", "2", "--steps", "1", "--pause", "0"]
KEPT = "freed memory kept (as train.py)"


def run_in_process(tmp_path, *args):
    """main(args) in this process, leaving malloc alone; returns (JSON written, exit code)."""
    out = tmp_path / "result.json"
    code = bench_speed.main([*args, "--system-malloc", "--json", str(out)])
    return json.loads(out.read_text()), code


def run_script(tmp_path, *args):
    """The script in a child process, as documented; returns (JSON written, stdout)."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_list_paths_names_every_measurable_path(capsys):
    assert bench_speed.main(["--list-paths"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["ours", "ours-plain", "vision", "torch", "torch-cl"]


@pytest.mark.parametrize("args, message", [
    (["--paths", "ours", "no-such-path"], "unknown path(s) no-such-path"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--paths", "ours", "--batch", "3", "--nproc", "2"], "--batch 3 is not divisible by --nproc 2"),
])
def test_arguments_that_cannot_run_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_speed.main([*args, "--models", "googlenet", "--system-malloc"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_compare_writes_rates_and_paired_ratios(tmp_path, capsys):
    result, code = run_in_process(tmp_path, "--models", "resnet50", "googlenet", "--paths", "ours", "ours-plain", "vision", *TINY)
    assert code == 0
    records = {(r["model"], r["path"], r["kind"]): r for r in result["records"]}
    # paddle.vision's GoogLeNet takes only 224x224 input: at 64 it is skipped and googlenet has no ratios
    assert set(records) == ({("resnet50", p, k) for p in ("ours", "ours-plain", "vision") for k in ("train", "eval")}
                            | {("googlenet", p, k) for p in ("ours", "ours-plain") for k in ("train", "eval")})
    for record in records.values():
        assert len(record["img_s_trials"]) == 2 and record["img_s_best"] >= record["img_s_median"] > 0 and record["cpu_s_per_img"] > 0
    assert records[("resnet50", "vision", "train")]["ratio_to_vision"] == 1.0
    assert records[("resnet50", "ours", "eval")]["ratio_to_vision"] > 0
    assert records[("resnet50", "ours-plain", "train")]["ratio_to_vision"] > 0
    assert records[("googlenet", "ours", "train")]["ratio_to_vision"] is None
    machine = result["machine"]
    assert machine["batch"] == 2 and machine["image_size"] == 64 and "paddle" in machine
    assert len(machine["load_average_at_start"]) == 3 and machine["malloc"] == "glibc defaults"
    assert set(result["paths"]) == {"ours", "ours-plain", "vision"} and "--plain-layers" in result["paths"]["ours-plain"]
    table = capsys.readouterr().out
    assert "ours-plain" in table and "x vision" in table


def test_torch_paths_train_our_architecture(tmp_path):
    pytest.importorskip("torch")
    ours = sum(int(np.prod(p.shape)) for p in get_model("googlenet", num_classes=102).parameters())
    assert sum(p.numel() for p in speed_peers.torch_googlenet(102).parameters()) == ours
    result, _ = run_in_process(tmp_path, "--models", "googlenet", "--paths", "ours", "torch", "torch-cl", "--no-eval", *TINY)
    rates = {r["path"]: r["img_s_median"] for r in result["records"]}
    assert set(rates) == {"ours", "torch", "torch-cl"} and min(rates.values()) > 0
    assert "torch" in result["machine"]


@pytest.mark.slow
def test_the_script_exits_2_with_a_message_and_writes_nothing(tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--paths", "no-such-path", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "unknown path(s) no-such-path" in done.stderr and not out.exists()


@pytest.mark.slow
def test_point_reports_peak_memory(tmp_path):
    result, _ = run_script(tmp_path, "point", "--models", "googlenet", "--paths", "ours", *TINY)
    (record,) = result["records"]
    assert record["kind"] == "train" and record["path"] == "ours" and record["batch"] == 2 and record["image_size"] == 64
    assert record["peak_memory_mib"] >= record["startup_memory_mib"] > 10 and record["memory_kind"] == "peak RSS"
    assert result["machine"]["malloc"] == KEPT  # as train.py, unless --system-malloc


@pytest.mark.slow
def test_curve_runs_one_child_per_point_under_the_chosen_allocator(tmp_path):
    png = tmp_path / "curve.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    result, _ = run_script(tmp_path, "curve", "--paths", "ours", "--curve-batches", "1", "2", "--curve-sizes", "64", *TINY, *plot)
    assert [(r["axis"], r["batch"], r["image_size"]) for r in result["records"]] == [("batch", 1, 64), ("batch", 2, 64), ("image_size", 2, 64)]
    assert all(r["peak_memory_mib"] > 0 and r["malloc"] == KEPT for r in result["records"])
    assert not plot or png.stat().st_size > 10_000
    result, _ = run_script(tmp_path, "curve", "--paths", "ours", "--curve-batches", "1", "--curve-sizes", "64", "--system-malloc", *TINY)
    assert [r["malloc"] for r in result["records"]] == ["glibc defaults"] * 2


@pytest.mark.slow
def test_variants_run_each_setting_in_its_own_processes(tmp_path):
    result, _ = run_script(tmp_path, "variants", "--models", "alexnet", "--paths", "ours", "--variants", "mkl-only", "heap-malloc", "dp-2x1",
                           "--rounds", "1", "--no-eval", *TINY)
    records = {r["variant"]: r for r in result["records"]}
    assert set(records) == {"mkl-only", "heap-malloc", "dp-2x1"} and result["reference_variant"] == "mkl-only"
    assert records["mkl-only"]["ratio_to_mkl-only"] == 1.0
    assert all(r["ratio_to_mkl-only"] > 0 and r["img_s_median"] > 0 for r in records.values())
    # the variant's environment alone decides the allocator: never the child's default policy
    assert records["mkl-only"]["malloc"] == records["dp-2x1"]["malloc"] == "glibc defaults"
    assert records["heap-malloc"]["malloc"] == "freed memory kept (MALLOC_* variables)"
    assert records["dp-2x1"]["nproc"] == 2 and records["heap-malloc"]["env"]["MALLOC_MMAP_MAX_"] == "0"
