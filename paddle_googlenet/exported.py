"""The folder an export is: its file names, its ``metadata.json``, and reading it back.

``python -m paddle_googlenet.export`` (``export.py``) writes such a folder; ``infer.py``
(``inference.py``) reads it through the functions here, so reading an export needs neither the
writer, nor quantisation, nor the data pipeline. The folder holds the program and weights written
by ``paddle.jit.save`` (``model.json`` in Paddle 3's PIR format, or ``model.pdmodel`` from Paddle
2.6 and int8 exports, plus ``model.pdiparams``), optionally ``model.onnx``, ``model.safetensors``,
and ``metadata.json``: model name, class names, the evaluation preprocessing and the precision.
``metadata.json`` is written last, so its presence marks a complete export.
"""

import json
from pathlib import Path

from .errors import UserError
from .runtime import import_paddle, paddle_major_version

FORMAT = "paddle-googlenet-export"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
MODEL_PREFIX = "model"
INPUT_NAME = "image"
PIR_PROGRAM = MODEL_PREFIX + ".json"  # Paddle 3 (PIR)
LEGACY_PROGRAM = MODEL_PREFIX + ".pdmodel"  # Paddle 2.x (ProgramDesc)
PARAMS_FILE = MODEL_PREFIX + ".pdiparams"
ONNX_FILE = MODEL_PREFIX + ".onnx"
SAFETENSORS_FILE = MODEL_PREFIX + ".safetensors"
EXPORT_FILES = (PIR_PROGRAM, LEGACY_PROGRAM, PARAMS_FILE, PARAMS_FILE + ".info", METADATA_FILE, ONNX_FILE, SAFETENSORS_FILE)


class ExportError(UserError):
    """An export that cannot be written or read; ``str()`` says what to do."""


def paddle_reads_pir():
    """Whether this Paddle can load PIR ``.json`` programs (Paddle 3 and development builds)."""
    return paddle_major_version() >= 3


def is_export_dir(path):
    """Whether ``path`` is a folder written by ``export.export_model`` (it holds ``metadata.json``)."""
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
            f"{export_dir} holds a Paddle 3 (PIR) program, {PIR_PROGRAM}, which Paddle {import_paddle().__version__} "
            f"cannot read; export the checkpoint again with this Paddle, or run with Paddle 3")
    if program is None:
        raise ExportError(f"{export_dir}: neither {PIR_PROGRAM} nor {LEGACY_PROGRAM} found; export the checkpoint again")
    if not params.is_file():
        raise ExportError(f"{export_dir}: {PARAMS_FILE} is missing; export the checkpoint again")
    return program, params
