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

import sys
from functools import partial
from pathlib import Path

if __name__ == "__main__":  # the command line: let Paddle use every core (before Paddle is imported)
    from .runtime import configure_threads

    configure_threads()

import numpy as np

from .checkpoint import add_weights_argument, build_model, chosen_weights, load_checkpoint, read_record, training_data, weights_of
from .cli import ArgumentParser, at_least, notice, run_main
from .data import DataError, ImageReadError, build_datasets, build_eval_transform, load_image
from .data.inputs import collect_images
from .data.transforms import resized_preprocess
from .exported import (EXPORT_FILES, FORMAT, FORMAT_VERSION, INPUT_NAME, LEGACY_PROGRAM, METADATA_FILE, MODEL_PREFIX,
                       ONNX_FILE, PARAMS_FILE, PIR_PROGRAM, SAFETENSORS_FILE, ExportError, load_metadata, program_files)
from .files import json_text, write_text_atomically
from .quantization import ALGORITHMS, DEFAULT_ALGORITHM, save_int8_program
from .runtime import import_paddle, paddle_major_version, quiet_stderr
from .safe_load import save_safetensors

paddle = import_paddle()

MIN_IMAGE_SIZE = 64  # the smallest input every model accepts (docs/models.md)
CALIBRATION_IMAGES = 256  # default number of calibration images for --int8
CALIBRATION_BATCH = 32
FEW_CALIBRATION_IMAGES = 32  # fewer than this: warn that the int8 ranges may not represent the data


class SoftmaxOutput(paddle.nn.Layer):
    """The classifier followed by a softmax: the exported program returns probabilities."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, image):
        return paddle.nn.functional.softmax(self.classifier(image), axis=-1)


def earlier_export_files(output_dir, overwrite):
    """The files of an earlier export in ``output_dir``; an ExportError if there are any and not ``overwrite``."""
    earlier = [name for name in EXPORT_FILES if (Path(output_dir) / name).exists()]
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
            notice(f"calibration: skipped {exc}")
    if not arrays:
        raise ExportError("none of the calibration images could be read; calibrate on others with --calibrate")
    if len(arrays) < FEW_CALIBRATION_IMAGES:
        notice(f"calibrating on {len(arrays)} image(s) only: int8 ranges from so few may not cover other images; "
               f"give --calibrate {FEW_CALIBRATION_IMAGES} or more images like the ones to predict")
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
    source = training_data(state)
    if source is None:
        raise ExportError("this checkpoint does not record training images (a converted one, or from an earlier "
                          "version); calibrate on images with --calibrate")
    try:
        train = build_datasets(source, preprocess).train
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
    _clear_for_export(output_dir, overwrite)
    model.eval()
    wrapped = SoftmaxOutput(model)
    wrapped.eval()
    spec = paddle.static.InputSpec([None, 3, size, size], "float32", INPUT_NAME)
    with quiet_stderr():  # Paddle reports its program conversion there; shown only if the export fails
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
    write_metadata(output_dir, metadata)
    return output_dir


def _clear_for_export(output_dir, overwrite):
    """Refuse an earlier export (unless ``overwrite``: remove its files, so no stale program survives)."""
    earlier = earlier_export_files(output_dir, overwrite)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name in earlier:
            (output_dir / name).unlink()
    except OSError as exc:
        raise ExportError(f"cannot write to the output folder {output_dir} ({exc.strerror or exc}); choose another with --output") from exc


def write_metadata(output_dir, metadata):
    """``metadata.json``, written last and atomically: its presence marks a complete export."""
    write_text_atomically(Path(output_dir) / METADATA_FILE, json_text(metadata, indent=2) + "\n")


def export_checkpoint(checkpoint_path, output_dir, image_size=None, weights="auto", overwrite=False,
                      int8=False, calibrate=None, calibration_images=CALIBRATION_IMAGES, algorithm=DEFAULT_ALGORITHM):
    """Export the model of a checkpoint; ``image_size`` overrides its crop size, ``weights`` chooses its
    trained or EMA weights (``checkpoint.chosen_weights``). ``int8`` makes an int8 export, calibrated
    with ``algorithm`` on ``calibration_images`` of the images in ``calibrate`` (image files, folders or
    list files), or by default of the run's training images. Returns the folder."""
    state = load_checkpoint(checkpoint_path)
    record = read_record(state)
    preprocess = resized_preprocess(record.preprocess, image_size)
    batches = None
    if int8:  # read before anything is written: a bad image leaves the output folder untouched
        earlier_export_files(output_dir, overwrite)  # and refuse an occupied folder before calibrating
        batches, used, source = _calibration(state, calibrate, preprocess, calibration_images)
    train_state = state.get("train_state", {})
    metadata = {
        "model_name": record.model_name,
        "model_kwargs": record.model_kwargs,
        "class_names": record.class_names,
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


def _calibration(state, calibrate, preprocess, count):
    """``(batches, images used, where they came from)`` for an int8 export."""
    if calibrate:
        batches, used = calibration_batches(calibrate, preprocess, count)
        return batches, used, ", ".join(str(Path(item).resolve()) for item in calibrate)
    batches, used = training_calibration_batches(state, preprocess, count)
    return batches, used, f"the run's training images (--dataset {training_data(state)['dataset']})"


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
    with quiet_stderr():
        paddle2onnx.export(str(program), str(params), str(onnx_path), **options)
    if not onnx_path.is_file():
        raise ExportError(f"paddle2onnx did not write {onnx_path}; see its messages above")
    return onnx_path


def write_weights_safetensors(checkpoint_path, export_dir, weights="auto"):
    """The checkpoint's chosen weights as ``model.safetensors`` beside the export (no pickle: safe to share)."""
    state = load_checkpoint(checkpoint_path)
    arrays = {name: np.ascontiguousarray(value) for name, value in weights_of(state, weights).items()}
    path = Path(export_dir) / SAFETENSORS_FILE
    save_safetensors(arrays, path, metadata={"model_name": read_record(state).model_name, "format": "paddle-googlenet-weights"})
    return path


PROG = "python -m paddle_googlenet.export"
DESCRIPTION = ("Export a checkpoint for Paddle Inference (paddle.jit.save): one input, one output (softmax probabilities), "
               "with class names and preprocessing in metadata.json.")


def get_args_parser():
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a *.pdckpt file written by train.py or convert_v2")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in DIR")
    add_weights_argument(parser)
    parser.add_argument("--image-size", type=at_least(MIN_IMAGE_SIZE), metavar="N",
                        help="input height and width of the exported program (default: the checkpoint's crop size)")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx with paddle2onnx (pip install paddle2onnx)")
    parser.add_argument("--safetensors", action="store_true",
                        help="also write the weights as model.safetensors, a file anyone can load without pickle "
                             "(pip install safetensors)")
    int8 = parser.add_argument_group("int8 (oneDNN on the CPU; docs/inference.md)")
    int8.add_argument("--int8", action="store_true", help="quantise the program to int8, calibrated on images")
    int8.add_argument("--calibrate", nargs="+", metavar="INPUT",
                      help="calibration images: files, folders or list files (default: the training images of the "
                           "checkpoint's run, read as train.py read them)")
    int8.add_argument("--calibration-images", type=at_least(1), default=CALIBRATION_IMAGES, metavar="N",
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
    return None


def main(argv=None):
    return run_main(PROG, _command, argv)


def _command(argv):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    problem = usage_error(args)
    if problem:
        parser.error(problem)  # exit code 2
    output = export_checkpoint(args.checkpoint, args.output, args.image_size, args.weights, args.overwrite,
                               args.int8, args.calibrate, args.calibration_images, args.calibration_algo)
    extra = [write_onnx(output)] if args.onnx else []
    if args.safetensors:
        extra.append(write_weights_safetensors(args.checkpoint, output, args.weights))
    metadata = load_metadata(output)
    size = metadata["preprocess"]["image_size"]
    calibration = metadata.get("calibration")
    if calibration:
        print(f"int8: calibrated on {calibration['images']} of {calibration['source']}, algorithm {calibration['algorithm']}")
    print(f"exported {metadata['model_name']} ({len(metadata['class_names'])} classes, {size}x{size} input, "
          f"{metadata['precision']}) to {output}: {metadata['program_file']}, {metadata['params_file']}, {METADATA_FILE}"
          + "".join(f", {path.name}" for path in extra))
    print(f"predict with: python infer.py {output} IMAGE...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
