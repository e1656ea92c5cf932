"""The processing engine behind the window: the core's :func:`run` generator on a worker thread, supervised.

Models, ONNX sessions and the writing database connection are all created inside that thread;
the window only receives immutable results through signals and sends commands through the
:class:`PipelineControl`, so neither decoding nor inference ever runs on the GUI thread.

The engine never waits for the window: frame results go through :class:`Latest`, which
keeps only the newest result per camera, so a window that stalls (a modal dialog, a slow
repaint) costs one frame per camera, not a queue that grows. A worker that dies of an unexpected
error is restarted with back-off, with the window's current cameras and pauses; identities and
targets come back from the database. Only one worker runs at a time: a new start waits until the
previous thread has ended, so two never write to one database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.engine_setup import assembled_pipeline
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.errors import ModelError
from reid_desktop.core.identity.watchlist import WatchMatch
from reid_desktop.core.store.history import History, open_store
from reid_desktop.core.store.interface import HistoryReader, HistoryStore, StorageHealth, StoreError
from reid_desktop.core.types import Frame, FrameResult, PipelineInfo, SourceHealth, SourceStatus, TargetSighted
from reid_desktop.core.vision.detector_preparation import DetectorPreparation
from reid_desktop.ui.tasks import Dispatcher
from trainer.default_model import default_embedder

log = logging.getLogger(__name__)

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0  # a worker that ran this long before dying starts the back-off afresh

# The cameras to run and which of them are paused, read at every (re)start.
SourcesProvider = Callable[[], tuple[Sequence[SourceSpec], Collection[str]]]


class _PerCamera(Protocol):
    @property
    def source_id(self) -> str: ...


T = TypeVar("T", bound=_PerCamera)


class Latest(Generic[T]):
    """Frame results (or decoded pictures) on their way to the GUI thread: the newest per camera only.

    ``put`` is called by the worker (or a reader) and never blocks on the GUI; it returns True when the
    GUI must be told (nothing was waiting), so at most one notification is queued at any time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, T] = {}
        self._notified = False

    def put(self, item: T) -> bool:
        with self._lock:
            self._latest[item.source_id] = item
            notify, self._notified = not self._notified, True
            return notify

    def take(self) -> list[T]:
        with self._lock:
            results = list(self._latest.values())
            self._latest.clear()
            self._notified = False
            return results


class _Worker(QObject):
    """Iterates the pipeline; lives on the engine's thread."""

    info_ready = Signal(object)  # PipelineInfo
    frames_ready = Signal()  # new results wait in Latest
    source_changed = Signal(object)  # SourceStatus
    health_reported = Signal(object)  # SourceHealth, about once a second per source
    target_sighted = Signal(object)  # TargetSighted: a followed person appeared on a camera
    watch_matched = Signal(object)  # WatchMatch: someone like a person of the watch list appeared
    storage_changed = Signal(object)  # StorageHealth
    preparation_progressed = Signal(object)  # DetectorPreparation: the faster detector, prepared in the background
    errored = Signal(str)  # a problem the operator must fix (model, database): no restart
    crashed = Signal(str)  # an unexpected error: the supervisor restarts the worker
    finished = Signal()

    def __init__(self, config: PipelineConfig, database: History, specs: Sequence[SourceSpec],
                 control: PipelineControl, results: Latest[FrameResult], pictures: Latest[Frame]) -> None:
        super().__init__()
        self._config = config
        self._database = database
        self._specs = list(specs)
        self.control = control
        self._results = results
        self._pictures = pictures
        self._signals: dict[type, Any] = {  # each engine event's signal (results go through the latest-wins box)
            SourceStatus: self.source_changed, SourceHealth: self.health_reported, TargetSighted: self.target_sighted,
            WatchMatch: self.watch_matched, StorageHealth: self.storage_changed,
            DetectorPreparation: self.preparation_progressed, PipelineInfo: self.info_ready}

    @Slot()
    def run(self) -> None:
        store: HistoryStore | None = None
        try:
            store = open_store(self._database, self._config.storage.commit_interval_s,
                               embeddings_per_track=self._config.storage.embeddings_per_track)
            embedder, warnings = default_embedder(self._config.reid)
            with assembled_pipeline(self._config, store, self.control, embedder, warnings) as pipeline:
                for event in run(self._specs, self._config, store, self.control, stay_open=True, pipeline=pipeline,
                                 on_picture=self._pictures.put):
                    self._emit(event)
        except (ModelError, StoreError) as exc:
            self.errored.emit(str(exc))
        except Exception as exc:  # shown to the operator as a banner, with the details in the log
            log.exception("the processing engine crashed")
            self.crashed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            if store is not None:
                store.close()
            self.control._abandon()
            self.finished.emit()

    def _emit(self, event: object) -> None:
        """One engine event to the window through its signal; results through the latest-wins box."""
        if isinstance(event, FrameResult):
            if self._results.put(event):
                self.frames_ready.emit()
            return
        signal = self._signals.get(type(event))
        if signal is not None:
            signal.emit(event)


@dataclass
class _Start:
    config: PipelineConfig
    database: History
    sources: SourcesProvider


class Engine(QObject):
    """Start/stop the supervised pipeline thread and forward its events. One worker runs at a time."""

    info_ready = Signal(object)
    frame_processed = Signal(object)
    source_changed = Signal(object)
    health_reported = Signal(object)  # SourceHealth of each camera, about once a second
    target_sighted = Signal(object)  # TargetSighted: an alert
    watch_matched = Signal(object)  # WatchMatch: a watch-list alert
    storage_changed = Signal(object)  # StorageHealth: sightings are (not) being saved
    preparation_progressed = Signal(object)  # DetectorPreparation
    errored = Signal(str)
    restarting = Signal(str, float)  # why the worker died, seconds until it is restarted
    stopped = Signal()
    idle = Signal()  # no processing thread is alive any more (after a stop that had to wait)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self.control: PipelineControl | None = None
        self.info: PipelineInfo | None = None
        self.results: Latest[FrameResult] = Latest()
        self.pictures: Latest[Frame] = Latest()  # every decoded picture, the newest per camera, for the display
        self._stragglers: list[tuple[QThread, _Worker | None]] = []  # threads that outlived stop()
        self._pending: _Start | None = None  # a start waiting for a straggler to end
        self._last: _Start | None = None
        self._started_at = 0.0
        self._restart_delay = RESTART_INITIAL_S
        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.timeout.connect(self._restart)
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    @property
    def busy(self) -> bool:
        """A processing thread is alive, current or one that outlived its stop."""
        return self.running or self._straggling

    @property
    def _straggling(self) -> bool:
        return any(t.isRunning() for t, _ in self._stragglers)

    def _keep_until_finished(self, thread: QThread, worker: _Worker | None) -> None:
        """Hold a thread that outlived its stop (and its worker) until it ends: Qt aborts on destroying it running."""
        self._stragglers.append((thread, worker))
        thread.finished.connect(self._forget_stragglers)

    def start(self, config: PipelineConfig, database: History, sources: SourcesProvider) -> None:
        """Run the pipeline on ``sources()`` (read now and at every restart) with results in ``database``."""
        self.stop()
        self._restart_delay = RESTART_INITIAL_S
        self._launch(_Start(config, database, sources))

    def _launch(self, start: _Start) -> None:
        self._last = start
        self.info = None
        self.results.take()
        self.pictures.take()
        if self._straggling:
            # the previous worker still holds the database: begin when it has let go, never beside it;
            # meanwhile there is no control, so the window keeps changes to itself and they are read at the start
            log.warning("waiting for the previous processing thread to end before starting")
            self._pending, self.control = start, None
            return
        self.control = PipelineControl()
        specs, paused = start.sources()
        thread = QThread()
        thread.setObjectName("pipeline")
        worker = _Worker(start.config, start.database, specs, self.control, self.results, self.pictures)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.info_ready.connect(self._on_info_ready)
        worker.frames_ready.connect(self._on_frames_ready)
        worker.source_changed.connect(self.source_changed)
        worker.health_reported.connect(self.health_reported)
        worker.target_sighted.connect(self.target_sighted)
        worker.watch_matched.connect(self.watch_matched)
        worker.storage_changed.connect(self.storage_changed)
        worker.preparation_progressed.connect(self.preparation_progressed)
        worker.errored.connect(self.errored)
        worker.crashed.connect(self._on_crashed)
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)  # QThread.quit is thread-safe
        self._thread, self._worker = thread, worker
        self._started_at = time.monotonic()
        thread.start()
        for name in paused:
            self.control.pause_source(name, True)

    @Slot()
    def _on_frames_ready(self) -> None:
        for result in self.results.take():
            self.frame_processed.emit(result)

    @Slot(str)
    def _on_crashed(self, message: str) -> None:
        if self._last is None or self.sender() is not self._worker:
            return
        if time.monotonic() - self._started_at >= HEALTHY_AFTER_S:
            self._restart_delay = RESTART_INITIAL_S
        delay, self._restart_delay = self._restart_delay, min(self._restart_delay * 2, RESTART_MAX_S)
        log.error("processing stopped unexpectedly (%s); restarting in %.0f s", message, delay)
        self.restarting.emit(message, delay)
        self._restart_timer.start(int(delay * 1000))

    @Slot()
    def _restart(self) -> None:
        if self._last is None:
            return
        self.restarts += 1
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None and not thread.wait(0):  # the crashed worker's thread has normally ended by now
            self._keep_until_finished(thread, worker)
        self._launch(self._last)

    @Slot()
    def _forget_stragglers(self) -> None:
        self._stragglers = [(t, w) for t, w in self._stragglers if t.isRunning()]
        if self._stragglers:
            return
        pending, self._pending = self._pending, None
        if pending is not None:
            self._launch(pending)
        if not self.busy:
            self.idle.emit()

    @Slot(object)
    def _on_info_ready(self, info: PipelineInfo) -> None:
        self.info = info
        self.info_ready.emit(info)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Cancel the run and wait for its thread; True when it ended within ``timeout_s``."""
        self._restart_timer.stop()
        self._last = self._pending = None
        thread, control, worker = self._thread, self.control, self._worker
        self.control = None
        if control is not None:
            control.cancel()
        if thread is None:
            return not self.busy
        thread.quit()  # ends the thread's event loop once the run slot has returned
        started = time.monotonic()
        ended = thread.wait(int(timeout_s * 1000))
        if not ended:  # e.g. still loading a model: keep the objects alive until the thread is done
            log.error("the processing thread did not stop within %.1f s; it ends after its current step", timeout_s)
            self._keep_until_finished(thread, worker)
        else:
            log.info("processing stopped in %.2f s", time.monotonic() - started)
        self._thread = self._worker = None
        self.stopped.emit()
        return ended and not self.busy


class EngineClient:
    """What the window's controllers ask of the engine and the database, in one place.

    Commands go to the running pipeline through its control (they run on the engine thread between
    frames); reads run on Qt's thread pool with their own read-only connection, so neither ever
    blocks the GUI thread. A failure becomes one line through ``report``, never a dialog.
    """

    def __init__(self, engine: Engine, dispatcher: Dispatcher, database: Callable[[], History],
                 report: Callable[[str], Any]) -> None:
        self.engine, self.dispatcher = engine, dispatcher
        self._database = database
        self.report = report  # one line for the operator (the window's banner)

    @property
    def database(self) -> History:
        return self._database()

    def control(self, command: Callable[[PipelineControl], Future[Any]],
                on_result: Callable[[Any], Any] | None = None, what: str = "") -> bool:
        """Send a command to the engine; False (and a line saying so) when processing is not running."""
        control = self.engine.control
        if control is None:
            self.report(f"Cannot {what or 'do that'}: processing is not running")
            return False
        self.dispatcher.when_done(command(control), on_result,
                                  lambda message: self.report(f"Could not {what or 'do that'}: {message}"))
        return True

    def submit(self, fn: Callable[[Pipeline], Any], on_result: Callable[[Any], Any] | None = None,
               what: str = "") -> bool:
        """Run ``fn`` with the pipeline on the engine thread (edits of identities, model swaps)."""
        return self.control(lambda c: c.submit(fn), on_result, what)

    def read(self, fn: Callable[[HistoryReader], Any], on_result: Callable[[Any], Any],
             what: str = "read the database", on_error: Callable[[str], Any] | None = None) -> None:
        """Run a read on the thread pool with its own read-only connection (WAL: never blocks the writer).

        ``on_result`` gets ``None`` when there is no database yet.
        """
        history = self.database

        def job() -> Any:
            if isinstance(history, Path) and not history.exists():
                return None
            with open_store(history, readonly=True) as store:
                return fn(store)

        self.dispatcher.in_background(job, on_result, on_error or (lambda m: self.report(f"Could not {what}: {m}")))

    def in_background(self, fn: Callable[[], Any], on_result: Callable[[Any], Any], what: str) -> None:
        """Other slow work (an export that writes files) on the thread pool."""
        self.dispatcher.in_background(fn, on_result, lambda m: self.report(f"Could not {what}: {m}"))
