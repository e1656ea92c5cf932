"""Open the real window on the demo on an X server and save a screenshot of the screen.

Run by ``tests/ui/test_screenshot.py`` under Xvfb: ``gui_screenshot.py OUT.png RE_ID_MODEL.onnx``.
It waits for a hand-off (one identity on both demo cameras), follows that person, and exits 0
once the screenshot shows them highlighted on both feeds; 1 on timeout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from reid_desktop.ui.qt_env import sanitize_qt_environment

sanitize_qt_environment()

from PySide6.QtCore import QPoint, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from reid_desktop.core.capture.sources import DEMO_LINKS, demo_sources  # noqa: E402
from reid_desktop.ui.main_window import MainWindow  # noqa: E402
from reid_desktop.ui.settings import AppSettings  # noqa: E402


def main() -> int:
    out, model = Path(sys.argv[1]), sys.argv[2]
    app = QApplication(sys.argv[:1])
    settings = AppSettings(database=str(out.with_suffix(".sqlite")),
                           pipeline={"reid.model": model, "detector.device": "cpu"},
                           follow_mode="first")  # the followed camera moves first; both stay on the wall
    window = MainWindow(settings, out.with_suffix(".json"), demo_sources(), session_links=DEMO_LINKS)
    window.resize(1400, 860)
    window.show()
    deadline = time.monotonic() + 240
    status: dict[str, Any] = {"code": 1}
    tried: set[int] = set()

    def on_both_highlighted() -> bool:
        """Drawn as followed on both feeds: on the pictures they show, which may be older than their newest
        analysis (a person found only on the newer analysis is drawn from halfway between the two)."""
        followed = status.get("followed")
        feeds = list(window.grid.feeds.values())
        return bool(followed) and len(feeds) == 2 and all(
            any(feed.is_target(p) and p.identity_id == followed for p, _ in feed.shown_persons()) for feed in feeds)

    def check() -> None:
        results = [f.result for f in window.grid.feeds.values()]
        if len(results) == 2 and all(r is not None and r.persons for r in results):
            on_both = set.intersection(*({p.identity_id for p in r.persons} - {None} for r in results if r))
            if status.get("followed") and time.monotonic() - status["since"] > 20:
                # not on both cameras again for a while (they left the shared strip): follow someone else
                window.targets.set_target(status["followed"], False)
                tried.add(status.pop("followed"))
            candidates = on_both - tried
            if candidates and not status.get("followed"):
                status["followed"], status["since"] = min(candidates), time.monotonic()
                window.targets.set_target(status["followed"], True)  # someone handed over: follow them
            if on_both_highlighted():
                window.repaint()  # paint these very results now, and shoot before a newer frame replaces them
                shoot()
                return
        if time.monotonic() > deadline:
            print("timed out waiting for a followed person on both demo cameras")
            window.close()
        else:
            QTimer.singleShot(200, check)

    def shoot() -> None:
        screen = app.primaryScreen()
        print(f"platform={app.platformName()} screen={screen.size().width()}x{screen.size().height()} "
              f"followed={status['followed']}")
        for feed in window.grid.visible_feeds():
            corner = feed.mapToGlobal(QPoint(0, 0))
            print(f"feed={feed.source_id} {corner.x()} {corner.y()} {feed.width()} {feed.height()}")
        screen.grabWindow(0).save(str(out))  # the X server's own pixels, not a widget render
        status["code"] = 0
        window.close()

    QTimer.singleShot(200, check)
    app.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
