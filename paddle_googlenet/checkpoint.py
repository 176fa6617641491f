"""Self-describing checkpoints: what one holds, how it is built, written, read and restored.

A checkpoint (``*.pdckpt``) is one file written with ``paddle.save`` and read back by this
project's safe loader (``safe_load``: a file can never run code when it is opened). It holds:

* the **model record** (``ModelRecord``): model name and constructor arguments, class names and
  the preprocessing its inputs need. This is all that export, inference and ``--pretrained`` read,
  and all a model needs to be rebuilt and used without any other file;
* the weights (``model``) and, for runs with ``--ema``, their moving average (``ema``), with
  ``best_of`` saying which of the two the run judged its best checkpoint by;
* for a training checkpoint (``training_checkpoint``): the optimizer and LR-schedule state, the
  run's position (``train_state``, from which every random draw of the run is derived), the run's
  settings (``args``) and where its training images came from (``data``, a ``data.data_source``);
* for a converted one (``weights_checkpoint``, written by ``convert_v2``): ``origin``, what it was
  converted from. It has no training state: it starts runs (``--pretrained``), it does not resume one.

Writes are atomic (``files.write_atomically``); ``write_epoch_checkpoints`` keeps ``epoch_N``,
``latest`` and ``best`` of a run. Checkpoints written by earlier versions of this project load too.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from .data.build import SOURCE_FLAGS
from .errors import UserError
from .files import link_atomically, write_atomically
from .runtime import import_paddle
from .safe_load import UnreadableFileError, load as safe_load

paddle = import_paddle()

FORMAT = "paddle-googlenet-checkpoint"
SUFFIX = ".pdckpt"
WEIGHTS = ("auto", "weights", "ema")


class CheckpointError(UserError):
    """A file that is not a readable paddle-googlenet checkpoint, or not the one a command needs."""


@dataclass(frozen=True)
class ModelRecord:
    """What a checkpoint says about its model: enough to rebuild it and feed it.

    Attributes:
        model_name: a registered model name (``models.list_models()``).
        model_kwargs: its constructor arguments (``num_classes`` and any others).
        class_names: the name of each output unit, in order.
        preprocess: the ``data.make_preprocess`` dict of the inputs it expects.
    """

    model_name: str
    model_kwargs: dict
    class_names: list
    preprocess: dict

    def build(self):
        """A freshly initialised model of this architecture (in training mode)."""
        from .models import get_model

        return get_model(self.model_name, **self.model_kwargs)

    def to_dict(self):
        return asdict(self)


def read_record(state):
    """The ``ModelRecord`` of a loaded checkpoint."""
    return ModelRecord(state["model_name"], dict(state["model_kwargs"]), list(state["class_names"]), dict(state["preprocess"]))


def training_checkpoint(record, model, optimizer, scheduler, ema, train_state, best_of, args, data):
    """The state a training run writes: ``record``, weights, EMA, optimizer, schedule, position, settings."""
    return {
        **record.to_dict(),
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "best_of": best_of,
        "optimizer": portable_optimizer_state(optimizer.state_dict(), model),
        "lr_scheduler": scheduler.state_dict(),
        "train_state": train_state.to_dict(),
        "args": dict(args),
        "data": dict(data),
    }


def weights_checkpoint(record, weights, origin):
    """The state of a checkpoint that holds weights only (``convert_v2``); ``origin`` describes their source."""
    return {**record.to_dict(), "model": dict(weights), "ema": None, "best_of": "weights", "origin": dict(origin)}


def is_training_checkpoint(state):
    """Whether a checkpoint can resume a run (it holds the optimizer state and the run's position)."""
    return "train_state" in state and "optimizer" in state


def restore_training(state, model, optimizer, scheduler, ema):
    """Put a training checkpoint's weights, optimizer, schedule and EMA into a run; return its ``train_state`` dict."""
    model.set_state_dict(state["model"])
    optimizer.set_state_dict(optimizer_state_for(state["optimizer"], model))
    scheduler.set_state_dict(state["lr_scheduler"])
    if ema is not None and state.get("ema") is not None:
        ema.set_state_dict(state["ema"])
    return dict(state["train_state"])


def save_checkpoint(state, path, exclusive=False):
    """Write ``state`` to ``path`` atomically: readers see the old file or the new one, never half.

    ``exclusive``: refuse (``CheckpointError``) to replace a file that exists.
    """
    try:
        write_atomically(path, lambda tmp: paddle.save(dict(state, format=FORMAT), tmp), exclusive, _expected_size(path))
    except FileExistsError:
        raise CheckpointError(f"{path} exists already; choose another file name (nothing was written)") from None


def _expected_size(path):
    """About how many bytes a checkpoint in this folder takes: the size of the run's latest one, if any."""
    latest = Path(path).parent / f"latest{SUFFIX}"
    return latest.stat().st_size if latest.is_file() else None


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``; raise CheckpointError with the reason otherwise.

    The file is read by ``safe_load``, which refuses (``UnsafeFileError``) a file that asks to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = safe_load(path)
    except UnreadableFileError as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a paddle-googlenet checkpoint (written by train.py or convert_v2 as *{SUFFIX})")
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
        raise CheckpointError("--weights ema: this checkpoint holds no moving average of its weights (trained "
                              "without --ema); use its weights")
    return weights


def weights_of(state, weights="auto"):
    """The state dict of a checkpoint's trained weights or their moving average (``chosen_weights``)."""
    return state["ema"]["values"] if chosen_weights(state, weights) == "ema" else state["model"]


def add_weights_argument(parser):
    """``--weights auto|weights|ema``, the choice ``chosen_weights`` makes, for a command-line tool."""
    parser.add_argument("--weights", choices=WEIGHTS, default="auto",
                        help="a checkpoint's trained weights or their moving average (runs with --ema); auto: the "
                             "ones its run chose its best checkpoint by (default: %(default)s)")


def build_model(state, weights="auto"):
    """The model a checkpoint describes, with its trained or EMA weights (``chosen_weights``), in eval mode."""
    model = read_record(state).build()
    model.set_state_dict(weights_of(state, weights))
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
        link_atomically(epoch_path, latest)
        for old in epoch_checkpoints(output_dir)[:-keep]:
            old.unlink()
    else:
        save_checkpoint(state, latest)
    if is_best:
        link_atomically(latest, output_dir / f"best{SUFFIX}")


def epoch_checkpoints(output_dir):
    """The ``epoch_N`` checkpoints in ``output_dir``, oldest first."""
    found = [path for path in Path(output_dir).glob(f"epoch_*{SUFFIX}") if path.stem.split("_")[1].isdigit()]
    return sorted(found, key=lambda path: int(path.stem.split("_")[1]))



def training_data(state):
    """Where a training checkpoint's images came from (a ``data.data_source`` dict), or None (a converted one)."""
    if state.get("data"):
        return dict(state["data"])
    recorded = state.get("args") or {}  # checkpoints of earlier versions kept only the run's flags
    return {name: recorded.get(name) for name in SOURCE_FLAGS} if "dataset" in recorded else None
