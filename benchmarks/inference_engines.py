"""The engines of bench_inference.py, each timed in a child process of its own.

    python benchmarks/inference_engines.py --engine "onnxruntime fp32" --job JOB.json --result OUT.json

``bench_inference.py`` (the parent) writes a job file (inputs, weights, export folders, ONNX file,
threads, how many runs) and starts this script once per engine and round (``time_in_child``). The
child opens its one engine with ``threads`` threads, warms it up (one batch, one single image), times
``batches`` runs of the whole batch (throughput: batch size / median seconds) and ``latency_runs``
single-image runs (latency: their median), and writes that, its process id, the library version and
its settings to the result file, and the probabilities of the batch beside it (``.npy``). The child
then exits, so no thread pool left spinning by one engine (oneDNN's OpenMP threads, ONNX Runtime's
and OpenVINO's pools) takes CPU time from the next. Only the Paddle engines import Paddle.

The engines (``ENGINES``): dygraph evaluation of the weights (the model in eval mode under
``no_grad``, softmax included like the export); Paddle Inference with oneDNN on the fp32 export, in
fp32 or bf16, and on the int8 export (the project's ``ExportedPredictor``); ONNX Runtime (CPU
execution provider) and OpenVINO (CPU plugin, fp32) on the ``model.onnx`` converted from the fp32
export by ``paddle_googlenet.export.write_onnx``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ENGINES = ("dygraph fp32", "inference fp32 oneDNN", "inference bf16 oneDNN", "inference int8 oneDNN",
           "onnxruntime fp32", "openvino fp32")
OPENVINO_HINT = "LATENCY"  # one stream using every thread: see open_openvino


def paddle_in_child(threads):
    """Paddle, imported after ``configure_threads(threads)`` (MKL's thread count and kernels, as train.py does)."""
    from paddle_googlenet.runtime import configure_threads, import_paddle

    configure_threads(threads)
    return import_paddle()


def open_dygraph(job):
    paddle = paddle_in_child(job["threads"])
    from paddle_googlenet.models import get_model

    paddle.set_device("cpu")
    model = get_model(job["model_name"], **job["model_kwargs"])
    model.set_state_dict(paddle.load(job["weights_file"]))
    model.eval()

    def predict(batch):
        with paddle.no_grad():
            return paddle.nn.functional.softmax(model(paddle.to_tensor(batch)), axis=-1).numpy()

    return predict, f"paddle {paddle.__version__}", {"threads (MKL_NUM_THREADS)": os.environ.get("MKL_NUM_THREADS")}


def open_paddle_inference(job, export_dir, precision):
    paddle = paddle_in_child(job["threads"])
    from paddle_googlenet.inference import ExportedPredictor

    predictor = ExportedPredictor(export_dir, device="cpu", precision=precision, threads=job["threads"])
    settings = {"threads (set_cpu_math_library_num_threads)": job["threads"], "onednn": True, "precision": predictor.precision}
    return predictor.predict, f"paddle {paddle.__version__}", settings


def open_onnxruntime(job):
    """ONNX Runtime's CPU provider: ``threads`` intra-op threads, one inter-op thread, operators in sequence.

    Its intra-op pool spins between operators by default (``session.intra_op.allow_spinning``); that is
    left as a user gets it, since this process ends before the next engine starts.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = job["threads"]
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(job["onnx_file"], options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    settings = {"intra_op_num_threads": job["threads"], "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
                "graph_optimization_level": "ORT_ENABLE_ALL", "allow_spinning": "default (1)"}
    return (lambda batch: session.run(None, {name: batch})[0]), f"onnxruntime {ort.__version__}", settings


def open_openvino(job):
    """OpenVINO's CPU plugin: ``INFERENCE_NUM_THREADS`` threads, the LATENCY hint, fp32 precision.

    The LATENCY hint makes one stream that uses every thread for the request at hand, which is how the
    other engines run a batch; the THROUGHPUT hint splits the threads into several streams, which pays
    off only with as many requests in flight at once, and leaves one synchronous request with a share
    of the threads. ``INFERENCE_PRECISION_HINT f32`` keeps CPUs with bf16 (AMX) from running bf16 by
    default. The model is compiled for each input shape (static shapes, as OpenVINO recommends).
    """
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": job["threads"], "PERFORMANCE_HINT": OPENVINO_HINT, "INFERENCE_PRECISION_HINT": "f32"}
    requests = {}

    def predict(batch):
        if batch.shape not in requests:
            model = core.read_model(job["onnx_file"])
            model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
            requests[batch.shape] = core.compile_model(model, "CPU", config).create_infer_request()
        request = requests[batch.shape]
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()

    settings = dict(config, shapes="static (compiled per input shape)")
    return predict, f"openvino {ov.__version__}", settings


def open_engine(name, job):
    """``(predict, version, settings)`` of the engine ``name``; ``predict`` maps a float32 NCHW batch to probabilities."""
    if name == "dygraph fp32":
        return open_dygraph(job)
    if name in ("inference fp32 oneDNN", "inference bf16 oneDNN"):
        return open_paddle_inference(job, job["fp32_export"], name.split()[1])
    if name == "inference int8 oneDNN":
        return open_paddle_inference(job, job["int8_export"], "fp32")
    if name == "onnxruntime fp32":
        return open_onnxruntime(job)
    if name == "openvino fp32":
        return open_openvino(job)
    raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")


def seconds_of(function, argument):
    start = time.perf_counter()
    function(argument)
    return time.perf_counter() - start


def time_engine(predict, batch, batches, latency_runs):
    """``(img/s, latency ms, probabilities)``: the median of ``batches`` timed batch runs and of
    ``latency_runs`` single-image runs, after one warm-up of each shape."""
    probabilities = predict(batch)  # warm-up: engines build their kernels per input shape
    predict(batch[:1])
    batch_seconds = statistics.median(seconds_of(predict, batch) for _ in range(batches))
    latency = statistics.median(seconds_of(predict, batch[:1]) for _ in range(latency_runs))
    return len(batch) / batch_seconds, 1000 * latency, probabilities


def child_main(argv=None):
    """Time one engine (``--engine``) on the job of ``--job`` and write ``--result`` (JSON) and its ``.npy``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, choices=ENGINES)
    parser.add_argument("--job", required=True, help="the job file bench_inference.py wrote")
    parser.add_argument("--result", required=True, help="JSON file to write; the probabilities go beside it (.npy)")
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    batch = np.load(job["inputs_file"])
    predict, version, settings = open_engine(args.engine, job)
    img_per_s, latency_ms, probabilities = time_engine(predict, batch, job["batches"], job["latency_runs"])
    np.save(Path(args.result).with_suffix(".npy"), np.asarray(probabilities, np.float32))
    Path(args.result).write_text(json.dumps({"pid": os.getpid(), "img_per_s": img_per_s, "latency_ms": latency_ms,
                                             "version": version, "settings": settings}))
    return 0


def time_in_child(name, job_file, result_file, threads):
    """Run this script for engine ``name`` in a new process and wait for it; ``(result, probabilities)``.

    The child imports the same ``paddle_googlenet`` as this process, and runs MKL with ``threads``
    threads. A failure raises RuntimeError with the end of the child's messages.
    """
    import paddle_googlenet

    env = dict(os.environ, MKL_NUM_THREADS=str(threads))
    package_root = str(Path(paddle_googlenet.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--engine", name, "--job", str(job_file), "--result", str(result_file)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        lines = (finished.stderr or finished.stdout).strip().splitlines() or [f"exit status {finished.returncode}"]
        raise RuntimeError(lines[-1])
    return json.loads(Path(result_file).read_text()), np.load(Path(result_file).with_suffix(".npy"))


if __name__ == "__main__":
    sys.exit(child_main())
