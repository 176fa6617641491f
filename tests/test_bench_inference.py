"""benchmarks/bench_inference.py and bench_int8.py: a tiny run of each, so the benchmarks keep working."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_inference  # noqa: E402
import bench_int8  # noqa: E402


def test_bench_inference_times_dygraph_and_the_fp32_and_int8_exports(tmp_path, capsys):
    out = tmp_path / "inference.json"
    assert bench_inference.main(["--image-size", "64", "--batch-size", "4", "--trials", "2", "--latency-runs", "1",
                                 "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    engines = record["engines"]
    assert {"dygraph fp32", "inference fp32 oneDNN", "inference int8 oneDNN"} <= set(engines)
    for engine in engines.values():
        assert len(engine["img_per_s"]) == 2 and all(rate > 0 for rate in engine["img_per_s"])
        assert engine["speedup_median_per_round"] > 0 and engine["median_latency_ms"] > 0
    assert engines["dygraph fp32"]["speedup_median_per_round"] == 1.0
    agreement = record["agreement_with_dygraph"]
    assert agreement["inference fp32 oneDNN"]["max_abs_prob_diff"] < 1e-4
    assert 0 < agreement["inference int8 oneDNN"]["max_abs_prob_diff"] < 0.2  # quantised, yet close
    assert len(record["machine"]["load_average_at_start"]) == 3 and record["command"].startswith("bench_inference.py")
    assert "inference int8 oneDNN" in capsys.readouterr().out


def test_bench_int8_scores_each_export_on_the_runs_validation_images(checkpoint, tmp_path):
    out = tmp_path / "int8.json"
    assert bench_int8.main([str(checkpoint), "--algos", "abs_max", "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    results = record["results"]
    assert record["images"] == 6 and set(results) == {"checkpoint (dygraph fp32)", "export fp32 oneDNN", "export int8 oneDNN (abs_max)"}
    assert results["checkpoint (dygraph fp32)"]["top1_agreement_with_checkpoint"] == 1.0
    assert results["export fp32 oneDNN"]["max_abs_prob_diff"] < 1e-4
    int8 = results["export int8 oneDNN (abs_max)"]
    assert 0 < int8["max_abs_prob_diff"] < 0.2 and int8["export_seconds"] > 0 and 0 <= int8["top1"] <= 1
