"""A training run's folder: what a run writes there, how an earlier run is recognised, and clearing it.

A run writes into its output folder ``args.json``, ``metrics.jsonl`` and checkpoints (``latest``,
``best``, ``epoch_N``, all ``*.pdckpt``), and VisualDL records into its log folder. ``train.py``
refuses to start a new run over an earlier one unless told how to proceed (``--resume``,
``--overwrite`` or another ``--output``); ``--overwrite`` removes exactly these files.
"""

import json
import os
from pathlib import Path

from .checkpoint import SUFFIX
from .vdl_records import record_files

METRICS_FILE = "metrics.jsonl"
ARGS_FILE = "args.json"


class OutputError(Exception):
    """The output folder cannot be used as asked; ``str()`` says what to do."""


def check_writable(folder, flag):
    """Fail if ``folder`` could not be created or written (``flag`` names the option that chose it).

    Creates nothing: a folder that does not exist yet is checked through its nearest existing parent.
    """
    path = Path(folder)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot use {folder} as the {flag} folder: {existing} is a file, not a folder; choose another with {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to the {flag} folder {folder} ({existing} is not writable); choose another with {flag}")


def checkpoints(output):
    """The checkpoint files directly in ``output``."""
    folder = Path(output)
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def read_metrics(output):
    """The records of ``metrics.jsonl`` in ``output`` (one per finished epoch); [] if there is none."""
    path = Path(output) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise OutputError(f"{path}, line {number}: not a JSON record ({exc.msg}); a run's metrics.jsonl "
                                  f"holds one JSON object per epoch") from exc
    return records


def describe_earlier_run(output, logdir):
    """A phrase describing the run found in ``output`` (and its VisualDL records in ``logdir``), or None.

    A run is there when the folder holds a checkpoint, a non-empty ``metrics.jsonl``, or when the log
    folder holds VisualDL records.
    """
    found_checkpoints = checkpoints(output)
    metrics = read_metrics(output)
    records = [path for path in record_files(logdir) if os.path.getsize(path) > 0]
    if not (found_checkpoints or metrics or records):
        return None
    try:
        run_args = json.loads((Path(output) / ARGS_FILE).read_text())
    except (OSError, ValueError):
        run_args = {}
    what = f"a {run_args.get('model', 'training')} run" + (f" on {run_args['dataset']}" if "dataset" in run_args else "")
    if metrics:
        epochs = f" of {run_args['epochs']}" if "epochs" in run_args else ""
        best = max(record.get("val_top1", float("nan")) for record in metrics)
        return f"{what}: {metrics[-1]['epoch']}{epochs} epochs done, best val top-1 {100 * best:.2f} %"
    if found_checkpoints:
        return f"{what} stopped in its first epoch ({', '.join(path.name for path in found_checkpoints)})"
    return f"VisualDL records of an earlier run in {logdir}"


def clear_run(output, logdir):
    """Remove the files a run writes (checkpoints, metrics, arguments, VisualDL records); return them."""
    removed = checkpoints(output) + [Path(output) / name for name in (METRICS_FILE, ARGS_FILE)]
    removed = [path for path in removed if path.is_file()] + [Path(path) for path in record_files(logdir)]
    for path in removed:
        path.unlink()
    return removed


def truncate_metrics(output, epochs_done):
    """Drop the records of epochs after ``epochs_done`` (written by a run killed before its checkpoint)."""
    path = Path(output) / METRICS_FILE
    if not path.exists():
        return
    kept = [record for record in read_metrics(output) if record["epoch"] <= epochs_done]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(tmp, path)


def append_metrics(output, record):
    with open(Path(output) / METRICS_FILE, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def write_args(output, args):
    (Path(output) / ARGS_FILE).write_text(json.dumps(vars(args), indent=2) + "\n")
