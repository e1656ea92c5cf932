"""The run loop: sources in, :data:`PipelineEvent`s out, with live control from other threads.

:func:`run` is a plain generator so the headless CLI iterates it directly and the GUI wraps it in a
worker thread. Models are created inside the generator, i.e. in the thread that consumes it. Sources
are read by their own threads; the loop takes the newest frames of all of them, hands them to the
:class:`~reid_desktop.core.engine.pipeline.Pipeline` and yields what comes out, with every change of a
source's state and of whether sightings are being saved.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from reid_desktop.core.capture.sources import SourceSpec, VideoSource
from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.watchlist import WatchMatch
from reid_desktop.core.store.interface import HistoryStore, StorageHealth
from reid_desktop.core.types import Frame, FrameResult, PipelineInfo, SourceHealth, SourceStatus, TargetSighted
from reid_desktop.core.vision.detector_preparation import BackgroundPreparation, DetectorPreparation, start_if_needed

T = TypeVar("T")

PipelineEvent = (PipelineInfo | SourceStatus | SourceHealth | FrameResult | TargetSighted | WatchMatch
                 | StorageHealth | DetectorPreparation)
HEALTH_EVERY_S = 1.0
MAX_PENDING_COMMANDS = 1000  # commands waiting for a stalled pipeline; past this a new one fails at once


class PipelineBusy(RuntimeError):
    """The pipeline has not taken its commands for a while (a long step, a stalled database): one more is refused."""


class PipelineControl:
    """Thread-safe handle on a running :func:`run`.

    Other threads (the GUI) cancel it, add, remove, pause or seek sources, and submit any function
    of the :class:`Pipeline`; commands run in the pipeline's own thread between frames, and
    :meth:`submit` hands back a :class:`~concurrent.futures.Future` with the function's result.
    """

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.wakeup = threading.Event()  # set on every command, frame and status: the run loop sleeps on it
        self._commands: queue.SimpleQueue[tuple[Callable[[_Session], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.ended_as = "cancelled"

    def cancel(self, status: str = "cancelled") -> None:
        """End the run after the frame in progress; ``status``: the run's, as stored ("stopped": the service was
        told to stop)."""
        self.ended_as = status
        self._cancelled.set()
        self.wakeup.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def submit(self, fn: Callable[[Pipeline], T]) -> Future[T]:
        """Run ``fn(pipeline)`` in the pipeline thread; the future fails if the run ends first."""
        return self._post(lambda session: fn(session.pipeline))

    def set_target(self, identity_id: int, is_target: bool = True) -> Future[None]:
        return self.submit(lambda p: p.commands.set_target(identity_id, is_target))

    def target_track(self, source_id: str, track_id: int, is_target: bool = True) -> Future[int | None]:
        return self.submit(lambda p: p.commands.target_track(source_id, track_id, is_target))

    def add_source(self, spec: SourceSpec) -> Future[None]:
        return self._post(lambda session: session.add(spec))

    def remove_source(self, source_id: str) -> Future[None]:
        return self._post(lambda session: session.remove(source_id))

    def pause_source(self, source_id: str, paused: bool = True) -> Future[None]:
        return self._post(lambda session: session.pause(source_id, paused))

    def seek(self, source_id: str, media_time: float) -> Future[None]:
        return self._post(lambda session: session.seek(source_id, media_time))

    def _post(self, command: Callable[[_Session], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                future.cancel()
                return future
            if self._commands.qsize() >= MAX_PENDING_COMMANDS:  # bounded, like every queue of the app
                future.set_exception(PipelineBusy(f"processing is {MAX_PENDING_COMMANDS} commands behind; try "
                                                  "again when it has caught up"))
                return future
            self._commands.put((command, future))
        self.wakeup.set()
        return future

    def _apply(self, session: _Session) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(command(session))
            except Exception as exc:  # the caller gets it through the future; the run goes on
                future.set_exception(exc)

    def _abandon(self) -> None:
        """The run is over: commands still waiting, or sent later, will never run."""
        with self._lock:
            self._closed = True
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            future.cancel()


@dataclass
class _Source:
    """A source of one :func:`run` and what the run loop knows of it; removing the source drops it whole."""

    reader: VideoSource
    rate: float  # most frames analysed a second (0: no limit)
    taken: int = 0
    latency: float | None = None  # capture to the end of analysis, of the last analysed frame
    next_due: float = 0.0  # monotonic time it may be analysed again
    paused: bool = False


class _Session:
    """The sources of one :func:`run` and what the run loop knows about them."""

    def __init__(self, pipeline: Pipeline, config: PipelineConfig, control: PipelineControl,
                 statuses: queue.SimpleQueue[SourceStatus], on_picture: Callable[[Frame], object] | None) -> None:
        self.pipeline = pipeline
        self.on_picture = on_picture
        self.config = config
        self.control = control
        self.statuses = statuses
        self.sources: dict[str, _Source] = {}
        self._retired: list[VideoSource] = []

    def add(self, spec: SourceSpec) -> None:
        if spec.source_id in self.sources:
            raise ValueError(f"there is already a source named {spec.source_id!r}")
        self.pipeline.register_source(spec)
        reader = VideoSource(spec, self.config.sources, self.statuses.put, self.control.wakeup, self.on_picture,
                             self.pipeline.detection.prepare)
        self.sources[spec.source_id] = _Source(reader.start(), spec.analysis_fps if spec.analysis_fps is not None
                                               else self.config.sources.analysis_fps)

    def _source(self, source_id: str) -> _Source:
        try:
            return self.sources[source_id]
        except KeyError:
            raise ValueError(f"no source named {source_id!r}") from None

    def remove(self, source_id: str) -> None:
        reader = self._source(source_id).reader
        del self.sources[source_id]  # cameras come and go for weeks: nothing of a removed one stays
        reader.stop(timeout=0.0)
        self._retired.append(reader)
        self.pipeline.forget_source(source_id)

    def pause(self, source_id: str, paused: bool) -> None:
        self._source(source_id).paused = paused

    def seek(self, source_id: str, media_time: float) -> None:
        self._source(source_id).reader.seek(media_time)
        self.pipeline.forget_source(source_id)  # a jump in time: the tracker must start afresh

    def next_frames(self, max_frames: int | None) -> list[Frame]:
        self._retired = [s for s in self._retired if s.is_alive()]  # a stopped reader freed its frames on exit
        frames = []
        now = time.monotonic()
        for source in self.sources.values():
            if source.paused or (max_frames is not None and source.taken >= max_frames):
                continue
            if now < source.next_due:  # its analysis rate is reached: the newest frame waits
                continue
            frame = source.reader.get()
            if frame is not None:
                frames.append(frame)
                source.taken += 1
                if source.rate > 0:
                    source.next_due = now + 1.0 / source.rate
        return frames

    def wait_s(self) -> float:
        """How long the loop may sleep before a camera's next frame is due (a command or frame wakes it sooner)."""
        now = time.monotonic()
        return min([0.2, *[s.next_due - now for s in self.sources.values() if s.next_due > now]])

    def all_done(self, max_frames: int | None) -> bool:
        return all(s.reader.exhausted or (max_frames is not None and s.taken >= max_frames)
                   for s in self.sources.values())

    def stop_all(self) -> None:
        everything = [*(s.reader for s in self.sources.values()), *self._retired]
        for source in everything:
            source.stop(timeout=0.0)
        deadline = time.monotonic() + 2.0
        for source in everything:
            source.stop(timeout=max(0.0, deadline - time.monotonic()))


class _StreamWatch:
    """Every source's :class:`SourceHealth`, about once a second: rates over the last interval, counts since
    the source was added."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._at = time.monotonic()
        self._counts: dict[str, tuple[int, int]] = {}  # decoded, analysed at the last report

    def due(self) -> Iterator[SourceHealth]:
        now = time.monotonic()
        elapsed = now - self._at
        if elapsed < HEALTH_EVERY_S:
            return
        self._at = now
        counts = {}
        for source_id, source in self._session.sources.items():
            reader = source.reader
            decoded, analysed = reader.frames_decoded, source.taken
            before = self._counts.get(source_id, (decoded, analysed))
            counts[source_id] = (decoded, analysed)
            yield SourceHealth(source_id, reader.state, reader.paced, (decoded - before[0]) / elapsed,
                               (analysed - before[1]) / elapsed, reader.frames_dropped, reader.reconnects,
                               reader.last_error, source.latency)
        self._counts = counts


class _HealthWatch:
    """Turns the store's health into events: on every change between saving and not saving, and while
    not saving at most once a second (the number of waiting sightings changes)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._last = pipeline.storage_health
        self._at = 0.0

    def changes(self) -> Iterator[StorageHealth]:
        now = self._pipeline.storage_health
        if now is None or self._last is None:
            return
        if now.ok != self._last.ok or (not now.ok and time.monotonic() - self._at >= 1.0):
            self._last, self._at = now, time.monotonic()
            yield now


def run(specs: Sequence[SourceSpec], config: PipelineConfig, store: HistoryStore | None = None,
        control: PipelineControl | None = None, max_frames: int | None = None,
        pipeline: Pipeline | None = None, stay_open: bool = False,
        on_picture: Callable[[Frame], object] | None = None) -> Iterator[PipelineEvent]:
    """Process ``specs`` (and sources added through ``control``) until every source has ended or
    failed, or ``control`` cancels; with ``stay_open`` only ``control`` ends it (the GUI).

    ``max_frames`` bounds the frames taken per source. ``on_picture`` gets every decoded frame from
    the readers' threads (for a display at the cameras' own rate; it must not block). Model errors
    raise :class:`ModelError` before the first event; source problems arrive as :class:`SourceStatus`
    events and never stop the others; a change in whether sightings are being saved arrives as a
    :class:`StorageHealth` event. With detector runtime ``auto``, the faster runtimes this machine lacks are
    prepared in the background (:mod:`~reid_desktop.core.vision.detector_preparation`): its progress arrives as
    :class:`DetectorPreparation` events, and a switch to a faster detector as a new :class:`PipelineInfo`.
    """
    control = control or PipelineControl()
    pipeline = pipeline or Pipeline(config, store)
    statuses: queue.SimpleQueue[SourceStatus] = queue.SimpleQueue()
    session = _Session(pipeline, config, control, statuses, on_picture)
    yield pipeline.info
    status = "finished"
    health = _HealthWatch(pipeline)
    streams = _StreamWatch(session)
    preparation: BackgroundPreparation | None = None
    try:
        for spec in specs:
            session.add(spec)
        preparation = start_if_needed(config.detector, pipeline.detection.detector)
        while not control.cancelled:
            control._apply(session)
            control.wakeup.clear()
            while not statuses.empty():
                yield statuses.get()
            yield from health.changes()
            yield from streams.due()
            if preparation is not None:
                yield from _prepared(preparation, pipeline)
            frames = session.next_frames(max_frames)
            if frames:
                try:
                    results = pipeline.process(frames)
                except Exception as exc:  # isolation inside process() missed it: drop these frames, go on
                    pipeline.faults.report("process", f"processing failed on {len(frames)} frames; they are "
                                           f"skipped: {type(exc).__name__}: {exc}", exc)
                    continue
                done = time.time()
                for frame in frames:  # commands run between steps: the frames' sources are all still there
                    session.sources[frame.source_id].latency = done - frame.timestamp
                yield from results
                yield from pipeline.take_alerts()
                continue
            if not stay_open and session.all_done(max_frames):
                break
            control.wakeup.wait(session.wait_s())
        else:
            status = control.ended_as
        control._apply(session)
        session.stop_all()
        while not statuses.empty():  # the last words of sources that just ended
            yield statuses.get()
    except GeneratorExit:
        status = "cancelled"
        raise
    except KeyboardInterrupt:  # Ctrl+C, or a node's SIGTERM: the operator stopped it, nothing broke
        status = "stopped"
        raise
    except BaseException:
        status = "crashed"
        raise
    finally:
        if preparation is not None:
            preparation.stop()
        control._abandon()
        session.stop_all()
        pipeline.close(status)


def _prepared(preparation: BackgroundPreparation, pipeline: Pipeline) -> Iterator[PipelineEvent]:
    """The background preparation's progress, and the switch to a faster detector between two frames."""
    yield from preparation.progress()
    faster = preparation.faster_detector()
    if faster is not None:
        yield pipeline.set_detector(faster)
