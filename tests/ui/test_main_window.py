"""The operator's window, driven like an operator: real clicks on real detections, real models."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QThreadPool, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLabel, QLineEdit, QMessageBox

from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import SourceState, TrackedPerson
from reid_desktop.ui.dialogs import SettingsDialog, StreamDialog
from reid_desktop.ui.feeds import MAX_DISPLAY_DELAY_S, FeedView
from reid_desktop.ui.search_panel import SearchQuery
from reid_desktop.ui.settings import SavedSource, load_settings
from tests.tools.rtsp import RtspServer, free_port, needs_rtsp

pytestmark = pytest.mark.slow
WAIT_MS = 120_000


def clearest_person(feed: FeedView) -> TrackedPerson | None:
    """The tallest identified person in the feed's current frame (easy to click, easy to re-identify)."""
    if feed.result is None:
        return None
    persons = [p for p in feed.result.persons if p.identity_id is not None and p.box[3] - p.box[1] > 60]
    return max(persons, key=lambda p: float(p.box[3] - p.box[1]), default=None)


def click_person(qtbot, feed: FeedView, person: TrackedPerson) -> None:
    x, y = float(person.box[0] + person.box[2]) / 2, float(person.box[1] + person.box[3]) / 2
    qtbot.mouseClick(feed, Qt.MouseButton.LeftButton, pos=feed.widget_point(x, y).toPoint())


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("source:") and t.is_alive()]


def test_click_follow_rename_search_timeline_untarget_close(qtbot, make_window, app_settings, demo_clip: Path) -> None:
    window = make_window(app_settings)
    # every frame analysed: the same tracks and identities on every run (search ranks are compared below)
    assert window.sources.add_files([str(demo_clip), str(demo_clip)], every_frame=True) == ["vtest_excerpt",
                                                                                     "vtest_excerpt-2"]
    north, south = (window.grid.feeds[n] for n in ("vtest_excerpt", "vtest_excerpt-2"))
    seen: list[tuple[str, float | None]] = []
    window.engine.frame_processed.connect(lambda r: seen.append((r.source_id, r.media_time)))

    qtbot.waitUntil(lambda: clearest_person(north) is not None, timeout=WAIT_MS)
    assert "osnet" in window.engine_status.model_label.text() and window.engine_status.warning_label.text() == ""
    person = clearest_person(north)
    assert person is not None and person.identity_id is not None
    identity = person.identity_id
    with qtbot.waitSignal(window.targets.refreshed, timeout=WAIT_MS):
        click_person(qtbot, north, person)
    qtbot.waitUntil(lambda: window.targets_panel.identity_ids() == [identity], timeout=WAIT_MS)

    # highlighted in every feed where it is re-identified: the other camera shows the same person as a target
    def highlighted(feed: FeedView) -> bool:
        return feed.result is not None and any(p.is_target and p.identity_id == identity for p in feed.result.persons)

    qtbot.waitUntil(lambda: highlighted(north) and highlighted(south), timeout=WAIT_MS)

    # rename through the editor, as an operator types it
    item = window.targets_panel.item_for(identity)
    window.targets_panel.tree.editItem(item, 1)
    editor = window.targets_panel.tree.findChild(QLineEdit)
    assert editor is not None
    qtbot.keyClicks(editor, "Dark coat")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: (window.targets_panel.item_for(identity) is not None
                             and window.targets_panel.item_for(identity).text(1) == "Dark coat"
                             and window.targets.labels.get(identity) == "Dark coat"), timeout=WAIT_MS)
    assert north.names[identity] == "Dark coat"  # the wall shows the name next to the number

    # the timeline lists the target's sightings in both cameras, oldest first
    window.targets_panel.tree.setCurrentItem(window.targets_panel.item_for(identity))
    qtbot.waitUntil(lambda: {window.timeline_panel.tree.topLevelItem(i).text(1)
                             for i in range(window.timeline_panel.tree.topLevelItemCount())}
                    == {"vtest_excerpt", "vtest_excerpt-2"}, timeout=WAIT_MS)

    # appearance search with the clicked person's crop finds that same person first
    crop = north.crop_of(person)
    assert crop is not None
    with qtbot.waitSignal(window.searches.finished, timeout=WAIT_MS):
        window.searches.search(SearchQuery(crop, identity, f"#{identity}"))
    rows = window.search_panel.result_rows()
    assert rows and rows[0].hit.sighting.identity_id == identity and rows[0].thumbnail
    assert [r.hit.score for r in rows] == sorted((r.hit.score for r in rows), reverse=True)

    # clicking a sighting in the timeline jumps the file back to that moment
    timeline = window.timeline_panel.tree
    first = timeline.topLevelItem(0)
    segment = first.data(0, Qt.ItemDataRole.UserRole)
    seen.clear()
    rect = timeline.visualItemRect(first)
    qtbot.mouseClick(timeline.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: any(s == segment.source and t is not None and abs(t - segment.first_media_time) < 0.2
                                for s, t in seen), timeout=WAIT_MS)

    # un-target with the panel's button
    window.targets_panel.tree.setCurrentItem(window.targets_panel.item_for(identity))
    qtbot.mouseClick(window.targets_panel.untarget_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.targets_panel.identity_ids() == [], timeout=WAIT_MS)

    database = window.settings.history
    window.close()
    assert not window.engine.running
    assert source_threads() == []
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    with SightingStore(database, readonly=True) as store:  # flushed: everything is on disk after closing
        summary = store.identity(identity)
        assert summary is not None and summary.label == "Dark coat" and not summary.is_target
        assert store.runs()[-1]["status"] == "cancelled"


def test_bad_sources_show_an_error_and_the_others_keep_running(qtbot, make_window, app_settings, demo_clip: Path,
                                                               tmp_path: Path) -> None:
    app_settings.pipeline["detector.imgsz"] = 320  # about the plumbing, not about detections
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 500)
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip), str(tmp_path / "missing.mp4"), str(garbage)])
    good, missing, broken = (window.grid.feeds[n] for n in ("vtest_excerpt", "missing", "garbage"))
    qtbot.waitUntil(lambda: missing.state is SourceState.FAILED and broken.state is SourceState.FAILED,
                    timeout=WAIT_MS)
    assert "file not found" in missing.reason
    assert window.banner.isVisible() and "missing failed: file not found" in window.banner.label.text()
    assert "garbage failed" in window.banner.label.text()
    qtbot.waitUntil(lambda: good.result is not None, timeout=WAIT_MS)
    index = good.result.frame_index
    qtbot.waitUntil(lambda: good.result.frame_index > index + 3, timeout=WAIT_MS)  # still running
    window.sources.remove_source("missing")
    assert "missing" not in window.grid.feeds and "missing" not in window.sources.panel.names()
    saved = json.loads(window.settings_file.read_text())
    assert [s["name"] for s in saved["sources"]] == ["vtest_excerpt", "garbage"]


def test_settings_round_trip_and_restart_the_engine(qtbot, make_window, app_settings) -> None:
    window = make_window(app_settings)
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    dialog.editors["detector.imgsz"].input.setValue(960)
    dialog.editors["matcher.threshold"].input.setValue(0.55)
    dialog.editors["storage.retention_days"].input.setValue(30)
    providers = dialog.editors["reid.providers"].input
    providers.setCurrentIndex(providers.findData("cpu"))
    precision = dialog.editors["reid.precision"].input
    precision.setCurrentIndex(precision.findData("fp16"))
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    assert dialog.result_settings is not None
    with qtbot.waitSignal(window.engine.info_ready, timeout=WAIT_MS) as info:
        window.apply_settings(dialog.result_settings)
    assert info.args[0].match_threshold == pytest.approx(0.55)
    # the re-id model (OSNet) runs in the precision asked for, and the status bar says so
    assert info.args[0].embedder_precision == "fp16" and "[CPU FP16]" in window.engine_status.model_label.text()

    reloaded, warning = load_settings(window.settings_file)
    assert warning == ""
    assert reloaded.pipeline["detector.imgsz"] == 960 and reloaded.pipeline["matcher.threshold"] == 0.55
    assert reloaded.pipeline["storage.retention_days"] == 30 and reloaded.pipeline["reid.providers"] == "cpu"
    assert reloaded.pipeline["reid.precision"] == "fp16"
    config = reloaded.pipeline_config()
    assert (config.detector.imgsz, config.matcher.threshold, config.storage.retention_days) == (960, 0.55, 30)
    again = SettingsDialog(reloaded)
    assert (again.editors["detector.imgsz"].value(), again.editors["storage.retention_days"].value()) == (960, 30)
    assert again.editors["storage.retention_days"].input.suffix() == " days"  # presentation from the declaration

    # a settings file from a newer version, or a broken one, is put aside with a clear message
    window.settings_file.write_text(json.dumps({"schema_version": 99}))
    defaults, warning = load_settings(window.settings_file)
    assert "newer than this version" in warning and defaults.pipeline == {}
    assert window.settings_file.with_suffix(".json.bad").exists()


def test_stream_password_is_masked_kept_in_the_keyring_and_never_saved(qtbot, make_window, app_settings,
                                                                      memory_keyring) -> None:
    app_settings.pipeline["sources.open_timeout_s"] = 1.0
    window = make_window(app_settings)

    def fill_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, StreamDialog)
        assert dialog.password.echoMode() is QLineEdit.EchoMode.Password
        dialog.name.setText("gate")
        dialog.url.setText("rtsp://127.0.0.1:9/cam")
        dialog.user.setText("admin")
        dialog.password.setText("s3cret!pw")
        qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                         Qt.MouseButton.LeftButton)

    QTimer.singleShot(100, fill_dialog)
    window.sources.add_stream_dialog()
    assert window.sources.panel.names() == ["gate"]
    feed = window.grid.feeds["gate"]
    qtbot.waitUntil(lambda: "refused" in feed.reason or "cannot connect" in feed.reason, timeout=WAIT_MS)
    text = window.settings_file.read_text()
    assert "s3cret" not in text and "rtsp://127.0.0.1:9/cam" in text and "admin" not in text
    assert memory_keyring.secrets[("reid-desktop", "source:gate")] == "rtsp://admin:s3cret%21pw@127.0.0.1:9/cam"
    assert "s3cret" not in feed.reason and "s3cret" not in window.sources.panel.list.item(0).toolTip()
    window.close()

    # the next start gets the whole URL back from the keyring
    settings = load_settings(window.settings_file)[0]
    reopened = make_window(settings)
    assert reopened.cameras["gate"].uri == "rtsp://admin:s3cret%21pw@127.0.0.1:9/cam"
    reopened.sources.remove_source("gate")
    assert ("reid-desktop", "source:gate") not in memory_keyring.secrets
    reopened.close()

    # settings of the previous version kept the user in the file and only the password in the keyring
    memory_keyring.secrets[("reid-desktop", "source:yard")] = "old!pw"
    settings.sources = [SavedSource("yard", "rtsp://127.0.0.1:9/cam", "admin", True)]
    assert make_window(settings).cameras["yard"].uri == "rtsp://admin:old%21pw@127.0.0.1:9/cam"


def test_without_a_keyring_the_password_is_used_but_not_kept(qtbot, make_window, app_settings) -> None:
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        window = make_window(app_settings)
        window.sources.add_source("rtsp://127.0.0.1:9/cam", "gate", username="admin", password="s3cret")
        assert "not saved" in window.banner.label.text()
        assert window.cameras["gate"].uri == "rtsp://admin:s3cret@127.0.0.1:9/cam"
        assert "s3cret" not in window.settings_file.read_text()
    finally:
        keyring.set_keyring(previous)


def test_pause_rename_layout_and_persisted_sources(qtbot, make_window, app_settings, demo_clip: Path) -> None:
    app_settings.pipeline["detector.imgsz"] = 320
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip)])
    feed = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: feed.result is not None, timeout=WAIT_MS)
    window.sources.panel.list.setCurrentRow(0)
    window.sources.act_pause.trigger()
    assert feed.paused and "paused" in window.sources.panel.list.item(0).text()
    qtbot.wait(1500)  # let a frame already in flight arrive
    index = feed.result.frame_index
    qtbot.wait(2000)
    assert feed.result.frame_index == index  # nothing new while paused
    window.sources.act_pause.trigger()
    qtbot.waitUntil(lambda: feed.result.frame_index > index, timeout=WAIT_MS)

    # a file dropped on the window becomes a camera
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_clip))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.sources.panel.names() == ["vtest_excerpt", "vtest_excerpt-2"]
    window.sources.remove_source("vtest_excerpt-2")

    window.sources.rename_source("vtest_excerpt", "lobby")
    assert list(window.grid.feeds) == ["lobby"] and window.sources.panel.names() == ["lobby"]
    qtbot.waitUntil(lambda: window.grid.feeds["lobby"].result is not None
                    and window.grid.feeds["lobby"].result.source_id == "lobby", timeout=WAIT_MS)
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    next(a for a in view.actions() if a.text() == "2 × 2").trigger()  # as the operator does, from the menu
    assert window.grid.layout_mode == "2x2"
    window.close()
    settings, _ = load_settings(window.settings_file)
    assert [(s.name, s.uri) for s in settings.sources] == [("lobby", str(demo_clip))]
    assert settings.layout == "2x2"


def test_merge_two_targets_split_a_wrong_sighting_off_and_export(qtbot, make_window, app_settings, demo_clip: Path,
                                                                  tmp_path: Path) -> None:
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip)], every_frame=True)  # every frame: the same tracks on every run
    feed = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: feed.result is not None and len({p.identity_id for p in feed.result.persons
                                                             if p.identity_id is not None}) >= 2, timeout=WAIT_MS)
    first, second = sorted({p.identity_id for p in feed.result.persons if p.identity_id is not None})[:2]
    for identity in (first, second):
        window.targets.set_target(identity, True)
    qtbot.waitUntil(lambda: sorted(window.targets_panel.identity_ids()) == [first, second], timeout=WAIT_MS)
    for identity in (first, second):
        window.targets_panel.item_for(identity).setSelected(True)
    assert window.targets_panel.merge_button.isEnabled()

    def answer_yes() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "same person" in box.text()
        qtbot.mouseClick(box.button(QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)

    QTimer.singleShot(100, answer_yes)
    qtbot.mouseClick(window.targets_panel.merge_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.targets_panel.identity_ids()) == 1, timeout=WAIT_MS)
    keep = window.targets_panel.identity_ids()[0]
    assert keep in (first, second)

    qtbot.waitUntil(lambda: feed.state is SourceState.ENDED, timeout=WAIT_MS)  # no new tracks from here on
    window.targets_panel.tree.setCurrentItem(window.targets_panel.item_for(keep))
    # both people's tracks (a person's track may break in two when the clip plays in real time)
    qtbot.waitUntil(lambda: window.timeline_panel.tree.topLevelItemCount() >= 2, timeout=WAIT_MS)
    timeline = window.timeline_panel.tree
    tracks = timeline.topLevelItemCount()
    wrong = timeline.topLevelItem(1).data(0, Qt.ItemDataRole.UserRole)
    timeline.setCurrentItem(timeline.topLevelItem(1))
    qtbot.mouseClick(window.timeline_panel.split_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.timeline_panel.tree.topLevelItemCount() == tracks - 1, timeout=WAIT_MS)

    # export the target: CSV of its sightings and a self-contained HTML report with its thumbnail
    report, table = tmp_path / "target.html", tmp_path / "target.csv"
    window.exports.export(keep, report, "html")
    window.exports.export(keep, table, "csv")
    qtbot.waitUntil(lambda: report.exists() and table.exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Exported" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    assert "data:image/jpeg;base64," in report.read_text() and "vtest_excerpt" in report.read_text()
    rows = table.read_text().splitlines()
    assert rows[0].startswith("sighting_id,source,identity_id") and len(rows) > 2
    assert all(line.split(",")[2] == str(keep) for line in rows[1:])
    database = window.settings.history
    window.close()
    with SightingStore(database, readonly=True) as store:
        assert [s.track_row for s in store.track_segments(keep)] != [wrong.track_row]
        split_off = store.track_identity(wrong.track_row)
        assert split_off not in (first, second, None)
        assert store.identity(keep).is_target and not store.identity(split_off).is_target


@needs_rtsp
def test_a_real_rtsp_camera_goes_live_drops_and_comes_back_while_the_window_stays_responsive(
        qtbot, make_window, app_settings, demo_clip: Path, long_clip: Path) -> None:
    app_settings.pipeline.update({"detector.imgsz": 320, "sources.read_timeout_s": 2.0, "sources.open_timeout_s": 3.0,
                                  "sources.reconnect_initial_delay_s": 0.2, "sources.reconnect_max_delay_s": 1.0,
                                  "sources.loop": True})
    port = free_port()
    server = RtspServer(long_clip, port)
    server.start()
    try:
        window = make_window(app_settings)
        window.sources.add_source(f"rtsp://127.0.0.1:{port}/cam", "street", username="viewer", password="secret")
        window.sources.add_files([str(demo_clip)])
        street, lobby = window.grid.feeds["street"], window.grid.feeds["vtest_excerpt"]
        health = window.health_panel
        qtbot.waitUntil(lambda: street.state is SourceState.LIVE and street.result is not None, timeout=WAIT_MS)
        # the stream health view: frames come in and are analysed, the latency is measured, nothing failed yet
        qtbot.waitUntil(lambda: float(health.cell("street", "Input fps") or 0) > 0
                        and float(health.cell("street", "Analysed fps") or 0) > 0, timeout=WAIT_MS)
        assert health.cell("street", "Reconnects") == "0" and health.cell("street", "Last error") == ""
        assert health.cell("street", "Latency").endswith(" s")
        server.stop()
        qtbot.waitUntil(lambda: street.state is SourceState.RECONNECTING, timeout=WAIT_MS)
        assert "secret" not in street.reason
        qtbot.waitUntil(lambda: health.cell("street", "State") == "reconnecting", timeout=WAIT_MS)
        assert health.cell("street", "Reconnects") == "1" and health.cell("street", "Last error")
        assert "secret" not in health.cell("street", "Last error")
        index = lobby.result.frame_index
        qtbot.waitUntil(lambda: lobby.result.frame_index > index + 2, timeout=WAIT_MS)  # the other camera runs on
        window.grab()  # the GUI thread is free: it paints while the camera is down
        server.start()
        qtbot.waitUntil(lambda: street.state is SourceState.LIVE, timeout=WAIT_MS)
        frames = street.result.frame_index
        qtbot.waitUntil(lambda: street.result.frame_index > frames, timeout=WAIT_MS)  # pictures again
        qtbot.waitUntil(lambda: health.cell("street", "State") == "live"
                        and float(health.cell("street", "Input fps") or 0) > 0, timeout=WAIT_MS)
        assert health.cell("street", "Reconnects") == "1" and health.cell("street", "Last error")  # kept
    finally:
        server.stop()


def test_about_names_versions_and_licences(qtbot) -> None:
    from reid_desktop import __version__
    from reid_desktop.ui.dialogs import AboutDialog

    dialog = AboutDialog(runtime="Re-id: osnet [CPU]")
    qtbot.addWidget(dialog)
    text = dialog.findChild(QLabel).text()
    assert f"reid-desktop {__version__}" in text and "AGPL-3.0" in text and "LGPL-3.0" in text
    assert "PySide6" in text and "Re-id: osnet [CPU]" in text


def test_the_window_reopens_where_the_operator_left_it(qtbot, make_window, app_settings) -> None:
    window = make_window(app_settings)
    window.resize(1000, 640)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, window.targets_dock)
    window.search_dock.hide()
    qtbot.wait(200)  # the layout settles: the docks' minimum sizes may widen the window
    size = (window.width(), window.height())
    assert size != (1400, 860)
    window.close()
    qtbot.waitUntil(lambda: not window.engine.running, timeout=WAIT_MS)

    settings, warning = load_settings(window.settings_file)
    assert warning == "" and settings.window_geometry and settings.window_state
    again = make_window(settings)
    assert (again.width(), again.height()) == size
    assert again.dockWidgetArea(again.targets_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert again.timeline_dock.isVisible() and not again.search_dock.isVisible()

    settings.window_geometry, settings.window_state = "not base64 ✓", "%%%"  # a damaged file: the default size
    assert make_window(settings).width() == 1400


def test_the_demo_plays_at_the_clips_rate_while_analysis_takes_the_newest_frame(qtbot, make_window,
                                                                               app_settings) -> None:
    from reid_desktop.core.capture.sources import demo_sources

    window = make_window(app_settings, demo_sources())
    feeds = [window.grid.feeds["demo-left"], window.grid.feeds["demo-right"]]
    # 10 pictures a second on every feed (the clip's rate), whatever the analysis manages on this machine
    qtbot.waitUntil(lambda: all(f.result is not None and f.result.persons for f in feeds), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: all(f.display_fps >= 6 for f in feeds), timeout=WAIT_MS)
    assert all(f.display_fps >= f.fps for f in feeds)
    # in step with the analysis: each picture waits for the analysis of its moment, never more than 2 s
    assert all(f.in_step and f.display_latency_s is not None
               and f.display_latency_s < MAX_DISPLAY_DELAY_S + 1.0 for f in feeds)
    qtbot.waitUntil(lambda: all(f.display_delay_s > 0 for f in feeds), timeout=WAIT_MS)
    window.act_in_step.trigger()  # View > Pictures in step with analysis: off, shown as they come
    assert not any(f.in_step or f.display_delay_s for f in feeds)
    assert load_settings(window.settings_file)[0].pictures_in_step is False
    qtbot.waitUntil(lambda: all(f.display_latency_s is not None and f.display_latency_s < 1.0 for f in feeds),
                    timeout=WAIT_MS)


def test_the_every_frame_option_is_offered_for_files_and_restarts_the_camera(qtbot, make_window, app_settings,
                                                                             demo_clip: Path) -> None:
    window = make_window(app_settings)
    (name,) = window.sources.add_files([str(demo_clip)])
    qtbot.waitUntil(lambda: window.grid.feeds[name].result is not None, timeout=WAIT_MS)
    window.sources.panel.list.setCurrentRow(0)
    assert window.sources.act_every_frame.isEnabled() and not window.sources.act_every_frame.isChecked()
    window.sources.act_every_frame.trigger()
    assert window.sources.act_every_frame.isChecked() and not window.cameras[name].spec.realtime
    assert load_settings(window.settings_file)[0].sources[0].analyse_every_frame
    frames = window.grid.feeds[name].result.frame_index
    qtbot.waitUntil(lambda: window.grid.feeds[name].result.frame_index < frames  # restarted from the start
                    or window.grid.feeds[name].result.frame_index > frames + 3, timeout=WAIT_MS)


def test_prepare_faster_detector_from_the_menu_switches_auto_to_it(qtbot, make_window, app_settings) -> None:
    from reid_desktop.ui.detector_dialog import PrepareDetectorDialog

    app_settings.pipeline["detector.imgsz"] = 320  # small: the preparation exports every runtime
    window = make_window(app_settings)
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    assert "PyTorch FP32" in window.engine_status.model_label.text()  # auto, nothing prepared yet: the checkpoint
    assert "Prepare faster detector" in window.engine_status.model_label.toolTip()
    models_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Models")
    action = next(a for a in models_menu.actions() if a.text() == "Prepare faster detector…")
    action.trigger()
    dialog = window.findChild(PrepareDetectorDialog)
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(dialog.prepared, timeout=300_000) as prepared:
        pass
    chosen = prepared.args[0]
    assert chosen.split()[0] in ("PyTorch", "ONNX", "OpenVINO"), chosen
    assert dialog.progress.value() == dialog.progress.maximum() and "now runs" in dialog.status.text()
    assert "agrees" in dialog.output.toPlainText()
    if not chosen.startswith("PyTorch"):  # the fastest is an export: processing restarts on it
        qtbot.waitUntil(lambda: chosen in window.engine_status.model_label.text(), timeout=WAIT_MS)
        assert "Prepare faster detector" not in window.engine_status.model_label.toolTip()
    dialog.close()


def test_the_first_start_prepares_the_faster_detector_in_the_background_and_switches_to_it(
        qtbot, make_window, app_settings, demo_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No menu, no restart: the status bar shows the preparation, then the detector label the faster runtime."""
    from reid_desktop.core.vision import detector_runtimes as runtimes
    from reid_desktop.core.vision.detector_preparation import SWITCH_VARIABLE

    monkeypatch.setenv(SWITCH_VARIABLE, "1")
    monkeypatch.setattr(runtimes, "candidates", lambda: [runtimes.Variant("onnxruntime", "fp32")])  # one: quick
    app_settings.pipeline["detector.imgsz"] = 320
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip)])
    qtbot.waitUntil(lambda: window.engine_status.preparation_label.isVisible(), timeout=WAIT_MS)
    assert window.engine_status.preparation_label.text() == "Preparing faster detector 1/1…"
    assert "without stopping" in window.engine_status.preparation_label.toolTip()
    status = window.engine_status
    assert "PyTorch FP32" in status.model_label.text()
    assert "Prepare faster detector" not in status.model_label.toolTip()  # it is being done: no advice to do it
    thread = window.engine._thread
    qtbot.waitUntil(lambda: "ONNX Runtime FP32" in window.engine_status.model_label.text(), timeout=300_000)
    assert window.engine._thread is thread  # the same run: the cameras did not stop
    qtbot.waitUntil(lambda: not window.engine_status.preparation_label.isVisible(), timeout=WAIT_MS)
    assert "Faster detector prepared ('auto' runs ONNX Runtime FP32)" in window.statusBar().currentMessage()


def test_a_cameras_analysis_rate_is_chosen_in_its_menu_and_holds(qtbot, make_window, app_settings,
                                                                   demo_clip: Path) -> None:
    from PySide6.QtWidgets import QInputDialog

    window = make_window(app_settings)
    (name,) = window.sources.add_files([str(demo_clip)])
    qtbot.waitUntil(lambda: window.grid.feeds[name].result is not None, timeout=WAIT_MS)
    window.sources.panel.list.setCurrentRow(0)

    def choose_two_a_second() -> None:
        dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QInputDialog) and w.isVisible())
        assert dialog.comboBoxItems()[0] == "Same as all cameras (as many as the machine manages)"
        dialog.setTextValue("2 frames/s")
        dialog.accept()

    QTimer.singleShot(100, choose_two_a_second)
    window.sources.act_analysis_rate.trigger()
    assert window.cameras[name].spec.analysis_fps == 2.0
    assert load_settings(window.settings_file)[0].sources[0].analysis_fps == 2.0
    rates: list[float] = []
    window.engine.health_reported.connect(lambda h: rates.append(h.processed_fps) if h.source_id == name else None)
    qtbot.waitUntil(lambda: len(rates) >= 6, timeout=WAIT_MS)
    assert max(rates[2:]) <= 3.1, rates  # two a second, give or take one frame in a report's interval
    assert sum(rates[2:]) / len(rates[2:]) >= 1.0  # and the camera is still analysed
