"""Getting results from other threads back onto the GUI thread.

Core calls return :class:`concurrent.futures.Future`s resolved in the pipeline thread, and store
reads run on Qt's thread pool; both hand their outcome to a callback that must run on the GUI
thread. :class:`Dispatcher` does that hop with a queued signal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

T = TypeVar("T")
ErrorHandler = Callable[[str], None]


class Dispatcher(QObject):
    """Runs posted callables on the thread this object lives in (create it on the GUI thread)."""

    _posted = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._posted.connect(self._on_posted)

    def post(self, fn: Callable[[], Any]) -> None:
        """Safe from any thread; ``fn`` runs later on the dispatcher's thread."""
        self._posted.emit(fn)

    @Slot(object)
    def _on_posted(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # a failing UI callback must not take the event loop down
            log.exception("UI callback failed")

    def when_done(self, future: Future[T], on_result: Callable[[T], Any] | None = None,
                  on_error: ErrorHandler | None = None) -> None:
        """Call ``on_result(value)`` or ``on_error(message)`` on the GUI thread once ``future`` settles."""

        def settle(done: Future[T]) -> None:
            try:
                value = done.result()
            except CancelledError:
                if on_error is not None:
                    self.post(lambda: on_error("the processing engine stopped before it could do that"))
                return
            except Exception as exc:
                message = str(exc) or type(exc).__name__
                log.warning("background task failed: %s", message)
                if on_error is not None:
                    self.post(lambda: on_error(message))
                return
            if on_result is not None:
                self.post(lambda: on_result(value))

        future.add_done_callback(settle)

    def in_background(self, fn: Callable[[], T], on_result: Callable[[T], Any] | None = None,
                      on_error: ErrorHandler | None = None) -> Future[T]:
        """Run ``fn`` on Qt's global thread pool (store reads, exports), then call back here."""
        future: Future[T] = Future()

        class _Job(QRunnable):
            def run(self) -> None:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)

        self.when_done(future, on_result, on_error)
        QThreadPool.globalInstance().start(_Job())
        return future
