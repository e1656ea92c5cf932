"""The engine behind the window survives what a long unattended shift brings: a window that stalls, refreshes
that come faster than the database answers, a database another program locks, a worker that dies, a restart
before the old worker has let go. Real window, real models, real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from reid_desktop.core.engine import runner
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import FrameResult

pytestmark = pytest.mark.slow
WAIT_MS = 120_000


@pytest.fixture
def fast_settings(app_settings):
    app_settings.pipeline.update({"detector.imgsz": 320, "sources.loop": True, "storage.commit_interval_s": 0.2})
    return app_settings


def test_a_stalled_window_costs_one_frame_per_camera(qtbot, make_window, fast_settings, demo_clip: Path) -> None:
    window = make_window(fast_settings)
    window.sources.add_files([str(demo_clip), str(demo_clip)])
    feeds = list(window.grid.feeds.values())
    qtbot.waitUntil(lambda: all(f.result is not None for f in feeds), timeout=WAIT_MS)
    before = {f.source_id: f.result.frame_index for f in feeds}  # type: ignore[union-attr]
    delivered: list[FrameResult] = []
    window.engine.frame_processed.connect(delivered.append)
    time.sleep(4.0)  # the GUI thread is stuck; the engine must not wait for it, nor queue for it
    QApplication.processEvents()  # one pass delivers whatever was queued meanwhile
    assert len(delivered) <= len(feeds), f"{len(delivered)} results queued up for a stalled window"
    assert delivered and all(r.frame_index >= before[r.source_id] + 3 for r in delivered)  # it kept processing


def test_target_refreshes_never_pile_up(qtbot, make_window, fast_settings, monkeypatch) -> None:
    reads: list[float] = []
    original = SightingStore.targets

    def slow_targets(store: SightingStore):  # type: ignore[no-untyped-def]
        reads.append(time.monotonic())
        time.sleep(0.5)  # a big database on a slow disk
        return original(store)

    monkeypatch.setattr(SightingStore, "targets", slow_targets)
    window = make_window(fast_settings)
    window.targets.stop()
    # the engine has started (its first report asks for a refresh too) and no read is under way
    qtbot.waitUntil(lambda: window.engine.info is not None and not window.targets.refreshing, timeout=WAIT_MS)
    reads.clear()
    for _ in range(20):
        window.targets.refresh()
    qtbot.waitUntil(lambda: not window.targets.refreshing, timeout=WAIT_MS)
    assert len(reads) == 2  # the one running, then one more for everything asked meanwhile


def test_a_locked_database_shows_a_banner_and_the_video_goes_on(qtbot, make_window, fast_settings,
                                                                demo_clip: Path) -> None:
    window = make_window(fast_settings)
    window.sources.add_files([str(demo_clip)])
    feed = next(iter(window.grid.feeds.values()))
    qtbot.waitUntil(lambda: feed.result is not None, timeout=WAIT_MS)
    other = sqlite3.connect(window.settings.history, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        qtbot.waitUntil(lambda: "Database locked by another program: sightings are not being saved"
                        in window.banner.label.text(), timeout=WAIT_MS)
        assert window.banner.isVisible()
        shown = feed.result.frame_index  # type: ignore[union-attr]
        qtbot.waitUntil(lambda: feed.result.frame_index >= shown + 5, timeout=WAIT_MS)  # type: ignore[union-attr]
    finally:
        other.execute("ROLLBACK")
        other.close()
    qtbot.waitUntil(lambda: "not being saved" not in window.banner.label.text(), timeout=WAIT_MS)
    assert "Saving sightings again" in window.statusBar().currentMessage()


def test_a_crashed_engine_restarts_with_the_same_cameras_and_pauses(qtbot, make_window, fast_settings,
                                                                    demo_clip: Path, monkeypatch) -> None:
    faults = {"left": 1}
    original = runner._Session.next_frames

    def failing_once(session, max_frames):  # type: ignore[no-untyped-def]
        if faults["left"] and "yard" in session.sources and sum(s.taken for s in session.sources.values()) >= 5:
            faults["left"] = 0
            raise RuntimeError("injected engine fault")
        return original(session, max_frames)

    monkeypatch.setattr(runner._Session, "next_frames", failing_once)
    window = make_window(fast_settings)
    window.sources.add_files([str(demo_clip)])
    lobby = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: lobby.result is not None, timeout=WAIT_MS)
    window.sources.add_source(str(demo_clip), "yard", persist=False)  # added while the first worker runs
    window.sources.set_paused("yard", True)
    with qtbot.waitSignal(window.engine.restarting, timeout=WAIT_MS) as restarting:
        pass
    assert "injected engine fault" in restarting.args[0]
    assert "restarting in 1 s with the same cameras" in window.banner.label.text()
    seen: list[str] = []
    qtbot.waitUntil(lambda: window.engine.restarts == 1 and window.engine.info is not None, timeout=WAIT_MS)
    window.engine.frame_processed.connect(lambda r: seen.append(r.source_id))
    qtbot.waitUntil(lambda: seen.count("vtest_excerpt") >= 3, timeout=WAIT_MS)
    assert "yard" not in seen  # still paused after the restart
    assert "injected engine fault" not in window.banner.label.text()
    window.sources.set_paused("yard", False)
    qtbot.waitUntil(lambda: "yard" in seen, timeout=WAIT_MS)  # and part of the new run


def test_a_new_start_waits_for_the_old_worker_to_let_go(qtbot, make_window, fast_settings, demo_clip: Path) -> None:
    window = make_window(fast_settings)
    window.sources.add_files([str(demo_clip)])
    assert not window.engine.stop(timeout_s=0.01)  # still loading models: it outlives the stop
    window.start_engine()  # e.g. settings applied at once
    assert window.engine.control is None  # waiting, not writing beside the old worker
    feed = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: feed.result is not None, timeout=WAIT_MS)
    assert "in use" not in window.banner.label.text() and not window.banner.isVisible()
