"""The detect stage: one detector call for all the cameras' frames of a step.

Whole pictures go in as their readers prepared them where they could (that per-camera work then grows with the
cores, as decoding does); where the motion gate found a changed region, only its crop is looked at, at its own
size, and merged with the camera's previous detections outside it. The detector can be swapped between frames for
another runtime of the same model (one prepared in the background).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.engine.camera_state import CameraState
from reid_desktop.core.types import Detections, Frame, PreparedPicture
from reid_desktop.core.vision.detection import Detector, PreparingDetector, SizedDetector
from reid_desktop.core.vision.motion import Region, merge_region, region_size

log = logging.getLogger(__name__)


class DetectStage:
    def __init__(self, detector: Detector, config: DetectorConfig) -> None:
        self.detector, self.config = detector, config

    @property
    def name(self) -> str:
        return str(getattr(self.detector, "name", type(self.detector).__name__))

    @property
    def device(self) -> str:
        return str(getattr(self.detector, "device", ""))

    def prepare(self, image: np.ndarray) -> PreparedPicture | None:
        """The detector's input of a whole picture, made by the reader thread that decoded it (``None``: the
        detector takes no prepared input, or the motion gate may ask for a region instead). Called from reader
        threads."""
        detector = self.detector
        if self.config.motion_share > 0 or not isinstance(detector, PreparingDetector):
            return None
        try:
            return detector.prepare(image)
        except Exception:  # the engine thread prepares this picture again, and reports what fails there
            log.debug("a picture could not be prepared on its reader thread", exc_info=True)
            return None

    def detect(self, work: Sequence[tuple[Frame, Region | None, CameraState]]) -> list[Detections]:
        """Each frame's detections: of the whole picture, or of its changed region and the camera's last ones
        outside it."""
        detector = self.detector
        if not any(region for _, region, _ in work) or not isinstance(detector, SizedDetector):
            images = [frame.image for frame, _, _ in work]
            if isinstance(detector, PreparingDetector):
                return detector.detect_prepared(images, [frame.prepared for frame, _, _ in work])
            return detector.detect(images)
        pictures, sizes = [], []
        for frame, region, _ in work:
            if region is None:
                pictures.append(frame.image)
                sizes.append(self.config.imgsz)
            else:
                pictures.append(frame.image[region[1]:region[3], region[0]:region[2]])
                sizes.append(region_size(region, frame.image.shape, self.config.imgsz))
        found = detector.detect_sized(pictures, sizes)
        return [dets if region is None else merge_region(camera.last_detections, dets, region)
                for (_, region, camera), dets in zip(work, found, strict=True)]
