"""OpenCV (non-headless, as ultralytics requires) and PySide6 live in one process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_pyside6_starts_after_cv2_set_its_qt_plugin_path() -> None:
    code = (
        "import os, cv2\n"
        "from reid_desktop.ui.qt_env import sanitize_qt_environment\n"
        "sanitize_qt_environment()\n"
        "assert 'cv2' not in os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', '')\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "app = QApplication(['t'])\n"
        "label = QLabel('hello'); label.show(); app.processEvents()\n"
        "print(app.platformName())\n"
    )
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "offscreen"
