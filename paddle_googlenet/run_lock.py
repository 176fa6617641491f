"""One run per folder: a lock that belongs to the live process holding it.

``RunLock(folder).acquire()`` creates ``folder/.lock`` (if needed) and takes an exclusive
``flock`` on it, then writes the holder's PID, host and start time into it; ``release()`` (also at
exit, by the ``with`` statement) deletes it. The kernel drops a ``flock`` when its process ends,
however it ends, so a lock file whose lock can be taken belongs to a process that is gone: it is
stale, and is taken over with a notice. A lock held by a live process stops the second start with
one line naming the holder. A lock file naming another host is not taken over (its ``flock`` may
not reach this machine over a network file system): the message says to delete it if that run has
ended.
"""

import datetime
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .cli import notice
from .errors import UserError

LOCK_FILE = ".lock"


class FolderInUse(UserError):
    """Another live run holds the folder's lock."""


class RunLock:
    """The exclusive lock of one folder; ``with RunLock(folder):`` holds it for the block."""

    def __init__(self, folder, purpose="training run"):
        self.path = Path(folder) / LOCK_FILE
        self.purpose = purpose
        self.fd = None

    def acquire(self):
        """Take the lock; raise FolderInUse if a live process holds it. Returns self."""
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _wait_for_holder(fd)
                os.close(fd)
                raise FolderInUse(self._in_use_message(holder)) from None
            if not _is_current(fd, self.path):  # released and deleted meanwhile: lock the new file
                os.close(fd)
                continue
            self._take(fd)
        return self

    def check(self):
        """Raise FolderInUse if a live process holds the lock; take nothing and create nothing."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(self._in_use_message(_wait_for_holder(fd))) from None
        finally:
            os.close(fd)  # drops the probe's lock too

    def _take(self, fd):
        previous = _read_holder(fd)
        if previous and previous.get("host") not in (None, socket.gethostname()):
            os.close(fd)
            raise FolderInUse(self._in_use_message(previous, elsewhere=True))
        if previous:
            notice(f"took over {self.path} from a {previous.get('purpose', 'run')} that ended without releasing it "
                   f"(PID {previous.get('pid')}, started {previous.get('started')})")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd

    def release(self):
        """Delete the lock file and drop the lock (nothing happens if it is not held)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def _in_use_message(self, holder, elsewhere=False):
        who = "another process"
        if holder:
            who = f"a {holder.get('purpose', 'run')} (PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})"
        folder = self.path.parent
        if elsewhere:
            return (f"{folder} is in use by {who}; wait for it to end, or choose another folder. If that run has "
                    f"ended, delete {self.path}")
        return f"{folder} is in use by {who}; wait for it to end, or choose another folder"

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _read_holder(fd):
    """The holder recorded in an open lock file, or None if it records none."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        holder = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _wait_for_holder(fd, seconds=2.0):
    """The holder of a lock just taken by another process, which writes it right after taking the lock."""
    deadline = time.monotonic() + seconds
    holder = _read_holder(fd)
    while holder is None and time.monotonic() < deadline:
        time.sleep(0.05)
        holder = _read_holder(fd)
    return holder


def _is_current(fd, path):
    """Whether the open ``fd`` is still the file at ``path`` (not one deleted by a releasing holder)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
