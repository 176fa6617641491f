"""benchmarks/bench_vdl_size.py: a tiny run, so the measurement of VisualDL's record sizes keeps working."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_vdl_size  # noqa: E402


def test_record_sizes_by_kind_add_up(tmp_path, capsys):
    out = tmp_path / "sizes.json"
    assert bench_vdl_size.main(["--epochs", "2", "--classes", "3", "--val-images", "6", "--train-images", "12", "--batch", "6",
                                "--log-interval", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    kinds = report["bytes_per_epoch_by_kind"]
    assert {"scalar", "image", "pr_curve"} <= set(kinds) and all(size > 0 for size in kinds.values())
    assert abs(sum(kinds.values()) - report["bytes_per_epoch"]) < 1
    assert report["bytes_per_epoch_without_pr_curves"] == report["bytes_per_epoch"] - kinds["pr_curve"]
    assert "PR curves" in capsys.readouterr().out
