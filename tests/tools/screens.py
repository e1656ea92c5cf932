"""Checks on screenshots of the real window: drawn, and showing live video rather than flat widgets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_window_with_video(path: Path, width: int, height: int) -> np.ndarray:
    """The screenshot as a BGR image, after asserting its size and that it shows the window with video in it."""
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == (height, width)
    assert float(image.std()) > 25  # not a blank or single-colour screen
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 2000  # real video pixels, not just flat widgets
    return image
