"""GUI test set-up: Qt offscreen, cv2's Qt variables removed before the QApplication exists,
a window on an isolated database and settings file with real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reid_desktop.ui.qt_env import sanitize_qt_environment

sanitize_qt_environment()


@pytest.fixture
def app_settings(tmp_path: Path, osnet_path: Path):
    from reid_desktop.ui.settings import AppSettings

    # a real ONNX re-id model (OSNet from ../shared) so search and matching are the real thing; the tests
    # show one clip in two feeds, i.e. the same people at the same moment: cameras that overlap
    return AppSettings(database=str(tmp_path / "sightings.sqlite"),
                       pipeline={"reid.model": str(osnet_path), "reid.allow_download": False,
                                 "detector.device": "cpu", "matcher.camera_links": "vtest_excerpt = vtest_excerpt-2"})


@pytest.fixture
def make_window(qtbot, tmp_path: Path) -> Iterator:
    from reid_desktop.ui.main_window import MainWindow

    windows = []

    def make(settings, extra_sources=None):
        window = MainWindow(settings, tmp_path / "settings.json", extra_sources)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
