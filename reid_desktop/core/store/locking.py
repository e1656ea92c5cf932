"""One writer per database: an exclusive lock on ``<database>.lock`` held while a store writes.

Two processes (the window and a ``reid-desktop process`` run, or an engine restarted before the old
one ended) writing one SQLite file would both hand out identities and interleave runs. The lock is
an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows): the OS drops it when the
holder dies, even by ``kill -9``, so a crash never leaves the database locked. The file says who
holds it, so the refusal can name the other process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl


class DatabaseInUse(RuntimeError):
    """Another process writes to this database; the message names it."""


def _describe(holder: dict[str, object]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if isinstance(started, int | float) \
        else "an unknown time"
    return (f"process {holder.get('pid', '?')} ({holder.get('program', 'unknown program')}) on "
            f"{holder.get('host', 'an unknown host')}, since {when}")


class WriterLock:
    """Exclusive, non-blocking lock next to a database file. Use as a context manager or acquire/release."""

    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}.lock")
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> WriterLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            self._lock(handle)
        except OSError:
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            handle.close()
            raise DatabaseInUse(f"{self.path.with_suffix('')} is in use by {_describe(holder)}: only one program "
                                "may write to a database at a time; close the other one first") from None
        handle.seek(0)
        handle.truncate()
        program = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:2]))
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "program": program or "python",
                                 "started": time.time()}))
        handle.flush()
        self._file = handle
        return self

    @staticmethod
    def _lock(handle: IO[str]) -> None:
        if sys.platform == "win32":
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        """Give the lock up. The file stays: unlinking it could let a waiting process lock a stale inode."""
        handle, self._file = self._file, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            if sys.platform == "win32":
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        finally:
            handle.close()  # closing the descriptor drops a flock

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
