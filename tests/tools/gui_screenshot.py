"""Open the real window on an X server with live feeds and save a screenshot of the screen.

Run by ``tests/ui/test_screenshot.py`` under Xvfb: ``gui_screenshot.py OUT.png RE_ID_MODEL.onnx``.
Exits 0 once the screenshot is saved with people detected in every feed, 1 on timeout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from reid_desktop.ui.qt_env import sanitize_qt_environment

sanitize_qt_environment()

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from reid_desktop.core.paths import demo_clip  # noqa: E402
from reid_desktop.core.sources import SourceSpec  # noqa: E402
from reid_desktop.ui.main_window import MainWindow  # noqa: E402
from reid_desktop.ui.settings import AppSettings  # noqa: E402


def main() -> int:
    out, model = Path(sys.argv[1]), sys.argv[2]
    app = QApplication(sys.argv[:1])
    settings = AppSettings(database=str(out.with_suffix(".sqlite")),
                           pipeline={"reid.model": model, "detector.device": "cpu"})
    window = MainWindow(settings, out.with_suffix(".json"),
                        [SourceSpec(str(demo_clip()), "north"), SourceSpec(str(demo_clip()), "south")])
    window.resize(1400, 860)
    window.show()
    deadline = time.monotonic() + 240
    status = {"code": 1}

    def check() -> None:
        feeds = list(window.grid.feeds.values())
        results = [f.result for f in feeds]
        if all(r is not None and r.frame_index >= 5 and r.persons for r in results):
            if not window.targets_panel.identity_ids() and not status.get("asked"):
                person = next((p for r in results for p in r.persons if p.identity_id is not None), None)
                if person is not None:
                    window.targets.set_target(person.identity_id, True)  # a highlighted target in the picture
                    status["asked"] = 1
            if any(p.is_target for r in results for p in r.persons):
                QTimer.singleShot(300, shoot)
                return
        if time.monotonic() > deadline:
            print("timed out waiting for live feeds with a highlighted target")
            window.close()
        else:
            QTimer.singleShot(200, check)

    def shoot() -> None:
        screen = app.primaryScreen()
        print(f"platform={app.platformName()} screen={screen.size().width()}x{screen.size().height()}")
        screen.grabWindow(0).save(str(out))  # the X server's own pixels, not a widget render
        status["code"] = 0
        window.close()

    QTimer.singleShot(200, check)
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
