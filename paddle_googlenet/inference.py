"""``infer.py``: top-k classes with names for images, from a checkpoint or an exported model.

``open_predictor(model_path, ...)`` returns a ``CheckpointPredictor`` (dygraph, float32) for a
``train.py`` checkpoint, or an ``ExportedPredictor`` (Paddle Inference: oneDNN on CPU, optionally
bfloat16, or int8 for an int8 export; float16 and TensorRT on GPU) for a folder written by ``python -m paddle_googlenet.export``.
Both take batches preprocessed with the evaluation transform stored in the model and return softmax
probabilities, so they predict what evaluation measured. ``collect_images`` expands files, folders
and list files (``data.inputs``); ``predict_files`` yields a ``Prediction`` or an ``ImageReadError`` per image, in order.
"""

import sys
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .checkpoint import SUFFIX, add_weights_argument, build_model, chosen_weights, load_checkpoint, read_record
from .cli import ArgumentParser, at_least, notice, run_main
from .data.inputs import collect_images
from .data.transforms import ImageReadError, build_eval_transform, load_image
from .device import resolve_device
from .errors import UserError
from .exported import METADATA_FILE, is_export_dir, load_metadata, program_files
from .files import json_text
from .runtime import default_thread_count, import_paddle, quiet_stderr

paddle = import_paddle()

PRECISIONS = ("fp32", "bf16", "fp16")
MODEL_PATH_HELP = (
    "MODEL_PATH must be a checkpoint (*" + SUFFIX + ", e.g. output/googlenet/best" + SUFFIX + ") "
    "or a folder written by python -m paddle_googlenet.export"
)

Prediction = namedtuple("Prediction", ["path", "topk"])
Prediction.__doc__ = "One image's result: ``topk`` is a list of ``(class_id, label, probability)``, best first."


class InferenceError(UserError):
    """A model path, input or option that inference cannot use; ``str()`` says what to do."""


def cpu_has_fast_bfloat16():
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN's bf16 kernels need."""
    from paddle.base import core  # Paddle 2.6 and 3.x

    return bool(getattr(core, "supports_bfloat16_fast_performance", lambda: False)())


class CheckpointPredictor:
    """Dygraph evaluation of a ``train.py`` checkpoint, in float32."""

    def __init__(self, path, device="auto", precision="fp32", weights="auto"):
        state = load_checkpoint(path)
        self.device = resolve_device(device)
        paddle.set_device(self.device)
        if precision != "fp32":
            notice(f"--precision {precision} applies to exported models; the checkpoint runs in float32 "
                   f"(export it with python -m paddle_googlenet.export {path} --output DIR)")
        self.precision = "fp32"
        record = read_record(state)
        self.model_name, self.class_names, self.preprocess = record.model_name, record.class_names, record.preprocess
        self.weights = chosen_weights(state, weights)
        self.model = build_model(state, weights)

    def predict(self, batch):
        """Probabilities ``(N, classes)`` for a float32 ``(N, 3, H, W)`` batch."""
        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(batch))
            return paddle.nn.functional.softmax(logits, axis=-1).numpy()


def _first_method(config, *names):
    """``config``'s method under the first of ``names`` it has (oneDNN methods were renamed in Paddle 3)."""
    for name in names:
        if hasattr(config, name):
            return getattr(config, name)
    raise InferenceError(f"this Paddle's inference Config has none of {', '.join(names)}")


class ExportedPredictor:
    """An exported model run by a ``paddle.inference`` Predictor.

    On CPU: oneDNN with ``threads`` math threads, in float32, or bfloat16 where the CPU has native
    bf16 (otherwise float32, with a notice); an int8 export (``export --int8``) runs int8, on the
    CPU only. On GPU: float32, float16 or bfloat16 mixed precision,
    optionally through TensorRT (float32 or float16). ``max_batch_size`` sizes TensorRT's engine.
    """

    def __init__(self, export_dir, device="auto", precision="fp32", threads=None, tensorrt=False, max_batch_size=32):
        if precision not in PRECISIONS:
            raise InferenceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        metadata = load_metadata(export_dir)
        program, params = program_files(export_dir)
        self.export_dir = export_dir
        self.model_name = metadata.get("model_name", "model")
        self.class_names = list(metadata["class_names"])
        self.preprocess = dict(metadata["preprocess"])
        self.input_name = metadata["input"]["name"]
        int8 = metadata.get("precision") == "int8"
        if int8 and device == "gpu":
            raise InferenceError(f"{export_dir} is an int8 export, which runs on the CPU (oneDNN); use --device cpu, "
                                 "or export the checkpoint without --int8 for the GPU")
        self.device = "cpu" if int8 else resolve_device(device)
        config = paddle.inference.Config(str(program), str(params))
        if int8:
            self.precision = self._configure_int8(config, precision, threads or default_thread_count(), tensorrt)
        elif self.device == "gpu":
            self.precision = self._configure_gpu(config, precision, tensorrt, max_batch_size)
        else:
            self.precision = self._configure_cpu(config, precision, threads or default_thread_count(), tensorrt)
        config.disable_glog_info()
        with quiet_stderr():  # the int8 passes report their work there even so
            self.predictor = paddle.inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.input_name)
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    @staticmethod
    def _configure_cpu(config, precision, threads, tensorrt):
        config.disable_gpu()
        _first_method(config, "enable_onednn", "enable_mkldnn")()
        config.set_cpu_math_library_num_threads(int(threads))
        if tensorrt:
            notice("--tensorrt needs a GPU; running on the CPU with oneDNN")
        if precision == "fp16":
            notice("--precision fp16 is a GPU option; the CPU runs float32 (bf16 is the CPU's fast type)")
        elif precision == "bf16" and not cpu_has_fast_bfloat16():
            notice("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), which oneDNN's bf16 kernels "
                   "need; running float32")
        elif precision == "bf16":
            _first_method(config, "enable_onednn_bfloat16", "enable_mkldnn_bfloat16")()
            return "bf16"
        return "fp32"

    @classmethod
    def _configure_int8(cls, config, precision, threads, tensorrt):
        if precision != "fp32":
            notice(f"--precision {precision}: this export is int8, which it runs in")
        cls._configure_cpu(config, "fp32", threads, tensorrt)
        if hasattr(config, "enable_new_ir"):  # Paddle 3: oneDNN's int8 passes work on the classic program
            config.enable_new_ir(False)
        _first_method(config, "enable_onednn_int8", "enable_mkldnn_int8")()
        return "int8"

    def _configure_gpu(self, config, precision, tensorrt, max_batch_size):
        types = paddle.inference.PrecisionType
        precision_type = {"fp32": types.Float32, "fp16": types.Half, "bf16": types.Bfloat16}[precision]
        device_id = paddle.distributed.ParallelEnv().device_id
        if not tensorrt:
            config.enable_use_gpu(256, device_id, precision_type)
            return precision
        if precision == "bf16":
            raise InferenceError("--tensorrt runs fp32 or fp16; drop --tensorrt to run bf16 on the GPU")
        config.enable_use_gpu(256, device_id)
        config.enable_tensorrt_engine(
            workspace_size=1 << 30, max_batch_size=max_batch_size, min_subgraph_size=3,
            precision_mode=precision_type, use_static=False, use_calib_mode=False,
        )
        size = int(self.preprocess["image_size"])
        smallest, largest = [1, 3, size, size], [max_batch_size, 3, size, size]
        config.set_trt_dynamic_shape_info({self.input_name: smallest}, {self.input_name: largest}, {self.input_name: largest})
        return precision

    def predict(self, batch):
        """Probabilities ``(N, classes)`` for a float32 ``(N, 3, H, W)`` batch."""
        self.input.reshape(list(batch.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self.predictor.run()
        probs = self.output.copy_to_cpu()
        if probs.shape[-1] != len(self.class_names):
            raise InferenceError(f"{self.export_dir}: its program outputs {probs.shape[-1]} classes but {METADATA_FILE} "
                                 f"names {len(self.class_names)}; the folder mixes two exports: export the checkpoint again")
        return probs


def open_predictor(model_path, device="auto", precision="fp32", threads=None, tensorrt=False, max_batch_size=32, weights="auto"):
    """The predictor for ``model_path``: a checkpoint file or an export folder (or a file inside one).

    ``weights`` chooses a checkpoint's trained or EMA weights (``checkpoint.chosen_weights``); an export
    holds the ones chosen when it was written.
    """
    path = Path(model_path)
    if not path.exists():
        raise InferenceError(f"{path} does not exist; {MODEL_PATH_HELP}")
    if path.is_file() and path.suffix != SUFFIX and is_export_dir(path.parent):
        path = path.parent  # e.g. model.json or metadata.json given instead of their folder
    if path.is_dir():
        _check_export_dir(path)
        if weights != "auto":
            notice(f"--weights applies to checkpoints; {path} holds the weights chosen when it was exported")
        return ExportedPredictor(path, device, precision, threads, tensorrt, max_batch_size)
    return CheckpointPredictor(path, device, precision, weights)


def _check_export_dir(path):
    if is_export_dir(path):
        return
    checkpoints = sorted(path.glob(f"*{SUFFIX}"))
    if checkpoints:
        best = next((p for p in checkpoints if p.stem == "best"), checkpoints[-1])
        raise InferenceError(f"{path} is a training output folder, not an export; pass one of its checkpoints, e.g. {best}")
    if any(path.glob("*.pdmodel")) or any(path.glob("*.json")):
        raise InferenceError(f"{path} has no {METADATA_FILE}, so the classes and preprocessing are unknown; "
                             f"export the checkpoint with python -m paddle_googlenet.export")
    raise InferenceError(f"{path} is a folder without {METADATA_FILE}; {MODEL_PATH_HELP}")


def top_k(probs, class_names, k):
    """``[(class_id, label, probability), ...]`` of the ``k`` most probable classes, best first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), class_names[i] if i < len(class_names) else str(i), float(probs[i])) for i in order]


def predict_files(predictor, paths, batch_size=32, k=5, workers=2):
    """Yield a ``Prediction`` or an ``ImageReadError`` for each path, in order, predicting in batches.

    Images are decoded and preprocessed by ``workers`` threads, one batch ahead of the model.
    """
    transform = build_eval_transform(predictor.preprocess)

    def prepare(path):
        try:
            return transform(load_image(path))
        except ImageReadError as exc:
            return exc

    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(prepare, p) for p in batches[0]] if batches else []
        for index, batch_paths in enumerate(batches):
            items = [future.result() for future in pending]
            if index + 1 < len(batches):
                pending = [pool.submit(prepare, p) for p in batches[index + 1]]
            good = [(path, item) for path, item in zip(batch_paths, items) if not isinstance(item, Exception)]
            probs = predictor.predict(np.stack([item for _, item in good])) if good else []
            results = iter(zip(good, probs))
            for item in items:
                if isinstance(item, Exception):
                    yield item
                else:
                    (path, _), row = next(results)
                    yield Prediction(path, top_k(row, predictor.class_names, k))


def format_text(prediction):
    """The path, then one line per class: probability, class id and name."""
    width = max(len(str(class_id)) for class_id, _, _ in prediction.topk)
    lines = [prediction.path] + [f"  {prob:.4f}  {class_id:>{width}}  {label}" for class_id, label, prob in prediction.topk]
    return "\n".join(lines)


def format_json(prediction):
    """One JSON object: ``{"path": ..., "topk": [{"class_id": 3, "label": "...", "prob": 0.93}, ...]}``.

    Always valid UTF-8 JSON text: a file name that is not UTF-8 is written with ``\\udcXX`` escapes.
    """
    topk = [{"class_id": class_id, "label": label, "prob": round(prob, 6)} for class_id, label, prob in prediction.topk]
    return json_text({"path": prediction.path, "topk": topk})


DESCRIPTION = ("Predict the top-k classes, with names, of images, from a checkpoint or an exported model. "
               "Model, classes and preprocessing come from MODEL_PATH.")


def get_args_parser():
    parser = ArgumentParser(prog="infer.py", description=DESCRIPTION)
    parser.add_argument("model_path", metavar="MODEL_PATH", help="a *.pdckpt checkpoint, or a folder from python -m paddle_googlenet.export")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively) or list files (one image path per line, "
                             "a label column ignored, relative paths from the list's folder)")
    parser.add_argument("--topk", type=at_least(1), default=5, metavar="K", help="classes shown per image (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.add_argument("--batch-size", type=at_least(1), default=32, metavar="N", help="images per forward pass (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto (default): a GPU if Paddle sees one, else the CPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="exported models: bf16 on CPUs with native bfloat16, fp16 or bf16 on GPU; int8 exports (export --int8) "
                             "run int8 and checkpoints fp32 whatever this says (default: %(default)s)")
    parser.add_argument("--threads", type=at_least(1), metavar="N",
                        help=f"CPU math threads of an exported model (default: the usable cores, {default_thread_count()} here)")
    parser.add_argument("--tensorrt", action="store_true", help="exported models on GPU: run through TensorRT (fp32 or fp16)")
    add_weights_argument(parser)
    return parser


def main(argv=None):
    return run_main("infer.py", _command, argv)


def _command(argv):
    args = get_args_parser().parse_args(argv)
    predictor = open_predictor(args.model_path, args.device, args.precision, args.threads, args.tensorrt, args.batch_size, args.weights)
    images, problems = collect_images(args.inputs)
    for problem in problems:
        print(f"infer.py: error: {problem}", file=sys.stderr)
    k = min(args.topk, len(predictor.class_names))
    failed = 0
    for result in predict_files(predictor, images, args.batch_size, k):
        if isinstance(result, ImageReadError):
            failed += 1
            print(f"infer.py: error: {result}", file=sys.stderr)
            continue
        print(format_json(result) if args.json else format_text(result), flush=True)
    if problems or failed:
        summary = [f"{failed} of {len(images)} images could not be read"] if failed else []
        summary += [f"{len(problems)} problem(s) with the inputs (above)"] if problems else []
        print(f"infer.py: error: {'; '.join(summary)}", file=sys.stderr)
        return 1
    return 0
