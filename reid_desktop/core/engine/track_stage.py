"""The track stage: each camera's own tracker, made on its first analysed frame.

A tracker that fails is reported (once in a while per camera, by the fault log) and gives no tracks for that
frame; the pipeline then forgets the camera, so its next tracker starts a new segment of stored tracks.
"""

from __future__ import annotations

from collections.abc import Callable

from reid_desktop.core.engine.camera_state import CameraState
from reid_desktop.core.faults import FaultLog
from reid_desktop.core.types import Detections, Frame
from reid_desktop.core.vision.tracking import Tracker, TrackOutput


class TrackStage:
    def __init__(self, new_tracker: Callable[[], Tracker], faults: FaultLog) -> None:
        self.new_tracker, self.faults = new_tracker, faults

    def step(self, frame: Frame, detections: Detections, camera: CameraState) -> TrackOutput | None:
        """The camera's tracks after this frame; None when its tracker failed."""
        try:
            if camera.tracker is None:
                camera.tracker = self.new_tracker()
            return camera.tracker.update(detections, frame.image, frame.moment)
        except Exception as exc:
            self.faults.report(f"track:{frame.source_id}", f"source {frame.source_id}: tracker failed; it restarts: "
                               f"{type(exc).__name__}: {exc}", exc)
            return None
