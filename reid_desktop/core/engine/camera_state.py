"""What the pipeline keeps of one camera between its frames, in one record.

Forgetting the camera (removed, restarted, seeked, or a stage failed on it) drops the record whole, so no stage
keeps a piece of a camera that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.types import Detections, TrackedPerson
from reid_desktop.core.vision.motion import MotionGate, MotionSettings
from reid_desktop.core.vision.tracking import Tracker


@dataclass
class CameraState:
    gate: MotionGate
    tracker: Tracker | None = None  # made on the camera's first analysed frame
    last_persons: tuple[TrackedPerson, ...] = ()  # shown on frames the motion gate skips
    last_detections: Detections | None = None  # kept outside a changed region
    media_time: float | None = None  # a file's last position: going back is a restart or a seek

    @classmethod
    def new(cls, config: DetectorConfig) -> CameraState:
        return cls(MotionGate(MotionSettings(config.motion_share, config.motion_keepalive_s)))
