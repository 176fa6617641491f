"""A training run's folder: what a run writes there, in what order, and how an earlier run is recognised.

A run writes into its output folder ``args.json``, checkpoints (``latest``, ``best``, ``epoch_N``,
all ``*.pdckpt``) and ``metrics.jsonl`` (one record per finished epoch), and VisualDL records into
its log folder. The rules that keep a user's runs intact:

* one run per folder: ``RunFolder.lock()`` (``run_lock``) is held by the process that writes;
* an epoch's checkpoint is written before its metrics record, and the record is also kept in the
  checkpoint, so every recorded epoch can be resumed and a record lost to a kill is written back
  on resume (``restore_metrics``);
* a new run never replaces an earlier one unless told (``--resume``, ``--overwrite`` or another
  ``--output``); files of a start that ended before its first checkpoint hold nothing to resume and
  are cleared, with a notice, by the next run there; ``--overwrite`` removes exactly a run's files;
* ``--resume auto`` takes ``latest``, or, when that is unreadable (torn by a crash), the newest
  readable ``epoch_N`` checkpoint, with a notice.
"""

import filecmp
import json
import os
from pathlib import Path

from .checkpoint import SUFFIX, CheckpointError, epoch_checkpoints, load_checkpoint
from .cli import notice
from .errors import UserError
from .files import append_line, partial_files, write_text_atomically
from .run_lock import RunLock
from .vdl_records import record_files

METRICS_FILE = "metrics.jsonl"
ARGS_FILE = "args.json"
LATEST = f"latest{SUFFIX}"


class OutputError(UserError):
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


class RunFolder:
    """The output folder of one training run and its VisualDL log folder."""

    def __init__(self, output, logdir):
        self.path = Path(output)
        self.logdir = Path(logdir)

    # ------------------------------------------------------------------ reading

    def checkpoints(self):
        """The checkpoint files directly in the folder."""
        return sorted(self.path.glob(f"*{SUFFIX}")) if self.path.is_dir() else []

    def read_metrics(self):
        """The records of ``metrics.jsonl`` (one per finished epoch); [] if there is none."""
        return read_metrics(self.path)

    def earlier_run(self):
        """A phrase describing the run recorded here (checkpoints or metrics), or another run's curves in the log folder, or None."""
        found, metrics = self.checkpoints(), self.read_metrics()
        if not (found or metrics):
            foreign = [path for path in self._records() if path not in self.leftovers() and os.path.getsize(path) > 0]
            return f"VisualDL records of another run in {self.logdir}" if foreign else None
        run_args = self._recorded_args()
        what = f"a {run_args.get('model', 'training')} run" + (f" on {run_args['dataset']}" if "dataset" in run_args else "")
        if metrics:
            epochs = f" of {run_args['epochs']}" if "epochs" in run_args else ""
            best = max(record.get("val_top1", float("nan")) for record in metrics)
            return f"{what}: {metrics[-1]['epoch']}{epochs} epochs done, best val top-1 {100 * best:.2f} %"
        return f"{what} stopped in its first epoch ({', '.join(path.name for path in found)})"

    def refuse_earlier_run(self, allowed, resume_auto=False):
        """A new run never replaces an earlier one: OutputError unless ``allowed`` (resuming it, or ``--overwrite``)."""
        earlier = None if allowed else self.earlier_run()
        if earlier and resume_auto:
            raise OutputError(f"{self.path} holds {earlier}, but no checkpoint to resume; start afresh there with "
                              f"--overwrite, or choose another --output")
        if earlier:
            raise OutputError(
                f"{self.path} already holds {earlier}. Continue it with --resume auto, write this run elsewhere with "
                f"--output DIR, or replace it with --overwrite (deletes its checkpoints, metrics and VisualDL records)")

    def leftovers(self):
        """Files of a start here that ended before its first checkpoint: its arguments, its VisualDL records (when
        its arguments name this log folder) and partial writes."""
        recorded = self._recorded_args()
        ours = recorded and Path(recorded.get("logdir", "")).resolve() == self.logdir.resolve()
        files = [self.path / ARGS_FILE] + (self._records() if ours else []) + self.partial_writes()
        return [path for path in files if path.is_file()]

    def _records(self):
        return [Path(path) for path in record_files(self.logdir)]

    def partial_writes(self):
        """Temporary files of writes interrupted by a kill, in both folders."""
        return partial_files(self.path) + (partial_files(self.logdir) if self.logdir != self.path else [])

    def _recorded_args(self):
        try:
            recorded = json.loads((self.path / ARGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    # ------------------------------------------------------------------ resuming

    def checkpoint_to_resume(self, resume):
        """``(path, loaded checkpoint)`` that ``--resume`` names (``auto``: this folder's newest), or ``(None, None)``."""
        if resume != "auto":
            path = Path(resume)
            state = load_checkpoint(path)
            self._refuse_earlier_state(path)
            return path, state
        return self.newest_checkpoint()

    def newest_checkpoint(self):
        """``(path, state)`` of ``latest``, or of the newest readable ``epoch_N`` when ``latest`` cannot be read."""
        latest = self.path / LATEST
        candidates = ([latest] if latest.is_file() else []) + epoch_checkpoints(self.path)[::-1]
        problems = []
        for path in candidates:
            try:
                state = load_checkpoint(path)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if problems:
                notice(f"{problems[0]}; resuming from {path} instead, the newest checkpoint that can be read")
            return path, state
        if problems:
            raise OutputError(f"no checkpoint in {self.path} can be read ({problems[0]}); start afresh there with "
                              f"--overwrite, or choose another --output")
        return None, None

    def _refuse_earlier_state(self, path):
        """An explicit ``--resume`` of an older epoch into its own folder would replace the later ones."""
        latest = self.path / LATEST
        if path.resolve().parent != self.path.resolve() or not latest.is_file() or _same_bytes(latest, path):
            return
        newest, _ = self.newest_checkpoint()  # latest itself, unless a crash tore it
        if newest is not None and not _same_bytes(newest, path):
            raise OutputError(
                f"{path} is an earlier state of the run in {self.path}, whose newest checkpoint is {newest}; resuming it "
                f"there would replace the later epochs. Resume it into another folder with --output DIR, or continue "
                f"the run with --resume auto")

    # ------------------------------------------------------------------ writing

    def lock(self):
        """The lock of this folder (and of the log folder when it lies elsewhere): one run at a time."""
        return _Locks(self._locked_folders())

    def check_not_in_use(self):
        """Fail early, creating nothing, if another live run holds the lock (``lock()`` then takes it for real)."""
        for folder in self._locked_folders():
            RunLock(folder).check()

    def _locked_folders(self):
        return [self.path] + ([self.logdir] if self.path.resolve() not in self.logdir.resolve().parents else [])

    def clear(self, files):
        """Delete ``files`` (a run's, or the leftovers of a start); return them."""
        for path in files:
            path.unlink()
        return files

    def run_files(self):
        """What ``--overwrite`` removes: checkpoints, metrics, arguments, every VisualDL records file of the log
        folder and partial writes."""
        files = self.checkpoints() + [self.path / METRICS_FILE] + self.leftovers() + self._records()
        return sorted({path for path in files if path.is_file()})

    def write_args(self, args):
        write_text_atomically(self.path / ARGS_FILE, json.dumps(dict(args), indent=2) + "\n")

    def restore_metrics(self, epochs_done, record):
        """Make ``metrics.jsonl`` hold exactly the records of the first ``epochs_done`` epochs.

        Drops records of later epochs (logged by a process killed before their checkpoint), and writes
        back the last epoch's ``record`` (kept in its checkpoint) when a kill came between the two writes.
        """
        kept = [r for r in self.read_metrics() if r["epoch"] <= epochs_done]
        if record is not None and record["epoch"] == epochs_done and (not kept or kept[-1]["epoch"] < epochs_done):
            kept.append(record)
        path = self.path / METRICS_FILE
        if kept or path.exists():
            write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in kept))

    def append_metrics(self, record):
        append_line(self.path / METRICS_FILE, json.dumps(record))


class _Locks:
    """Several ``RunLock`` taken together (in order) and released together."""

    def __init__(self, folders):
        self.locks = [RunLock(folder) for folder in folders]

    def __enter__(self):
        taken = []
        try:
            for lock in self.locks:
                lock.path.parent.mkdir(parents=True, exist_ok=True)
                taken.append(lock.acquire())
        except BaseException:
            for lock in taken:
                lock.release()
            raise
        return self

    def __exit__(self, *exc_info):
        for lock in reversed(self.locks):
            lock.release()


def read_metrics(output):
    """The records of ``metrics.jsonl`` in ``output`` (one per finished epoch); [] if there is none."""
    path = Path(output) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise OutputError(f"{path}, line {number}: not a JSON record ({exc.msg}); a run's metrics.jsonl "
                                  f"holds one JSON object per epoch") from exc
    return records


def _same_bytes(first, second):
    """``latest`` is a hard link to its epoch's checkpoint, or a copy where links fail: compare contents."""
    return filecmp.cmp(first, second, shallow=False)
