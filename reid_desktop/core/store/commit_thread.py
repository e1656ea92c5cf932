"""A store's commit thread and the right to write: the engine never waits for the database.

Commits and retention rounds run one at a time, in order, in a thread of their own on a connection of their own
(opened at the first job). Every write transaction, in that thread or the caller's, first takes the right to
write; the caller waits for a job under way until it has run :data:`COMMIT_WAIT_S` in all, so a database that
stopped answering holds the engine once, briefly, and later writes fail at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reid_desktop.core.store.interface import StoreError

COMMIT_WAIT_S = 5.0  # the longest the engine waits for a commit under way in the commit thread (an edit, a run)


class CommitThread:
    """``main_db`` is the store's connection; ``open_connection`` opens the commit thread's, and ``unreachable`` is
    told (with the error) when it cannot: the job is skipped, tried again next round. ``errors`` are what the
    database driver raises. :attr:`here` is per thread: the commit thread keeps its connection there."""

    def __init__(self, main_db: Any, open_connection: Callable[[], Any],
                 unreachable: Callable[[BaseException], None], errors: tuple[type[BaseException], ...]) -> None:
        self.main_db = main_db
        self._open_connection = open_connection
        self._unreachable = unreachable
        self._errors = errors
        self.here = threading.local()
        self._writing = threading.RLock()  # one write transaction at a time, whichever thread and connection
        self._executor: ThreadPoolExecutor | None = None
        self._own_db: Any = None
        self._job: Future[None] | None = None  # the job under way (or done)
        self._started = 0.0
        self._answered = 0.0  # when a transaction last ended (either thread)

    @property
    def db(self) -> Any:
        """The connection of the calling thread: the commit thread's own, or the store's."""
        return getattr(self.here, "db", None) or self.main_db

    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.done()

    def submit(self, job: Callable[[], object]) -> Future[None]:
        """Run ``job`` in the commit thread; the caller does not wait for it."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-commit")
        self._job = self._executor.submit(self._run, job)
        self._started = time.monotonic()
        return self._job

    def _run(self, job: Callable[[], object]) -> None:
        if self._own_db is None:
            try:
                self._own_db = self._open_connection()
            except (StoreError, *self._errors) as exc:  # type: ignore[misc]  # the server is away: next round
                self._unreachable(exc)
                return
        self.here.db = self._own_db
        job()

    def waiting(self) -> float:
        """How long the job under way has waited for the database: since it began or since its last transaction
        ended (a retention round of many short transactions is answered all along); 0 when idle."""
        return time.monotonic() - max(self._started, self._answered) if self.busy else 0.0

    def answered(self) -> None:
        """A transaction ended."""
        self._answered = time.monotonic()

    def take(self) -> bool:
        """The right to write, once a job under way has ended or has waited :data:`COMMIT_WAIT_S` in all (False)."""
        if self._writing.acquire(blocking=False):
            return True
        return self._writing.acquire(timeout=max(COMMIT_WAIT_S - self.waiting(), 0.0))

    def release(self) -> None:
        self._writing.release()

    def finish(self) -> None:
        """Let the job under way end; no more jobs run."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def close(self) -> None:
        """Close both connections. Never raises."""
        for db in (self.main_db, self._own_db):
            if db is not None:
                with contextlib.suppress(*self._errors):
                    db.close()
