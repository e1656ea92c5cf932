"""Per-camera multi-object tracking with Ultralytics' ByteTrack or BoT-SORT.

Each camera gets its own tracker instance so track ids are stable within that camera; linking
tracks across cameras is the matcher's job, not the tracker's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reid_desktop.core.config import TrackerConfig
from reid_desktop.core.types import Detections
from reid_desktop.core.vision.detection import prepare_ultralytics
from reid_desktop.core.vision.embedding import ColorTextureEmbedder

MAX_BUFFER = 1.0  # boxes three times their size at most: wider, and neighbours' boxes take each other's people
CLOSE_FRAMES_S = 0.1  # frames this close (10 analysed a second or more) match well without a buffer, better
LOOK_REFRESH = 5  # a tracked person's look is described again every this many of their frames
LOOK_MEMORY = 0.7  # weight of the look so far against a new description of it
CROWDED = 0.3  # a box overlapping another track's this much (IoU) shows two people: its look is not taken
EDGE = 0.01  # a box this close to the picture's side (share of its width) touches it: people leave and come in there


@dataclass(frozen=True)
class TrackOutput:
    """Tracks alive in a frame. ``boxes``: N x 4 xyxy float32; ``det_index``: the detection each came from.

    ``tentative``: tracks opened on this frame's detections and not yet confirmed by a second frame (ids, boxes,
    scores, det_index in the same layout). They are drawn, so a person has a box from the first analysed frame, but
    nothing is matched or stored for them until they are confirmed (most false detections never are).
    """

    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    det_index: np.ndarray
    tentative: TrackOutput | None = None

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    @staticmethod
    def empty() -> TrackOutput:
        none = np.zeros((0,), dtype=np.float32)
        return TrackOutput(none.astype(np.int64), np.zeros((0, 4), np.float32), none, none.astype(np.int64))


class Tracker(Protocol):
    def update(self, detections: Detections, image: np.ndarray, moment: float | None = None) -> TrackOutput: ...


class UltralyticsTracker:
    """Adapter from our :class:`Detections` to ``ultralytics.trackers`` (BYTETracker / BOTSORT)."""

    def __init__(self, config: TrackerConfig) -> None:
        prepare_ultralytics()
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        args = IterableSimpleNamespace(
            tracker_type=config.kind,
            track_high_thresh=config.high_threshold,
            track_low_thresh=config.low_threshold,
            new_track_thresh=config.new_track_threshold,
            track_buffer=config.track_buffer,
            match_thresh=config.match_threshold,
            fuse_score=True,
            # BoT-SORT only: camera-motion compensation off (fixed cameras), appearance from our re-id stage.
            gmc_method="none",
            proximity_thresh=0.5,
            appearance_thresh=0.25,
            with_reid=False,
            model="auto",
            device="cpu",
        )
        self._tracker = _associating(BOTSORT if config.kind == "botsort" else BYTETracker)(args)
        self._tracker.relink_similarity = config.relink_similarity
        self._buffer_per_s = config.buffer_per_s
        self._last: float | None = None  # the moment of the last update

    def update(self, detections: Detections, image: np.ndarray, moment: float | None = None) -> TrackOutput:
        """Track this frame's detections; ``moment`` (seconds) lets the matching space grow with the time since the
        camera's last analysed frame: people walk further between frames analysed 3 times a second than 30."""
        from ultralytics.engine.results import Boxes

        self._tracker.buffer = self._buffer(moment)
        out = self._tracker.update(Boxes(detections.boxes.astype(np.float32), image.shape[:2]), image)
        pending = [t.result for t in self._tracker.tracked_stracks
                   if not t.is_activated and t.frame_id == self._tracker.frame_id]
        confirmed = _output(np.asarray(out, np.float32), detections) if out is not None and len(out) else None
        result = confirmed or TrackOutput.empty()
        tentative = _output(np.asarray(pending, np.float32), detections) if pending else None
        return TrackOutput(result.track_ids, result.boxes, result.scores, result.det_index, tentative)

    def _buffer(self, moment: float | None) -> float:
        """The matching buffer of C-BIoU (Yang et al., WACV 2023): boxes widened on every side by this share of
        their size before association, growing with the time since the last update beyond :data:`CLOSE_FRAMES_S`
        (below it a buffer only mixes up neighbours), capped."""
        elapsed = moment - self._last if moment is not None and self._last is not None else 0.0
        if moment is not None:
            self._last = moment
        return float(np.clip(self._buffer_per_s * (elapsed - CLOSE_FRAMES_S), 0.0, MAX_BUFFER))


@functools.cache  # one class per tracker kind, not one per camera and restart
def _associating(tracker_cls: type) -> type:
    """``tracker_cls`` whose association compares tracks and detections widened by the same buffer (C-BIoU), and
    continues a lost track, or one at the picture's side, only with a detection that looks like it. Only the
    comparison is widened: the motion filter keeps true boxes, so the buffer may change from one frame to the next
    (a first frame, a camera analysed faster or slower) without every track's size jumping out of reach."""
    from ultralytics.trackers.basetrack import TrackState
    from ultralytics.trackers.utils import matching
    from ultralytics.utils.metrics import bbox_ioa

    describer = ColorTextureEmbedder()

    class Associating(tracker_cls):
        buffer = 0.0  # share of a box's size added on every side, set before each update
        relink_similarity = 0.0  # 0: a lost track is taken up again on motion alone
        image = np.zeros((0, 0, 3), np.uint8)  # the frame being tracked

        def update(self, results: Any, img: np.ndarray, **kwargs: Any) -> np.ndarray:
            self.image = img
            out = super().update(results, img, **kwargs)
            if self.relink_similarity > 0:
                self._remember_looks()
            return out

        def get_dists(self, tracks: list, detections: list) -> np.ndarray:
            if self.buffer <= 0:
                dists = super().get_dists(tracks, detections)
            else:
                factor = 1 + 2 * self.buffer
                widened = [list(_scaled(np.array([t.xyxy for t in group], np.float32).reshape(-1, 4), factor))
                           for group in (tracks, detections)]
                dists = matching.iou_distance(*widened)
                dists = matching.fuse_score(dists, detections) if self.args.fuse_score else dists
            if self.relink_similarity > 0:
                self._refuse_unlike(dists, tracks, detections)
            return dists

        def _refuse_unlike(self, dists: np.ndarray, tracks: list, detections: list) -> None:
            """A lost track, or one touching the picture's side, is taken up only by a detection that looks like it.
            Otherwise whoever appears where a person was last seen takes their track: someone coming in at the side
            where another is leaving (on the same frame, or a moment later), or walking out from behind the sign
            someone else went behind. Elsewhere motion decides alone: a look taken from a moving, turning person is
            too unsteady to refuse a track its next box."""
            for i, track in enumerate(tracks):
                look = getattr(track, "look", None)
                if look is None or not (track.state == TrackState.Lost or self._at_side(track.xyxy)):
                    continue
                for j in np.flatnonzero(dists[i] < 1):
                    if float(look @ self._look(detections[j])) < self.relink_similarity:
                        dists[i, j] = 1.0

        def _look(self, detection: Any) -> np.ndarray:
            if getattr(detection, "look", None) is None:  # a detection is described once, however often compared
                detection.look = _describe(self.image, detection.xyxy)
            return detection.look

        def _at_side(self, box: np.ndarray) -> bool:
            width = self.image.shape[1]
            return bool(box[0] <= EDGE * width or box[2] >= (1 - EDGE) * width)

        def _remember_looks(self) -> None:
            """Describe the people tracked on this frame now and then: whole, so not while another track's box
            covers theirs or the picture's side cuts them (a look half out of the picture would refuse the same
            person coming wholly in)."""
            seen = [t for t in self.tracked_stracks if t.frame_id == self.frame_id and not self._at_side(t.xyxy)]
            boxes = np.array([t.xyxy for t in seen], np.float32).reshape(-1, 4)
            overlap = bbox_ioa(boxes, boxes, iou=True) if len(seen) > 1 else np.zeros((len(seen),) * 2)
            np.fill_diagonal(overlap, 0)
            for track, crowded in zip(seen, overlap.max(axis=1, initial=0) > CROWDED, strict=True):
                previous = getattr(track, "look", None)
                if crowded or (previous is not None and track.tracklet_len % LOOK_REFRESH):
                    continue
                look = _describe(self.image, track.xyxy)
                if previous is not None:
                    look = LOOK_MEMORY * previous + (1 - LOOK_MEMORY) * look
                track.look = look / (float(np.linalg.norm(look)) or 1.0)

    def _describe(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        x1, y1, x2, y2 = (int(v) for v in np.round(box[:4]))
        x1, y1 = min(max(x1, 0), width - 2), min(max(y1, 0), height - 2)
        crop = image[y1:max(min(y2, height), y1 + 2), x1:max(min(x2, width), x1 + 2)]
        return describer.embed([crop])[0]

    Associating.__name__ = f"Associating{tracker_cls.__name__}"
    return Associating


def _output(out: np.ndarray, detections: Detections) -> TrackOutput:
    """Ultralytics' rows (box, id, score, class, detection index) as a :class:`TrackOutput`. The box drawn and
    cropped is the detection's, where the person is on this frame, not the motion filter's smoothed estimate
    (which lags a person who moved far between two analysed frames)."""
    index = out[:, 7].astype(np.int64)
    return TrackOutput(track_ids=out[:, 4].astype(np.int64), boxes=detections.boxes[index, :4].astype(np.float32),
                       scores=out[:, 5].copy(), det_index=index)


def _scaled(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Boxes grown (or shrunk) about their centres by ``factor``."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
