"""Follow mode: a followed person appearing on a camera raises an alert, the wall brings that camera
forward (not against the operator's own recent change), and clicking the alert goes there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from reid_desktop.core.store.interface import Alert
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import TargetSighted
from reid_desktop.ui.alerts_panel import path_text
from reid_desktop.ui.settings import load_settings
from tests.ui.test_main_window import WAIT_MS, clearest_person, click_person

pytestmark = pytest.mark.slow


def test_following_someone_raises_alerts_brings_the_camera_forward_and_a_click_goes_there(
        qtbot, make_window, app_settings, demo_clip: Path) -> None:
    window = make_window(app_settings)
    north_name, south_name = window.sources.add_files([str(demo_clip), str(demo_clip)])
    north = window.grid.feeds[north_name]
    panel = window.alerts_panel
    assert panel.follow_mode.currentData() == "maximise" and window.grid.maximised is None

    qtbot.waitUntil(lambda: clearest_person(north) is not None, timeout=WAIT_MS)
    person = clearest_person(north)
    assert person is not None and person.identity_id is not None
    identity = person.identity_id
    click_person(qtbot, north, person)
    # the person is on both cameras (the same clip twice): an alert for each, and the wall shows the last one
    qtbot.waitUntil(lambda: {r.source for r in panel.rows if r.identity_id == identity} == {north_name, south_name},
                    timeout=WAIT_MS)
    assert window.grid.maximised == panel.rows[0].source
    assert all(r.thumbnail for r in panel.rows) and f"#{identity}" in panel.list.item(0).text()

    # a click on the oldest alert: its camera comes forward and plays from that moment
    oldest = panel.list.item(panel.list.count() - 1)
    row: Alert = oldest.data(Qt.ItemDataRole.UserRole)
    assert row.media_time is not None
    moments: list[float] = []
    window.engine.frame_processed.connect(
        lambda r: moments.append(r.media_time) if r.source_id == row.source and r.media_time is not None else None)
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.list.visualItemRect(oldest).center())
    assert window.grid.maximised == row.source
    assert panel.path.text().startswith(f"#{identity}: ") and "→" in panel.path.text()
    qtbot.waitUntil(lambda: any(abs(m - row.media_time) < 1.0 for m in moments), timeout=WAIT_MS)

    # the operator's own change of the wall is not overridden by the next alert
    window.set_layout_mode("2x2")
    other = south_name if row.source == north_name else north_name
    window.follow.on_target_sighted(TargetSighted(identity, other, 999, time.time(), 1.0, 0.9, b""))
    assert window.grid.maximised is None and panel.rows[0].source == other

    # alerts are kept with their sightings; the follow options are settings
    panel.follow_mode.setCurrentIndex(panel.follow_mode.findData("first"))
    panel.sound.setChecked(True)
    settings, _ = load_settings(window.settings_file)
    assert settings.follow_mode == "first" and settings.alert_sound
    window.close()
    qtbot.waitUntil(lambda: not window.engine.running, timeout=WAIT_MS)
    with SightingStore(window.settings.history, readonly=True) as store:
        stored = store.alerts(identity)
    assert {a.source for a in stored} == {north_name, south_name}


def test_the_path_lists_cameras_in_time_order() -> None:
    rows = [Alert(1, 7, "south", 20.0, None, 0.8, None, 3), Alert(2, 7, "north", 10.0, None, 0.9, None, 1),
            Alert(3, 8, "yard", 15.0, None, 0.7, None, 2)]
    text = path_text(rows, 7)
    assert text.index("north") < text.index("south") and "yard" not in text and text.count("→") == 1
