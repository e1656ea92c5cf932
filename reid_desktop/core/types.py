"""Immutable data that flows between the pipeline stages (and across threads)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CameraMean:
    """A camera's mean raw embedding (D,) and how many crops it has learned from (at most
    ``camera_norm.MEMORY_CROPS``): what camera-aware normalisation learns and the store keeps."""

    vector: np.ndarray
    count: int


@dataclass(frozen=True)
class PreparedPicture:
    """A whole picture as the detector takes it at input size ``size`` (for an exported detector: letterboxed,
    H x W x 3 uint8), made on the thread that decoded it so the engine thread does not."""

    size: int
    picture: np.ndarray


@dataclass(frozen=True)
class Frame:
    """One decoded picture.

    ``image`` is H x W x 3 uint8 BGR. ``timestamp`` is wall-clock seconds since the epoch when the frame
    was decoded (for files too); ``media_time`` is the file position in seconds (``None`` for live
    sources) so a file can be seeked back to a sighting. ``prepared`` is the detector's input made beside
    decoding, when the reader made one.
    """

    source_id: str
    index: int
    timestamp: float
    image: np.ndarray
    media_time: float | None = None
    prepared: PreparedPicture | None = None

    @property
    def nbytes(self) -> int:
        """The pixels this frame holds, its prepared input included (what a frame queue bounds)."""
        return self.image.nbytes + (self.prepared.picture.nbytes if self.prepared is not None else 0)

    @property
    def moment(self) -> float:
        """When the picture was taken, to compare cameras: the position in the recording for files (files cut
        from one recording line up, however fast they are processed), the wall clock for live sources."""
        return self.media_time if self.media_time is not None else self.timestamp


class SourceState(enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (SourceState.ENDED, SourceState.FAILED)


@dataclass(frozen=True)
class SourceStatus:
    """A change of a source's state; ``reason`` is a one-line, credential-free explanation."""

    source_id: str
    state: SourceState
    reason: str = ""
    timestamp: float = 0.0


@dataclass(frozen=True)
class SourceHealth:
    """How a source is doing, reported about once a second while it runs (the stream health view).

    ``paced``: the source delivers frames at its own pace and only the newest is analysed (a camera, or
    a file read in real time); a file read as fast as analysis goes is never behind. ``dropped``
    counts decoded frames that were never analysed; ``latency_s`` is from capture to the end of
    analysis of the last analysed frame.
    """

    source_id: str
    state: SourceState
    paced: bool
    input_fps: float
    processed_fps: float
    dropped: int
    reconnects: int
    last_error: str
    latency_s: float | None


@dataclass(frozen=True)
class Detections:
    """Person detections of one frame.

    ``boxes``: N x 6 float32 ``[x1, y1, x2, y2, confidence, class]`` in pixels.
    ``keypoints``: N x K x 3 float32 ``[x, y, visibility]`` or ``None`` for plain detectors.
    """

    boxes: np.ndarray
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 6), dtype=np.float32))


@dataclass(frozen=True)
class TrackedPerson:
    """A person in one frame: per-camera track id plus the global identity it was linked to.

    ``box`` is ``[x1, y1, x2, y2]`` float32; ``match_score`` is the cosine similarity that linked
    the track to its identity (1.0 for a newly created identity).
    """

    track_id: int
    box: np.ndarray
    confidence: float
    identity_id: int | None
    match_score: float | None
    keypoints: np.ndarray | None = None
    is_target: bool = False
    tentative: bool = False  # a track seen on one analysed frame so far: drawn, not yet matched or stored


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline learned from one frame of one source."""

    source_id: str
    frame_index: int
    timestamp: float
    image: np.ndarray
    persons: tuple[TrackedPerson, ...] = field(default_factory=tuple)
    media_time: float | None = None


@dataclass(frozen=True)
class TargetSighted:
    """A followed person appeared on a camera (a track whose identity is a target): the operator's alert.

    Raised once per track and identity; the store keeps it with the sighting (``HistoryReader.alerts``).
    """

    identity_id: int
    source_id: str
    track_id: int
    timestamp: float
    media_time: float | None
    score: float | None
    thumbnail: bytes  # JPEG of the person at that moment


@dataclass(frozen=True)
class PipelineInfo:
    """What the pipeline runs on; the first event of every run."""

    detector: str
    detector_device: str
    embedder: str
    embedder_key: str
    provider: str
    embedder_precision: str
    embedder_is_fallback: bool
    match_threshold: float
    warnings: tuple[str, ...]
    run_id: int | None
    embedder_description: str = ""  # what the re-id model is and was trained on (its metadata), for the status bar
    embedder_imagenet_only: bool = False  # a network never trained for re-id: the window offers a re-id model
