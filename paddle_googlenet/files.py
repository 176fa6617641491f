"""Writing files so that no reader ever sees half of one, and a failed write is one clear line.

Every file a run, an export or a conversion writes (checkpoints, metadata, ``args.json``, the
rewritten ``metrics.jsonl``) is written by ``write_atomically``: into a hidden temporary file beside
its destination (``.NAME.*.tmp``), flushed to disk, then renamed over the destination, so a kill or
a power cut leaves the old file or the new one, never a mixture. A temporary file left behind by a
killed process is found by ``partial_files`` and removed by the next run in that folder.

A write that fails (disk full, I/O error, a folder made read-only) raises ``WriteError``, naming
the file, the reason and, for a full disk, how much space the file needed and how much is free.
"""

import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from .errors import UserError

PARTIAL_SUFFIX = ".tmp"


class WriteError(UserError):
    """A file could not be written; ``str()`` says which, why, and for a full disk how much space it needed."""


def write_atomically(path, write, exclusive=False, size_hint=None):
    """Run ``write(tmp_path)`` on a temporary file beside ``path``, then move it to ``path``.

    ``exclusive``: never replace an existing ``path``, even one created meanwhile by another process
    (``FileExistsError``). Raises ``WriteError`` when the disk refuses the data (``size_hint``, the
    bytes the file is expected to take, goes into its message); the temporary file is removed and
    ``path`` keeps its old content.
    """
    path = Path(path)
    try:
        tmp = _create_temporary(path)
    except OSError as exc:  # a folder made read-only, or a disk too full for even an empty file
        raise WriteError(describe_write_failure(path, exc)) from None
    try:
        write(tmp)
        _fsync(tmp)
        if exclusive:
            os.link(tmp, path)  # fails if path exists: no window in which another writer's file is replaced
        else:
            os.replace(tmp, path)
        _fsync_folder(path.parent)
    except FileExistsError:
        raise
    except OSError as exc:
        raise WriteError(describe_write_failure(path, exc, size_hint or _size(tmp))) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomically(path, text, exclusive=False):
    """``write_atomically`` for a UTF-8 text file."""
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), exclusive)


def link_atomically(source, path):
    """Make ``path`` an alias of the file ``source``: a hard link, or a copy where links are not possible."""

    def write(tmp):
        os.remove(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    write_atomically(path, write)


def append_line(path, line):
    """Append one line to a text file and flush it to disk; ``WriteError`` if the disk refuses it."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(line.rstrip("\n") + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        raise WriteError(describe_write_failure(path, exc, len(line) + 1)) from None


def partial_files(folder):
    """Temporary files that ``write_atomically`` left in ``folder`` when its process was killed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.glob(f".*{PARTIAL_SUFFIX}") if path.is_file())


def describe_write_failure(path, exc, size=None):
    """One line: which file could not be written and why (with the space needed and free on a full disk)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(Path(path).parent)
        needed = f"about {_megabytes(size)} needed, " if size else ""
        reason = f"the disk is full ({needed}{_megabytes(free)} free)" if free is not None else "the disk is full"
    return f"cannot write {path}: {reason}"


def _megabytes(size):
    return f"{size / 2**20:.1f} MB"


def _free_bytes(folder):
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(path):
    try:
        return os.path.getsize(path) or None
    except OSError:
        return None


def _create_temporary(path):
    """Create an empty, hidden temporary file beside ``path`` with the permissions ``open()`` would give it
    (the umask applies; ``tempfile.mkstemp`` would make it private); return its name."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path.parent))


def _fsync(path):
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_text(document, indent=None):
    """``document`` as JSON text that is valid UTF-8 whatever its strings hold.

    Non-ASCII text stays readable; only a string holding bytes that were not UTF-8 (a file name
    decoded with Python's ``surrogateescape``, e.g. ``caf\\udce9``) makes the whole text ASCII, with
    such bytes as ``\\udcXX`` escapes, which a JSON reader turns back into the same string.
    """
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(document, indent=indent, ensure_ascii=True)
    return text
