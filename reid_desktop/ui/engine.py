"""The processing engine behind the window: the core's :func:`run` generator on a worker thread.

Models, ONNX sessions and the writing database connection are all created inside that thread;
the window only receives immutable results through signals and sends commands through the
:class:`PipelineControl`, so neither decoding nor inference ever runs on the GUI thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.pipeline import PipelineControl, PipelineInfo, run
from reid_desktop.core.sources import SourceSpec
from reid_desktop.core.storage import SightingStore, StoreError
from reid_desktop.core.types import FrameResult, SourceStatus

log = logging.getLogger(__name__)


class _Worker(QObject):
    """Iterates the pipeline; lives on the engine's thread."""

    info_ready = Signal(object)  # PipelineInfo
    frame_processed = Signal(object)  # FrameResult
    source_changed = Signal(object)  # SourceStatus
    errored = Signal(str)
    finished = Signal()

    def __init__(self, config: PipelineConfig, database: Path, specs: Sequence[SourceSpec],
                 control: PipelineControl) -> None:
        super().__init__()
        self._config = config
        self._database = database
        self._specs = list(specs)
        self.control = control

    @Slot()
    def run(self) -> None:
        store: SightingStore | None = None
        try:
            store = SightingStore(self._database, self._config.storage.commit_interval_s)
            for event in run(self._specs, self._config, store, self.control, stay_open=True):
                if isinstance(event, FrameResult):
                    self.frame_processed.emit(event)
                elif isinstance(event, SourceStatus):
                    self.source_changed.emit(event)
                elif isinstance(event, PipelineInfo):
                    self.info_ready.emit(event)
        except (ModelError, StoreError) as exc:
            self.errored.emit(str(exc))
        except Exception as exc:  # shown to the operator as a banner, with the details in the log
            log.exception("the processing engine crashed")
            self.errored.emit(f"processing stopped: {type(exc).__name__}: {exc}")
        finally:
            if store is not None:
                store.close()
            self.control._abandon()
            self.finished.emit()


class Engine(QObject):
    """Start/stop the pipeline thread and forward its events. One engine runs at a time."""

    info_ready = Signal(object)
    frame_processed = Signal(object)
    source_changed = Signal(object)
    errored = Signal(str)
    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self.control: PipelineControl | None = None
        self.info: PipelineInfo | None = None
        self._stragglers: list[tuple[QThread, _Worker | None]] = []  # threads that outlived stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def start(self, config: PipelineConfig, database: Path, specs: Sequence[SourceSpec]) -> None:
        self.stop()
        self.info = None
        self.control = PipelineControl()
        thread = QThread()
        thread.setObjectName("pipeline")
        worker = _Worker(config, database, specs, self.control)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.info_ready.connect(self._on_info_ready)
        worker.frame_processed.connect(self.frame_processed)
        worker.source_changed.connect(self.source_changed)
        worker.errored.connect(self.errored)
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)  # QThread.quit is thread-safe
        self._thread, self._worker = thread, worker
        thread.start()

    @Slot()
    def _forget_stragglers(self) -> None:
        self._stragglers = [(t, w) for t, w in self._stragglers if t.isRunning()]

    @Slot(object)
    def _on_info_ready(self, info: PipelineInfo) -> None:
        self.info = info
        self.info_ready.emit(info)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Cancel the run and wait for its thread; True when it ended within ``timeout_s``."""
        thread, control = self._thread, self.control
        if thread is None:
            return True
        if control is not None:
            control.cancel()
        thread.quit()  # ends the thread's event loop once the run slot has returned
        started = time.monotonic()
        ended = thread.wait(int(timeout_s * 1000))
        if not ended:  # e.g. still loading a model: keep the objects alive until the thread is done
            log.error("the processing thread did not stop within %.1f s; it ends after its current step", timeout_s)
            self._stragglers.append((thread, self._worker))
            thread.finished.connect(self._forget_stragglers)
        else:
            log.info("processing stopped in %.2f s", time.monotonic() - started)
        self._thread = self._worker = None
        self.control = None
        self.stopped.emit()
        return ended
