"""The window on a shared PostgreSQL database (a real server, tests/pg_server.py): the operator's work is the same
as on a SQLite file, and the Settings dialog refuses a database URL that holds a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.ui.dialogs import SettingsDialog
from reid_desktop.ui.search_panel import SearchQuery
from tests.pg_server import PASSWORD
from tests.ui.test_main_window import WAIT_MS, clearest_person, click_person


def test_follow_timeline_and_search_on_a_shared_database(qtbot, make_window, app_settings, demo_clip: Path,
                                                         pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    app_settings.database = pg_url
    window = make_window(app_settings)
    assert isinstance(window.settings.history, PostgresLocation)
    window.sources.add_files([str(demo_clip)], every_frame=True)
    feed = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: clearest_person(feed) is not None, timeout=WAIT_MS)
    person = clearest_person(feed)
    assert person is not None and person.identity_id is not None
    identity = person.identity_id
    click_person(qtbot, feed, person)
    qtbot.waitUntil(lambda: window.targets_panel.identity_ids() == [identity], timeout=WAIT_MS)
    with psycopg.connect(pg_url) as con:  # the target is in the shared database, for every node and station
        assert con.execute("SELECT is_target FROM identities WHERE id = %s", (identity,)).fetchone() == (1,)
    window.targets_panel.tree.setCurrentItem(window.targets_panel.item_for(identity))
    qtbot.waitUntil(lambda: window.timeline_panel.tree.topLevelItemCount() > 0, timeout=WAIT_MS)
    crop = feed.crop_of(person)
    assert crop is not None
    with qtbot.waitSignal(window.searches.finished, timeout=WAIT_MS):
        window.searches.search(SearchQuery(crop, identity, f"#{identity}"))
    rows = window.search_panel.result_rows()
    assert rows and rows[0].hit.sighting.identity_id == identity


def test_settings_refuse_a_database_url_holding_a_password(qtbot, app_settings) -> None:
    dialog = SettingsDialog(app_settings)
    qtbot.addWidget(dialog)
    dialog.database.setText(f"postgresql://reid:{PASSWORD}@db.site/history")
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    assert dialog.result_settings is None
    assert "holds a password" in dialog.error.text() and PASSWORD not in dialog.error.text()
    dialog.database.setText("postgresql://reid@db.site/history")
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    assert dialog.result_settings is not None
    assert dialog.result_settings.history == PostgresLocation("postgresql://reid@db.site/history", "reid", "db.site",
                                                              5432, "history")


def test_a_saved_database_url_with_a_password_is_not_used(tmp_path: Path) -> None:
    import json

    from reid_desktop.ui.settings import AppSettings, load_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"database": f"postgresql://reid:{PASSWORD}@db.site/history"}))
    settings, warning = load_settings(path)
    assert settings == AppSettings() and "holds a password" in warning and PASSWORD not in warning


def test_sources_panel_lists_every_nodes_cameras_with_their_health(qtbot, make_window, app_settings, pg_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from reid_desktop.core.capture.sources import SourceSpec
    from reid_desktop.core.store.database_url import parse_postgres_url
    from reid_desktop.core.store.node_health import NodeHealth

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    node = NodeHealth(parse_postgres_url(pg_url), "node-east")
    node.add_camera(SourceSpec("rtsp://operator:secret@10.0.0.7/gate", "gate"))
    node.add_camera(SourceSpec("rtsp://10.0.0.8/hall", "hall"))
    node.start()
    try:
        node.camera_state("gate", "live")
        app_settings.database = pg_url
        window = make_window(app_settings)
        panel = window.sources.panel
        qtbot.waitUntil(lambda: any("gate — live" in t for t in panel.node_camera_texts()), timeout=WAIT_MS)
        assert panel.nodes.isVisibleTo(window) and panel.nodes_title.isVisibleTo(window)
        texts = panel.node_camera_texts()
        assert texts[0].startswith("●  node-east / gate — live") and "node-east / hall — connecting" in texts[1]
        tip = panel.nodes.item(0).toolTip()
        assert "double-click to watch it live" in tip and "secret" not in tip and "rtsp://***@10.0.0.7/gate" in tip
    finally:
        node.stop()
    qtbot.waitUntil(lambda: all("— down" in t for t in panel.node_camera_texts()), timeout=WAIT_MS)
    assert panel.nodes.item(0).toolTip().count("down: no heartbeat") == 1


def test_a_one_machine_history_shows_no_node_cameras(qtbot, make_window, app_settings) -> None:
    window = make_window(app_settings)
    window.node_cameras.read()
    assert not window.sources.panel.nodes.isVisibleTo(window) and window.sources.panel.node_camera_texts() == []


def test_the_windows_engine_hears_a_target_set_on_another_station(qtbot, make_window, app_settings, demo_clip: Path,
                                                                  pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from reid_desktop.core.store.database_url import parse_postgres_url
    from reid_desktop.core.store.pg_store import PgSightingStore

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    app_settings.database = pg_url
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip)], every_frame=True)
    feed = window.grid.feeds["vtest_excerpt"]
    qtbot.waitUntil(lambda: clearest_person(feed) is not None, timeout=WAIT_MS)
    with PgSightingStore(parse_postgres_url(pg_url)) as elsewhere:
        qtbot.waitUntil(lambda: bool(elsewhere.identities()), timeout=WAIT_MS)
        identity = elsewhere.identities()[0].identity_id
        elsewhere.set_target(identity)

    def followed() -> bool:
        control = window.engine.control
        return control is not None and control.submit(lambda p: identity in p.matcher.targets).result(timeout=30)

    qtbot.waitUntil(followed, timeout=WAIT_MS)
