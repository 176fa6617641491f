"""Export a checkpoint as a Paddle Inference model: ``python -m paddle_googlenet.export CHECKPOINT --output DIR``.

The folder holds the program and weights written by ``paddle.jit.save`` (``model.json`` in Paddle 3's
PIR format, or ``model.pdmodel`` from Paddle 2.6, plus ``model.pdiparams``) and ``metadata.json``:
model name, class names, the evaluation preprocessing and the precision, so ``infer.py DIR`` needs
nothing else. With ``--int8`` the program is quantised for oneDNN's int8 kernels on the CPU
(``quantization.py``), calibrated on the run's training images or on ``--calibrate`` ones; it is
then always a ``model.pdmodel``.

The program takes one float32 input ``image`` of shape ``[N, 3, H, W]`` (any batch size; H and W
fixed at export) and has one output: the softmax **probabilities** over ``class_names``. The model is
exported in eval mode, so GoogLeNet's auxiliary heads are not part of the program.
"""

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

if __name__ == "__main__":  # the command line: let Paddle use every core (before Paddle is imported)
    from .runtime import configure_threads

    configure_threads()

import numpy as np

from .runtime import import_paddle, paddle_major_version
from .checkpoint import CheckpointError, add_weights_argument, build_model, chosen_weights, load_checkpoint
from .data import DataError, ImageReadError, build_datasets, build_eval_transform, load_image
from .data.inputs import collect_images
from .quantization import ALGORITHMS, DEFAULT_ALGORITHM, save_int8_program

paddle = import_paddle()

FORMAT = "paddle-googlenet-export"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
MODEL_PREFIX = "model"
INPUT_NAME = "image"
PIR_PROGRAM = MODEL_PREFIX + ".json"  # Paddle 3 (PIR)
LEGACY_PROGRAM = MODEL_PREFIX + ".pdmodel"  # Paddle 2.x (ProgramDesc)
PARAMS_FILE = MODEL_PREFIX + ".pdiparams"
ONNX_FILE = MODEL_PREFIX + ".onnx"
_WRITTEN_FILES = (PIR_PROGRAM, LEGACY_PROGRAM, PARAMS_FILE, PARAMS_FILE + ".info", METADATA_FILE, ONNX_FILE)
MIN_IMAGE_SIZE = 64  # the smallest input every model accepts (docs/models.md)
CALIBRATION_IMAGES = 256  # default number of calibration images for --int8
CALIBRATION_BATCH = 32


class ExportError(Exception):
    """An export that cannot be written or read; ``str()`` says what to do."""


class SoftmaxOutput(paddle.nn.Layer):
    """The classifier followed by a softmax: the exported program returns probabilities."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, image):
        return paddle.nn.functional.softmax(self.classifier(image), axis=-1)


def paddle_reads_pir():
    """Whether this Paddle can load PIR ``.json`` programs (Paddle 3 and development builds)."""
    return paddle_major_version() >= 3


def resized_preprocess(preprocess, image_size):
    """``preprocess`` for another crop size, keeping the resize/crop ratio and the normalisation."""
    if image_size is None or image_size == preprocess["image_size"]:
        return dict(preprocess)
    if image_size < MIN_IMAGE_SIZE:
        raise ExportError(f"--image-size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    ratio = preprocess["resize_size"] / preprocess["image_size"]
    return dict(preprocess, image_size=int(image_size), resize_size=round(image_size * ratio))


def earlier_export_files(output_dir, overwrite):
    """The files of an earlier export in ``output_dir``; an ExportError if there are any and not ``overwrite``."""
    earlier = [name for name in _WRITTEN_FILES if (Path(output_dir) / name).exists()]
    if earlier and not overwrite:
        raise ExportError(f"{output_dir} already holds an export ({', '.join(earlier)}); choose another --output, "
                          f"or replace it with --overwrite")
    return earlier


def _preprocessed_batches(readers, preprocess, count, batch_size):
    """``(float32 batches, images used)`` of up to ``count`` of the images that ``readers`` (functions
    returning HWC RGB pixels) read, spread evenly over them (so a class-sorted source gives every
    class a share). An unreadable image is skipped with a notice, as training skips it."""
    if len(readers) > count:
        readers = [readers[int(i)] for i in np.linspace(0, len(readers) - 1, count).round()]
    transform = build_eval_transform(preprocess)
    arrays = []
    for read in readers:
        try:
            arrays.append(transform(read()))
        except ImageReadError as exc:
            print(f"notice: calibration: skipped {exc}", file=sys.stderr)
    if not arrays:
        raise ExportError("none of the calibration images could be read; calibrate on others with --calibrate")
    return [np.stack(arrays[i : i + batch_size]) for i in range(0, len(arrays), batch_size)], len(arrays)


def calibration_batches(inputs, preprocess, count=CALIBRATION_IMAGES, batch_size=CALIBRATION_BATCH):
    """``(batches, images used)`` from image files, folders and list files (``--calibrate``), as ``infer.py`` reads them.

    An input that does not exist or yields no image is an ExportError.
    """
    paths, problems = collect_images(inputs)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ExportError(f"--calibrate: {problems[0]}{more}")
    return _preprocessed_batches([partial(load_image, path) for path in paths], preprocess, count, batch_size)


def training_calibration_batches(state, preprocess, count=CALIBRATION_IMAGES, batch_size=CALIBRATION_BATCH):
    """``(batches, images used)`` from the training images of the checkpoint's run, read as ``train.py`` read them."""
    args = argparse.Namespace(**state.get("args", {}))
    if not hasattr(args, "dataset"):
        raise ExportError("this checkpoint does not record its training data; calibrate on images with --calibrate")
    try:
        train = build_datasets(args).train
    except DataError as exc:
        raise ExportError(f"cannot read the run's training images ({exc}); calibrate on images with --calibrate") from None
    return _preprocessed_batches([partial(train.read_image, index) for index in range(len(train))], preprocess, count, batch_size)


def export_model(model, output_dir, metadata, overwrite=False, calibration=None, algorithm=DEFAULT_ALGORITHM):
    """Save ``model`` (eval mode, returning logits) for Paddle Inference, with ``metadata``; return the folder.

    ``metadata`` needs ``model_name``, ``class_names`` and ``preprocess``; the input and output
    description, file names, precision and Paddle version are added here. ``calibration``, a list of
    float32 batches, makes an int8 export calibrated on them with ``algorithm``
    (``quantization.save_int8_program``). A folder that already holds an export's files is an
    error, unless ``overwrite``: then they are replaced.
    """
    output_dir = Path(output_dir)
    size = int(metadata["preprocess"]["image_size"])
    earlier = earlier_export_files(output_dir, overwrite)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name in earlier:  # no stale program of the other format may survive
            (output_dir / name).unlink()
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {output_dir} ({exc.strerror or exc}); choose another with --output") from exc
    model.eval()
    wrapped = SoftmaxOutput(model)
    wrapped.eval()
    spec = paddle.static.InputSpec([None, 3, size, size], "float32", INPUT_NAME)
    if calibration is None:
        paddle.jit.save(wrapped, str(output_dir / MODEL_PREFIX), input_spec=[spec])
    else:
        save_int8_program(wrapped, spec, output_dir / MODEL_PREFIX, calibration, algorithm)
    program = PIR_PROGRAM if (output_dir / PIR_PROGRAM).is_file() else LEGACY_PROGRAM
    metadata = dict(
        metadata,
        format=FORMAT,
        format_version=FORMAT_VERSION,
        input={"name": INPUT_NAME, "shape": [None, 3, size, size], "dtype": "float32"},
        output="probabilities",
        precision="fp32" if calibration is None else "int8",
        program_file=program,
        params_file=PARAMS_FILE,
        paddle_version=paddle.__version__,
    )
    tmp = output_dir / (METADATA_FILE + ".tmp")  # written last and atomically: its presence marks a complete export
    tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, output_dir / METADATA_FILE)
    return output_dir


def export_checkpoint(checkpoint_path, output_dir, image_size=None, weights="auto", overwrite=False,
                      int8=False, calibrate=None, calibration_images=CALIBRATION_IMAGES, algorithm=DEFAULT_ALGORITHM):
    """Export the model of a ``train.py`` checkpoint; ``image_size`` overrides its crop size, ``weights``
    chooses its trained or EMA weights (``checkpoint.chosen_weights``). ``int8`` makes an int8 export,
    calibrated with ``algorithm`` on ``calibration_images`` of the images in ``calibrate`` (image
    files, folders or list files), or by default of the run's training images. Returns the folder."""
    state = load_checkpoint(checkpoint_path)
    preprocess = resized_preprocess(state["preprocess"], image_size)
    batches = None
    if int8:  # read before anything is written: a bad image leaves the output folder untouched
        earlier_export_files(output_dir, overwrite)  # and refuse an occupied folder before calibrating
        if calibrate:
            batches, used = calibration_batches(calibrate, preprocess, calibration_images)
            source = ", ".join(str(Path(item).resolve()) for item in calibrate)
        else:
            batches, used = training_calibration_batches(state, preprocess, calibration_images)
            source = f"the run's training images (--dataset {state['args']['dataset']})"
    train_state = state.get("train_state", {})
    metadata = {
        "model_name": state["model_name"],
        "model_kwargs": state["model_kwargs"],
        "class_names": list(state["class_names"]),
        "preprocess": preprocess,
        "checkpoint": {
            "path": str(Path(checkpoint_path).resolve()),
            "epoch": train_state.get("epoch"),
            "global_step": train_state.get("global_step"),
            "weights": chosen_weights(state, weights),
        },
    }
    if batches:
        metadata["calibration"] = {"source": source, "images": used, "algorithm": algorithm}
    return export_model(build_model(state, weights), output_dir, metadata, overwrite, batches, algorithm)


def write_onnx(export_dir, opset=None):
    """Convert an export to ``model.onnx`` with ``paddle2onnx`` (an optional package); return its path."""
    try:
        import paddle2onnx
    except ImportError as exc:
        raise ExportError("--onnx needs the paddle2onnx package: pip install paddle2onnx (and onnxruntime to run it)") from exc
    converter_2x = not paddle2onnx.__version__.startswith(("0.", "1."))
    if converter_2x and paddle_major_version() < 3:
        raise ExportError(f"paddle2onnx {paddle2onnx.__version__} needs Paddle 3; with Paddle 2.6 use pip install 'paddle2onnx<2'")
    export_dir = Path(export_dir)
    program, params = program_files(export_dir)
    onnx_path = export_dir / ONNX_FILE
    options = {"opset_version": opset} if opset else {}
    if converter_2x:
        options["optimize_tool"] = "None"  # the plain conversion (1.x has no optimiser step to turn off)
    paddle2onnx.export(str(program), str(params), str(onnx_path), **options)
    if not onnx_path.is_file():
        raise ExportError(f"paddle2onnx did not write {onnx_path}; see its messages above")
    return onnx_path


def is_export_dir(path):
    """Whether ``path`` is a folder written by ``export_model`` (it holds ``metadata.json``)."""
    return (Path(path) / METADATA_FILE).is_file()


def load_metadata(export_dir):
    """The ``metadata.json`` of an export folder, checked; raises ExportError otherwise."""
    path = Path(export_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{export_dir}: no {METADATA_FILE}; export a checkpoint with python -m paddle_googlenet.export") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExportError(f"{path}: not a paddle-googlenet export (expected \"format\": \"{FORMAT}\")")
    missing = [key for key in ("class_names", "preprocess", "input") if key not in metadata]
    if missing:
        raise ExportError(f"{path}: missing {', '.join(missing)}; export the checkpoint again")
    return metadata


def program_files(export_dir):
    """``(program file, params file)`` of an export: PIR ``model.json`` or ``model.pdmodel``, whichever exists.

    Paddle 3 reads both; Paddle 2.6 reads only ``.pdmodel``, so a Paddle 3 export has to be re-made there.
    """
    export_dir = Path(export_dir)
    params = export_dir / PARAMS_FILE
    pir, legacy = export_dir / PIR_PROGRAM, export_dir / LEGACY_PROGRAM
    candidates = [pir, legacy] if paddle_reads_pir() else [legacy]
    program = next((path for path in candidates if path.is_file()), None)
    if program is None and pir.is_file():
        raise ExportError(
            f"{export_dir} holds a Paddle 3 (PIR) program, {PIR_PROGRAM}, which Paddle {paddle.__version__} cannot read; "
            f"export the checkpoint again with this Paddle, or run with Paddle 3"
        )
    if program is None:
        raise ExportError(f"{export_dir}: neither {PIR_PROGRAM} nor {LEGACY_PROGRAM} found; export the checkpoint again")
    if not params.is_file():
        raise ExportError(f"{export_dir}: {PARAMS_FILE} is missing; export the checkpoint again")
    return program, params


def get_args_parser():
    parser = argparse.ArgumentParser(
        prog="python -m paddle_googlenet.export",
        description="Export a train.py checkpoint for Paddle Inference (paddle.jit.save): one input, "
        "one output (softmax probabilities), with class names and preprocessing in metadata.json.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a *.pdckpt file written by train.py")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in DIR")
    add_weights_argument(parser)
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="input height and width of the exported program (default: the checkpoint's crop size)")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx with paddle2onnx (pip install paddle2onnx)")
    int8 = parser.add_argument_group("int8 (oneDNN on the CPU; docs/inference.md)")
    int8.add_argument("--int8", action="store_true", help="quantise the program to int8, calibrated on images")
    int8.add_argument("--calibrate", nargs="+", metavar="INPUT",
                      help="calibration images: files, folders or list files (default: the training images of the "
                           "checkpoint's run, read as train.py read them)")
    int8.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                      help="use at most N of them, spread evenly (default: %(default)s)")
    int8.add_argument("--calibration-algo", choices=ALGORITHMS, default=DEFAULT_ALGORITHM,
                      help="how each activation's range is chosen (default: %(default)s)")
    return parser


def usage_error(args):
    """The message for a combination of options that cannot work, or None."""
    if args.calibrate and not args.int8:
        return "--calibrate is for --int8 exports; add --int8, or drop --calibrate"
    if args.int8 and args.onnx:
        return "--onnx converts float32 exports; export without --int8 for ONNX"
    if args.calibration_images < 1:
        return f"--calibration-images must be at least 1, got {args.calibration_images}"
    return None


def main(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    problem = usage_error(args)
    if problem:
        parser.error(problem)  # exit code 2
    try:
        output = export_checkpoint(args.checkpoint, args.output, args.image_size, args.weights, args.overwrite,
                                   args.int8, args.calibrate, args.calibration_images, args.calibration_algo)
        onnx_path = write_onnx(output) if args.onnx else None
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metadata = load_metadata(output)
    size = metadata["preprocess"]["image_size"]
    calibration = metadata.get("calibration")
    if calibration:
        print(f"int8: calibrated on {calibration['images']} of {calibration['source']}, algorithm {calibration['algorithm']}")
    print(f"exported {metadata['model_name']} ({len(metadata['class_names'])} classes, {size}x{size} input, "
          f"{metadata['precision']}) "
          f"to {output}: {metadata['program_file']}, {metadata['params_file']}, {METADATA_FILE}"
          + (f", {onnx_path.name}" if onnx_path else ""))
    print(f"predict with: python infer.py {output} IMAGE...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
