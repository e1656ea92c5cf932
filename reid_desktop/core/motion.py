"""A cheap motion check per camera, so that a still scene costs almost no detector time.

Each frame is shrunk to a small grey picture and compared with the last frame that was *analysed* (not
the previous frame: a slow change adds up until it counts). Detection is skipped while too few pixels
changed; the frame then shows the people of the last analysed one, who by definition have not moved.
People standing still are not lost: while a camera has people, it is analysed at least every
``keepalive_s`` seconds anyway (as Frigate keeps stationary objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GATE_WIDTH = 160  # pixels: enough to see a walking person, cheap to compare (about 0.1 ms a frame)


@dataclass(frozen=True)
class MotionSettings:
    share: float  # fraction of the small picture's pixels that must change; 0 turns the gate off
    keepalive_s: float
    pixel_delta: int = 18  # grey levels: above sensor noise and compression shimmer


class MotionGate:
    """Per camera: whether a frame must go to the detector."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._reference: np.ndarray | None = None
        self._analysed_at = -np.inf
        self.skipped = 0

    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        height = max(1, round(image.shape[0] * GATE_WIDTH / image.shape[1]))
        grey = cv2.cvtColor(cv2.resize(image, (GATE_WIDTH, height), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def should_detect(self, image: np.ndarray, moment: float, has_people: bool) -> bool:
        if self.settings.share <= 0:
            return True
        small = self._small(image)
        due = has_people and moment - self._analysed_at >= self.settings.keepalive_s
        if (due or moment < self._analysed_at or self._reference is None or self._reference.shape != small.shape
                or self._changed_share(small) >= self.settings.share):
            self._reference = small
            self._analysed_at = moment
            return True
        self.skipped += 1
        return False

    def _changed_share(self, small: np.ndarray) -> float:
        assert self._reference is not None
        diff = cv2.absdiff(small, self._reference)
        return float(np.count_nonzero(diff > self.settings.pixel_delta)) / diff.size
