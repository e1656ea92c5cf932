"""Per-camera multi-object tracking with Ultralytics' ByteTrack or BoT-SORT.

Each camera gets its own tracker instance so track ids are stable within that camera; linking
tracks across cameras is the matcher's job, not the tracker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from reid_desktop.core.config import TrackerConfig
from reid_desktop.core.detection import prepare_ultralytics
from reid_desktop.core.types import Detections


@dataclass(frozen=True)
class TrackOutput:
    """Tracks alive in a frame. ``boxes``: N x 4 xyxy float32; ``det_index``: the detection each came from."""

    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    det_index: np.ndarray

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])


class Tracker(Protocol):
    def update(self, detections: Detections, image: np.ndarray) -> TrackOutput: ...


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
        tracker_cls = BOTSORT if config.kind == "botsort" else BYTETracker
        self._tracker = tracker_cls(args)

    def update(self, detections: Detections, image: np.ndarray) -> TrackOutput:
        from ultralytics.engine.results import Boxes

        boxes = Boxes(detections.boxes.astype(np.float32), image.shape[:2])
        out = self._tracker.update(boxes, image)
        if out is None or len(out) == 0:
            empty = np.zeros((0,), dtype=np.float32)
            return TrackOutput(empty.astype(np.int64), np.zeros((0, 4), np.float32), empty, empty.astype(np.int64))
        out = np.asarray(out, dtype=np.float32)
        return TrackOutput(
            track_ids=out[:, 4].astype(np.int64),
            boxes=out[:, :4].copy(),
            scores=out[:, 5].copy(),
            det_index=out[:, 7].astype(np.int64),
        )
