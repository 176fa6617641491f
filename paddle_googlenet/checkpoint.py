"""Self-describing checkpoints, written atomically.

A checkpoint is one ``paddle.save`` file holding the weights (and their moving average when the run
kept one), the optimizer and LR-schedule state, the training position (from which every random draw
of the run is derived), and everything needed to rebuild and use the model without any other file:
model name and constructor arguments, class names and preprocessing.
"""

import os
import shutil
import tempfile
from pathlib import Path

from .runtime import import_paddle

paddle = import_paddle()

FORMAT = "paddle-googlenet-checkpoint"
SUFFIX = ".pdckpt"


class CheckpointError(Exception):
    """A file that is not a readable paddle-googlenet checkpoint."""


def _replace_atomically(path, write):
    """Run ``write(tmp_path)`` on a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically: readers see the old file or the new one, never half."""
    _replace_atomically(path, lambda tmp: paddle.save(dict(state, format=FORMAT), tmp))


def link_checkpoint(source, path):
    """Make ``path`` an atomic alias of the checkpoint ``source`` (a hard link, or a copy)."""

    def write(tmp):
        os.remove(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    _replace_atomically(path, write)


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``; raise CheckpointError with the reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # paddle.load raises many kinds of errors on foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a paddle-googlenet checkpoint (written by train.py as *{SUFFIX})")
    return state


def portable_optimizer_state(optimizer_state, model):
    """The optimizer's state keyed by structured parameter names (``ince3a.conv1.conv.weight``).

    Paddle keys accumulators by generated names (``conv2d_177.w_0_velocity_0``) that change from one
    process or model build to the next; structured names make the state loadable anywhere.
    """
    return _rename_keys(optimizer_state, {p.name: name for name, p in model.named_parameters()})


def optimizer_state_for(portable_state, model):
    """Inverse of ``portable_optimizer_state`` for this model instance."""
    return _rename_keys(portable_state, {name: p.name for name, p in model.named_parameters()})


def _rename_keys(state, prefixes):
    renamed = {}
    for key, value in state.items():
        prefix = max((p for p in prefixes if key == p or key.startswith(p + "_")), key=len, default=None)
        renamed[prefixes[prefix] + key[len(prefix):] if prefix else key] = value
    return renamed


WEIGHTS = ("auto", "weights", "ema")


def chosen_weights(state, weights="auto"):
    """``"weights"`` or ``"ema"``: which of a checkpoint's weights ``weights`` selects.

    ``auto`` takes the ones the run judged its best checkpoint by (``train.py --best-of``): the EMA
    for a run with ``--best-of ema``, the trained weights otherwise.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if weights == "auto":
        return "ema" if state.get("best_of") == "ema" and state.get("ema") is not None else "weights"
    if weights == "ema" and state.get("ema") is None:
        raise CheckpointError("this checkpoint holds no moving average of its weights (trained without --ema); use the weights")
    return weights


def add_weights_argument(parser):
    """``--weights auto|weights|ema``, the choice ``chosen_weights`` makes, for a command-line tool."""
    parser.add_argument("--weights", choices=WEIGHTS, default="auto",
                        help="a checkpoint's trained weights or their moving average (runs with --ema); auto: the "
                             "ones its run chose its best checkpoint by (default: %(default)s)")


def build_model(state, weights="auto"):
    """The model a checkpoint describes, with its trained or EMA weights (``chosen_weights``), in eval mode."""
    from .models import get_model

    model = get_model(state["model_name"], **state["model_kwargs"])
    values = state["ema"]["values"] if chosen_weights(state, weights) == "ema" else state["model"]
    model.set_state_dict(values)
    model.eval()
    return model


def write_epoch_checkpoints(state, output_dir, epoch, is_best, keep):
    """Write ``epoch_<epoch>``, point ``latest`` (and ``best`` if ``is_best``) at it, keep the last ``keep`` epochs.

    With ``keep == 0`` only ``latest`` and ``best`` are kept. ``latest`` and ``best`` are hard links,
    so replacing one never changes the other.
    """
    output_dir = Path(output_dir)
    latest = output_dir / f"latest{SUFFIX}"
    if keep > 0:
        epoch_path = output_dir / f"epoch_{epoch}{SUFFIX}"
        save_checkpoint(state, epoch_path)
        link_checkpoint(epoch_path, latest)
        for old in sorted(output_dir.glob(f"epoch_*{SUFFIX}"), key=_epoch_number)[:-keep]:
            old.unlink()
    else:
        save_checkpoint(state, latest)
    if is_best:
        link_checkpoint(latest, output_dir / f"best{SUFFIX}")


def _epoch_number(path):
    return int(path.stem.split("_")[1])


def resolve_resume(resume, output_dir):
    """The checkpoint ``--resume`` names: a path, or ``auto`` for ``latest`` in the output folder (None if absent)."""
    if resume != "auto":
        return Path(resume)
    latest = Path(output_dir) / f"latest{SUFFIX}"
    return latest if latest.is_file() else None
