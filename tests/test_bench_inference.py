"""benchmarks/bench_inference.py and bench_int8.py: a tiny run of each, so the benchmarks keep working."""

import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_inference  # noqa: E402
import bench_int8  # noqa: E402
from paddle_googlenet.data.transforms import make_preprocess  # noqa: E402

FP32_ENGINES = ("inference fp32 oneDNN", "onnxruntime fp32", "openvino fp32")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(JSON record, printed text)`` of a tiny benchmark: 64x64, batch 4, 2 rounds, 1 timed run of each kind."""
    out = tmp_path_factory.mktemp("bench_inference") / "inference.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert bench_inference.main(["--image-size", "64", "--batch-size", "4", "--rounds", "2", "--batches", "1",
                                     "--latency-runs", "1", "--output", str(out)]) == 0
    return json.loads(out.read_text()), printed.getvalue()


def test_every_engine_available_here_ran_with_positive_rates(tiny_run):
    record, printed = tiny_run
    engines = record["engines"]
    expected = {"dygraph fp32", "inference fp32 oneDNN", "inference int8 oneDNN"}
    if importlib.util.find_spec("onnxruntime"):
        expected.add("onnxruntime fp32")
    assert expected <= set(engines) and set(engines) | set(record["skipped"]) >= set(bench_inference.ONNX_ENGINES)
    for name, engine in engines.items():
        assert len(engine["img_per_s"]) == 2 and all(rate > 0 for rate in engine["img_per_s"]), name
        assert all(ms > 0 for ms in engine["latency_ms"]) and engine["median_latency_ms"] > 0, name
        assert engine["speedup_median_per_round"] > 0 and engine["ratio_to_inference_fp32_median_per_round"] > 0, name
        assert engine["version"].split()[0] in ("paddle", "onnxruntime", "openvino"), name
        assert name in printed
    assert engines["dygraph fp32"]["speedup_median_per_round"] == 1.0
    assert engines["inference fp32 oneDNN"]["ratio_to_inference_fp32_median_per_round"] == 1.0
    assert record["rounds"] == 2 and record["batch_size"] == 4 and record["image_size"] == 64
    assert len(record["machine"]["load_average_at_start"]) == 3 and record["command"].startswith("bench_inference.py")


def test_each_engine_ran_in_a_process_of_its_own(tiny_run):
    record, _ = tiny_run
    assert record["parent_pid"] == os.getpid()  # main() ran in this process; the engines did not
    for round_index in range(record["rounds"]):
        pids = [engine["pids"][round_index] for engine in record["engines"].values()]
        assert len(set(pids)) == len(pids) and os.getpid() not in pids


def test_fp32_engines_agree_with_dygraph_on_real_photos(tiny_run):
    record, _ = tiny_run
    assert record["input"]["kind"] == "photos" and record["input"]["files"] == ["china.jpg", "flower.jpg"]
    agreement = record["agreement_with_dygraph"]
    assert set(agreement) == set(record["engines"])
    for name in FP32_ENGINES:
        if name in agreement:
            assert agreement[name]["max_abs_prob_diff"] < 1e-4 and agreement[name]["top1_agreement"] == 1.0, name
    assert 0 < agreement["inference int8 oneDNN"]["max_abs_prob_diff"] < 0.2  # quantised, yet close


def test_every_engine_gets_the_same_thread_count(tiny_run):
    record, _ = tiny_run
    threads = record["threads"]
    settings = {name: engine["settings"] for name, engine in record["engines"].items()}
    assert settings["dygraph fp32"]["threads (MKL_NUM_THREADS)"] == str(threads)
    assert settings["inference fp32 oneDNN"]["threads (set_cpu_math_library_num_threads)"] == threads
    if "onnxruntime fp32" in settings:
        assert settings["onnxruntime fp32"]["intra_op_num_threads"] == threads
        assert settings["onnxruntime fp32"]["inter_op_num_threads"] == 1


def test_openvino_runs_the_same_onnx_model(tiny_run):
    pytest.importorskip("openvino")
    record, _ = tiny_run
    openvino = record["engines"]["openvino fp32"]
    assert openvino["version"].startswith("openvino ") and openvino["settings"]["INFERENCE_NUM_THREADS"] == record["threads"]
    assert openvino["settings"]["PERFORMANCE_HINT"] == "LATENCY" and openvino["settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert record["agreement_with_dygraph"]["openvino fp32"]["max_abs_prob_diff"] < 1e-4


def test_photo_views_are_distinct_crops_and_mirror_images():
    photo = np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8)
    views = bench_inference.photo_views([photo], 32)
    assert np.array_equal(views[0], photo) and np.array_equal(views[1], photo[:, ::-1])
    assert all(view.ndim == 3 and view.flags.c_contiguous for view in views)
    assert len({view.tobytes() for view in views}) == 32  # all distinct


def test_inputs_random_or_the_users_images(tmp_path):
    import cv2

    preprocess = make_preprocess(64)
    args = bench_inference.parse_args(["--input", "random", "--batch-size", "3"])
    batch, about = bench_inference.benchmark_inputs(args, preprocess)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == np.float32 and about["kind"] == "random"
    for index in range(2):
        cv2.imwrite(str(tmp_path / f"photo{index}.jpg"), np.full((90, 120, 3), 60 * index + 40, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    args = bench_inference.parse_args(["--images", str(tmp_path), "--batch-size", "5"])
    batch, about = bench_inference.benchmark_inputs(args, preprocess)
    assert batch.shape == (5, 3, 64, 64) and about["kind"] == "photos" and len(about["files"]) == 2
    with pytest.raises(SystemExit):
        bench_inference.parse_args(["--images", str(tmp_path), "--input", "random"])


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
