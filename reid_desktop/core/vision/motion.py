"""A cheap motion check per camera, so that a still scene costs almost no detector time.

Each frame is shrunk to a small grey picture and compared with the last frame that was *analysed* (not
the previous frame: a slow change adds up until it counts). Detection is skipped while too few pixels
changed; the frame then shows the people of the last analysed one, who by definition have not moved.
When the change is confined to a small region, only that region is detected, cropped from the full
picture so small people stay as large as in a whole-frame detection; people elsewhere keep their last
boxes. People standing still are not lost: while a camera has people, its whole picture is analysed at
least every ``keepalive_s`` seconds anyway (as Frigate keeps stationary objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from reid_desktop.core.types import Detections

GATE_WIDTH = 160  # pixels: enough to see a walking person, cheap to compare (about 0.1 ms a frame)
MAX_REGION_SHARE = 0.25  # a changed region larger than this share of the picture: the whole picture is detected
REGION_MARGIN = 0.5  # a region grows by this share of its size on every side (a moving leg, a whole person)

Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in the full picture's pixels


@dataclass(frozen=True)
class MotionSettings:
    share: float  # fraction of the small picture's pixels that must change; 0 turns the gate off
    keepalive_s: float
    pixel_delta: int = 18  # grey levels: above sensor noise and compression shimmer


@dataclass(frozen=True)
class Verdict:
    """Whether a frame goes to the detector, and if only a region of it does."""

    detect: bool
    region: Region | None = None


class MotionGate:
    """Per camera: what of a frame must go to the detector."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._reference: np.ndarray | None = None
        self._analysed_at = -math.inf
        self.skipped = 0
        self.regions = 0

    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        height = max(1, round(image.shape[0] * GATE_WIDTH / image.shape[1]))
        grey = cv2.cvtColor(cv2.resize(image, (GATE_WIDTH, height), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def decide(self, image: np.ndarray, moment: float, has_people: bool) -> Verdict:
        if self.settings.share <= 0:
            return Verdict(True)
        small = self._small(image)
        whole = (self._reference is None or self._reference.shape != small.shape or moment < self._analysed_at
                 or (has_people and moment - self._analysed_at >= self.settings.keepalive_s))
        region = None
        if not whole:
            assert self._reference is not None
            changed = cv2.absdiff(small, self._reference) > self.settings.pixel_delta
            if np.count_nonzero(changed) < self.settings.share * changed.size:
                self.skipped += 1
                return Verdict(False)
            region = _region(changed, image.shape)
            self.regions += region is not None
        self._reference = small
        if region is None:  # the whole picture was looked at: the keep-alive clock restarts
            self._analysed_at = moment
        return Verdict(True, region)


def _region(changed: np.ndarray, shape: tuple[int, ...]) -> Region | None:
    """The changed pixels' bounding box in the full picture, with a margin; None when it is not small."""
    ys, xs = np.nonzero(changed)
    scale = shape[1] / changed.shape[1]
    x1, x2 = xs.min() * scale, (xs.max() + 1) * scale
    y1, y2 = ys.min() * scale, (ys.max() + 1) * scale
    grow_x, grow_y = (x2 - x1) * REGION_MARGIN, (y2 - y1) * REGION_MARGIN
    height, width = shape[:2]
    box = (max(0, int(x1 - grow_x)), max(0, int(y1 - grow_y)), min(width, math.ceil(x2 + grow_x)),
           min(height, math.ceil(y2 + grow_y)))
    if (box[2] - box[0]) * (box[3] - box[1]) > MAX_REGION_SHARE * width * height:
        return None
    return box


def region_size(region: Region, frame_shape: tuple[int, ...], imgsz: int) -> int:
    """Detector input size for a region: at least the scale the whole frame gets, at most full resolution's
    (or ``imgsz``), in multiples of 32."""
    scale = max(imgsz / max(frame_shape[:2]), 1.0)
    long_side = max(region[2] - region[0], region[3] - region[1]) * scale
    return int(min(imgsz, max(32, math.ceil(long_side / 32) * 32)))


def merge_region(previous: Detections | None, fresh: Detections, region: Region) -> Detections:
    """The region's new detections (in region coordinates) with the previous ones outside it."""
    x1, y1, x2, y2 = region
    boxes = fresh.boxes.copy()
    boxes[:, [0, 2]] += x1
    boxes[:, [1, 3]] += y1
    keypoints = None if fresh.keypoints is None else fresh.keypoints.copy()
    if keypoints is not None:
        keypoints[..., 0] += x1
        keypoints[..., 1] += y1
    if previous is None or not len(previous):
        return Detections(boxes, keypoints)
    cx = (previous.boxes[:, 0] + previous.boxes[:, 2]) / 2
    cy = (previous.boxes[:, 1] + previous.boxes[:, 3]) / 2
    outside = (cx < x1) | (cx >= x2) | (cy < y1) | (cy >= y2)
    kept_keypoints = None
    if previous.keypoints is not None and keypoints is not None:
        kept_keypoints = np.concatenate([previous.keypoints[outside], keypoints])
    elif previous.keypoints is not None and not len(boxes):
        kept_keypoints = previous.keypoints[outside]
    return Detections(np.concatenate([previous.boxes[outside], boxes]).astype(np.float32), kept_keypoints)
