"""Video sources: files, RTSP/HTTP streams and webcams, each decoded on its own reader thread.

Files processed offline are read at their own pace through a bounded queue, so no frame is
dropped; live streams (and files in real-time mode) keep only the newest frame, so a slow
consumer always sees the present. Lost streams reconnect with exponential back-off (a stream that
drops right after connecting counts as a failed attempt, so it never reconnects in a tight loop)
and every state change is reported as a :class:`SourceStatus`. Memory is bounded per source: the
queue in frames and bytes, and frames larger than ``max_frame_pixels`` are scaled down as soon as
they are decoded. URLs are only ever shown through :func:`~reid_desktop.core.redaction.redact`.
"""

from __future__ import annotations

import collections
import enum
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_desktop.core.config import SourceOptions
from reid_desktop.core.paths import demo_clip
from reid_desktop.core.redaction import is_url, redact, redact_text, stream_host
from reid_desktop.core.types import Frame, PreparedPicture, SourceState, SourceStatus

log = logging.getLogger(__name__)

# FFmpeg prints stream URLs (with credentials) in its own messages; keep it quiet and prefer TCP
# for RTSP, which survives NAT and packet loss far better than UDP. FFmpeg studies a new stream for up to
# 5 s before it opens it (2.8 s for an H.264 camera here); 1 s finds the picture size of any camera that
# sends its parameter sets at least once a second, and a camera comes back that much sooner after each
# drop. A user's own values win (OPENCV_FFMPEG_CAPTURE_OPTIONS="rtsp_transport;tcp" restores FFmpeg's).
FFMPEG_ENVIRONMENT = {"OPENCV_FFMPEG_LOGLEVEL": "-8",
                      "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp|analyzeduration;1000000",
                      "OPENCV_LOG_LEVEL": "ERROR"}


def open_capture(uri: str | int, *args: Any) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` with FFmpeg quiet, RTSP over TCP and a short look at a new stream.

    OpenCV reads these variables when a capture opens, so they are set here, on first use, rather than
    when this module is imported (importing a library must not change the process's environment).
    """
    for name, value in FFMPEG_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return cv2.VideoCapture(uri, *args)



def frame_count(path: str) -> int:
    """Frames a video file declares (0 when unknown): a progress bar's total."""
    cap = open_capture(path)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def read_frames(path: str, limit: int | None = None) -> list[np.ndarray]:
    """All the frames of a short video file (or its first ``limit``), decoded at once: checks and tests."""
    cap = open_capture(path)
    frames: list[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


class SourceKind(enum.Enum):
    FILE = "file"
    STREAM = "stream"
    WEBCAM = "webcam"


@dataclass(frozen=True)
class SourceSpec:
    """What to open. ``uri`` is a file path, a stream URL or a webcam index such as ``"0"``.

    Kind, name and display form are worked out once (the reader asks for the name on every frame).
    """

    uri: str
    name: str = ""
    region: tuple[float, float, float, float] | None = None  # the part shown: left, top, right, bottom (0..1)
    loop: bool = False  # a file starts again when it ends (besides ``sources.loop`` for all)
    realtime: bool = False  # a file plays at its own pace, newest frame analysed (besides ``sources.realtime``)
    analysis_fps: float | None = None  # most frames analysed a second for this camera (None: sources.analysis_fps)

    def __post_init__(self) -> None:
        if self.analysis_fps is not None and not 0.0 <= self.analysis_fps <= 1000.0:
            raise ValueError(f"analysis rate {self.analysis_fps} of {self.name or self.uri}: expected 0 (as fast as "
                             "possible) to 1000 frames a second")
        if self.region is not None:
            left, top, right, bottom = self.region
            if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
                raise ValueError(f"region {self.region} of {self.name or self.uri}: expected left < right and "
                                 "top < bottom, as fractions of the picture between 0 and 1")

    @functools.cached_property
    def kind(self) -> SourceKind:
        """Any ``scheme://`` is a stream (FFmpeg knows more schemes than we could list); digits a webcam."""
        if self.uri.strip().isdigit():
            return SourceKind.WEBCAM
        return SourceKind.STREAM if is_url(self.uri) else SourceKind.FILE

    @functools.cached_property
    def source_id(self) -> str:
        """The camera's name: the one given, else ``webcamN``, the file's stem or the stream's host (never its URL)."""
        if self.name:
            return self.name
        if self.kind is SourceKind.WEBCAM:
            return f"webcam{self.uri.strip()}"
        if self.kind is SourceKind.FILE:
            return Path(self.uri).stem or self.uri
        return stream_host(self.uri) or "stream"

    @functools.cached_property
    def display_uri(self) -> str:
        return redact(self.uri)


class _FrameBuffer:
    """Bounded hand-over between the reader thread and the pipeline.

    ``latest_only`` keeps just the newest frame (live streams); otherwise ``put`` blocks while full
    (``capacity`` frames or ``max_bytes`` of pixels, whichever comes first) so that offline processing
    never loses a frame.
    """

    KEEPING_UP_AFTER = 25  # frames handed over in a row with none dropped: analysis takes every frame

    def __init__(self, capacity: int, latest_only: bool, wakeup: threading.Event, max_bytes: int) -> None:
        self._items: collections.deque[Frame] = collections.deque()
        self._capacity = 1 if latest_only else capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._latest_only = latest_only
        self._cond = threading.Condition()
        self._wakeup = wakeup
        self.dropped = 0
        self._puts_since_drop = 0

    def _full(self, incoming: int) -> bool:
        return len(self._items) >= self._capacity or (bool(self._items) and self._bytes + incoming > self._max_bytes)

    def put(self, frame: Frame, stopped: threading.Event, stale: Callable[[], bool] = lambda: False) -> bool:
        """Hand a frame over; a frame that became ``stale`` meanwhile (a seek arrived) is dropped silently."""
        with self._cond:
            while self._full(frame.nbytes):
                if self._latest_only:
                    self._bytes -= self._items.popleft().nbytes
                    self.dropped += 1
                    self._puts_since_drop = -1
                elif stopped.is_set():
                    return False
                else:
                    self._cond.wait(0.05)
            if stale():
                return True
            self._items.append(frame)
            self._bytes += frame.nbytes
            self._puts_since_drop += 1
        self._wakeup.set()
        return True

    def every_frame_taken(self) -> bool:
        """Whether the consumer takes every frame: always for a blocking queue; for a live one, when nothing was
        dropped lately. Work done ahead for a frame is lost with a dropped one."""
        return not self._latest_only or self._puts_since_drop >= self.KEEPING_UP_AFTER

    def get(self) -> Frame | None:
        with self._cond:
            frame = self._items.popleft() if self._items else None
            if frame is not None:
                self._bytes -= frame.nbytes
            self._cond.notify_all()
            return frame

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._cond:
            return self._bytes

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()


class VideoSource:
    """Decodes one source on a daemon thread and reports its state.

    ``on_status`` is called from the reader thread; ``wakeup`` is set whenever a frame or a status
    arrives, so a consumer of many sources can sleep until something happens. ``on_picture`` gets
    every decoded frame, also those analysis never takes (a display shows the camera's own rate);
    it is called from the reader thread and must not block. ``prepare`` makes the detector's input of a
    picture beside decoding (``None``: nothing to make), for the frames analysis will take.
    """

    def __init__(
        self,
        spec: SourceSpec,
        options: SourceOptions | None = None,
        on_status: Callable[[SourceStatus], None] | None = None,
        wakeup: threading.Event | None = None,
        on_picture: Callable[[Frame], object] | None = None,
        prepare: Callable[[np.ndarray], PreparedPicture | None] | None = None,
    ) -> None:
        self.spec = spec
        self.options = options or SourceOptions()
        self._on_status = on_status
        self._on_picture = on_picture
        self._prepare = prepare
        self.wakeup = wakeup or threading.Event()
        self.paced = spec.kind is not SourceKind.FILE or self.options.realtime or spec.realtime
        self._buffer = _FrameBuffer(self.options.queue_size, self.paced, self.wakeup,
                                    self.options.queue_max_mb * 1024 * 1024)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._state = SourceState.CONNECTING
        self._reason = ""
        self._status_lock = threading.Lock()
        self.frame_count: int | None = None  # frames in a file, when the container says
        self.fps: float | None = None
        self.frames_decoded = 0
        self._seek_lock = threading.Lock()
        self._pending_seek: float | None = None
        self._reader_done = False  # a file reader that returned; a seek starts a new one
        self._live_for = 0.0  # how long the last connection delivered frames
        self._scaled_note = False
        self.reconnects = 0  # times a stream or webcam was lost and tried again
        self.last_error = ""  # the reason of the last failure or loss, kept after it came back

    @property
    def _thread_name(self) -> str:
        return f"source:{redact(self.source_id)}"

    @functools.cached_property
    def source_id(self) -> str:
        return self.spec.source_id

    @property
    def state(self) -> SourceState:
        with self._status_lock:
            return self._state

    @property
    def reason(self) -> str:
        with self._status_lock:
            return self._reason

    @property
    def frames_dropped(self) -> int:
        return self._buffer.dropped

    @property
    def buffered(self) -> int:
        """Decoded frames waiting to be taken."""
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._buffer.nbytes

    @property
    def exhausted(self) -> bool:
        """Finished for good and every decoded frame has been taken."""
        return self.state.is_final and len(self._buffer) == 0

    def start(self) -> VideoSource:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def get(self) -> Frame | None:
        """The next frame if one is ready; never blocks."""
        return self._buffer.get()

    def seek(self, media_time: float) -> None:
        """Continue a file from ``media_time`` seconds, even after it ended (e.g. to replay a sighting)."""
        if self.spec.kind is not SourceKind.FILE:
            raise ValueError(f"{self.source_id} is a live source; only files can be seeked")
        with self._seek_lock:
            self._pending_seek = max(0.0, float(media_time))
            restart = self._reader_done and not self._stopped.is_set()
            self._reader_done = False
        self._buffer.clear()
        if restart:
            self._thread.join(1.0)
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def _seek_pending(self) -> bool:
        with self._seek_lock:
            return self._pending_seek is not None

    def _take_seek(self) -> float | None:
        with self._seek_lock:
            target, self._pending_seek = self._pending_seek, None
            return target

    def _file_reader_may_end(self) -> bool:
        """False when a seek arrived meanwhile; otherwise the reader is marked done (atomically)."""
        with self._seek_lock:
            if self._pending_seek is not None:
                return False
            self._reader_done = True
            return True

    # -- reader thread -------------------------------------------------------------------------

    def _set_state(self, state: SourceState, reason: str = "") -> None:
        with self._status_lock:
            if state is self._state and reason == self._reason:
                return
            if state is SourceState.RECONNECTING and self._state is not SourceState.RECONNECTING:
                self.reconnects += 1  # a loss; the failed attempts that follow it are not counted again
            self._state, self._reason = state, reason
            if state in (SourceState.FAILED, SourceState.RECONNECTING) and reason:
                self.last_error = reason
        status = SourceStatus(self.source_id, state, reason, time.time())
        if state in (SourceState.FAILED, SourceState.RECONNECTING):
            log.warning("source %s: %s%s", self.source_id, state.value, f" ({reason})" if reason else "")
        else:
            log.info("source %s: %s", self.source_id, state.value)
        if self._on_status is not None:
            self._on_status(status)
        self.wakeup.set()

    def _open(self) -> tuple[cv2.VideoCapture | None, str]:
        kind = self.spec.kind
        if kind is SourceKind.FILE:
            path = Path(self.spec.uri)
            if not path.exists():
                return None, f"file not found: {path}"
            if not path.is_file():
                return None, f"not a file: {path}"
            cap = open_capture(str(path))
            if not cap.isOpened():
                return None, f"cannot open {path.name}: not a video OpenCV can decode (unsupported or corrupt)"
        elif kind is SourceKind.WEBCAM:
            cap = open_capture(int(self.spec.uri))
            if not cap.isOpened():
                return None, f"webcam {self.spec.uri} is not available"
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout_s * 1000)]
            cap = open_capture(self.spec.uri, cv2.CAP_FFMPEG, params)
            if not cap.isOpened():
                return None, f"cannot connect to {self.spec.display_uri} (refused, unreachable or timed out)"
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if kind is SourceKind.FILE and count > 0:
            self.frame_count = count
        self.fps = fps if 0.0 < fps < 1000.0 else None
        return cap, ""

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when the source was stopped meanwhile."""
        return self._stopped.wait(seconds)

    def _run(self) -> None:
        opts = self.options
        attempts = 0
        delay = opts.reconnect_initial_delay_s
        was_live = False

        def failed_attempt(reason: str) -> bool:
            """Count a failed attempt and wait the back-off; False when it is time to give up or stop."""
            nonlocal attempts, delay
            attempts += 1
            if opts.reconnect_max_attempts and attempts >= opts.reconnect_max_attempts:
                self._set_state(SourceState.FAILED, f"{reason}; gave up after {attempts} attempts")
                return False
            state = SourceState.RECONNECTING if was_live else SourceState.CONNECTING
            self._set_state(state, f"{reason}; retrying in {delay:.1f} s")
            if self._wait(delay):
                return False
            delay = min(max(delay * 2, 0.1), opts.reconnect_max_delay_s)
            return True

        try:
            while not self._stopped.is_set():
                cap, error = self._open()
                if cap is None:
                    if self.spec.kind is SourceKind.FILE:
                        self._set_state(SourceState.FAILED, error)
                        return
                    if not failed_attempt(error):
                        return
                    continue
                try:
                    outcome, reason = self._pump(cap)
                finally:
                    cap.release()
                if outcome == "stopped":
                    return
                if outcome == "broken":
                    self._set_state(SourceState.FAILED, reason)
                    return
                if self.spec.kind is SourceKind.FILE:
                    if outcome == "ended" and (opts.loop or self.spec.loop) and self.frames_decoded > 0:
                        continue
                    self._set_state(SourceState.ENDED, reason)
                    if self._file_reader_may_end():
                        return
                    continue
                if outcome == "lost":
                    was_live = True
                    if self._live_for >= opts.stable_after_s:
                        # a stream that was live for a while went away: start over from the first back-off step
                        attempts, delay = 0, opts.reconnect_initial_delay_s
                        self._set_state(SourceState.RECONNECTING, reason)
                        continue
                    # it dropped right after connecting: a failed attempt, or it would reconnect in a tight loop
                    if not failed_attempt(f"{reason} {self._live_for:.1f} s after connecting"):
                        return
                    continue
                # it opened but never sent a frame: a failed attempt like any other
                if not failed_attempt(reason):
                    return
        except Exception as exc:  # a reader must never die silently
            log.exception("source %s crashed", redact(self.source_id))
            self._set_state(SourceState.FAILED, f"reader error: {redact_text(str(exc))}")
        finally:
            if self._stopped.is_set():  # removed or shut down: nobody will take these frames
                self._buffer.clear()

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """The spec's region of a frame, scaled down to ``max_frame_pixels`` (aspect kept): a 16k x 16k camera
        must not cost GBs."""
        if self.spec.region is not None:
            height, width = image.shape[:2]
            left, top, right, bottom = self.spec.region
            image = image[round(top * height):round(bottom * height), round(left * width):round(right * width)]
        height, width = image.shape[:2]
        limit = self.options.max_frame_pixels
        if height * width <= limit:
            return image
        scale = (limit / (height * width)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if not self._scaled_note:
            self._scaled_note = True
            log.warning("source %s: %dx%d frames are scaled to %dx%d (sources.max_frame_pixels)",
                        redact(self.source_id), width, height, *size)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _pump(self, cap: cv2.VideoCapture) -> tuple[str, str]:
        """Read until the source ends or is stopped: ('ended'|'lost'|'silent'|'broken'|'stopped', reason)."""
        is_file = self.spec.kind is SourceKind.FILE
        pace = is_file and self.paced
        started = time.monotonic()
        first_media: float | None = None
        bad_in_row = 0
        read_in_session = 0
        live_since = 0.0
        self._live_for = 0.0
        # where counting frames starts, for containers that report no position: the file's start or a seek target
        count_from, read_since = 0.0, 0
        while not self._stopped.is_set():
            seek_to = self._take_seek() if is_file else None
            if seek_to is not None:
                cap.set(cv2.CAP_PROP_POS_MSEC, seek_to * 1000.0)
                self._buffer.clear()
                started, first_media = time.monotonic(), None
                count_from, read_since = seek_to, 0
            ok, image = cap.read()
            if not ok or image is None or image.size == 0:
                if not is_file:
                    if read_in_session:
                        self._live_for = time.monotonic() - live_since
                        return "lost", "stream stopped sending frames"
                    return "silent", "stream opened but sent no frames"
                position = int(cap.get(cv2.CAP_PROP_POS_FRAMES) or 0)
                expected = self.frame_count or 0
                if read_in_session == 0 and self.frames_decoded == 0:
                    return "broken", f"{Path(self.spec.uri).name}: no decodable frames (empty or corrupt video)"
                if expected and position < expected - 1 and bad_in_row < self.options.max_corrupt_frames:
                    bad_in_row += 1
                    cap.grab()  # skip the undecodable frame and try the next one
                    continue
                if expected and position < expected - 1:
                    return "ended", f"stopped at frame {position} of {expected}: the rest is unreadable"
                return "ended", "end of file"
            bad_in_row = 0
            read_in_session += 1
            read_since += 1
            if read_in_session == 1:
                live_since = time.monotonic()
                self._set_state(SourceState.LIVE)
            image = self._fit(image)
            media_time: float | None = None
            if is_file:
                media_time = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                if media_time <= 0.0 and self.fps:
                    media_time = count_from + (read_since - 1) / self.fps
                if pace:
                    first_media = media_time if first_media is None else first_media
                    ahead = (media_time - first_media) - (time.monotonic() - started)
                    if ahead > 0 and self._wait(ahead):
                        return "stopped", ""
            image = np.ascontiguousarray(image)
            prepared = self._prepare(image) if self._prepare is not None and self._buffer.every_frame_taken() else None
            frame = Frame(self.source_id, self.frames_decoded, time.time(), image, media_time, prepared)
            self.frames_decoded += 1
            if self._on_picture is not None:
                self._on_picture(frame)
            if not self._buffer.put(frame, self._stopped, self._seek_pending):
                return "stopped", ""
        return "stopped", ""


DEMO_LINKS = "demo-left = demo-right"  # the two halves share a strip of ground in the middle


def demo_sources() -> list[SourceSpec]:
    """The demo: two cameras cut from the bundled clip (its left and right halves, overlapping in the middle),
    looping, so people walk from one camera into the other and keep their number."""
    clip = str(demo_clip())
    return [SourceSpec(clip, "demo-left", (0.0, 0.0, 0.55, 1.0), loop=True, realtime=True),
            SourceSpec(clip, "demo-right", (0.45, 0.0, 1.0, 1.0), loop=True, realtime=True)]
