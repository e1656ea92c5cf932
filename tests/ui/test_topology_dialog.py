"""The camera topology editor: a table that round-trips the matcher's camera links."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDialogButtonBox, QDoubleSpinBox, QLabel, QPushButton

from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.core.topology import parse
from reid_desktop.ui.settings import load_settings
from reid_desktop.ui.topology_dialog import NOT_RUNNING, NOTHING_LEARNED, TopologyDialog

WAIT_MS = 120_000


def ok(qtbot, dialog: TopologyDialog) -> None:
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)


def test_links_round_trip_through_the_table(qtbot) -> None:
    dialog = TopologyDialog("hall = stairs; entrance ~ hall : 8", ["entrance", "hall", "stairs"], 0.5)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2 and parse(dialog.links()) == parse("hall = stairs; entrance ~ hall : 8")
    row = dialog.add_link("stairs", "yard")
    walk = dialog.table.cellWidget(row, 3)
    assert isinstance(walk, QDoubleSpinBox)
    walk.setValue(30)
    ok(qtbot, dialog)
    assert dialog.result_links == "hall = stairs; entrance ~ hall : 8; stairs ~ yard : 30"

    again = TopologyDialog(dialog.result_links, ["entrance", "hall", "stairs"], 0.5)
    qtbot.addWidget(again)
    assert parse(again.links()) == parse(dialog.result_links)  # what is saved is what is shown next time
    same_ground = again.table.cellWidget(2, 2)
    assert isinstance(same_ground, QCheckBox)
    same_ground.setChecked(True)
    assert not again.table.cellWidget(2, 3).isEnabled()  # no walk between cameras that see the same ground
    assert again.links().endswith("stairs = yard")


@pytest.mark.parametrize(("first", "second", "message"), [
    ("hall", "hall", "a camera is always linked with itself"),
    ("hall", "", "a camera name is missing"),
])
def test_a_wrong_row_is_refused_with_one_line_and_the_dialog_stays(qtbot, first: str, second: str,
                                                                   message: str) -> None:
    dialog = TopologyDialog("", ["hall", "stairs"], 0.5)
    qtbot.addWidget(dialog)
    row = dialog.add_link()
    for col, name in ((0, first), (1, second)):
        box = dialog.table.cellWidget(row, col)
        assert isinstance(box, QComboBox)
        box.setCurrentText(name)
    ok(qtbot, dialog)
    assert dialog.result_links is None and message in dialog.error.text()


WALK = LinkSuggestion("hall", "yard", False, 12.37, 15.0, 14, "right edge", "left edge")
SAME_GROUND = LinkSuggestion("hall", "stairs", True, 0.0, 0.0, 11, "", "")


def test_learned_links_are_offered_and_added_only_when_the_operator_says(qtbot) -> None:
    dialog = TopologyDialog("entrance ~ hall : 8", ["entrance", "hall", "stairs", "yard"], 0.5)
    qtbot.addWidget(dialog)
    dialog.set_suggestions([WALK, SAME_GROUND])
    assert len(dialog.suggestion_buttons) == 2 and dialog.table.rowCount() == 1  # offered, not added
    labels = " ".join(label.text() for label in dialog.suggestion_box.findChildren(QLabel))
    assert "leave at the right edge and enter at the left edge after 15.0 s" in labels
    qtbot.mouseClick(dialog.suggestion_buttons[0], Qt.MouseButton.LeftButton)
    assert dialog.table.rowCount() == 2 and not dialog.suggestion_buttons[0].isEnabled()
    ok(qtbot, dialog)
    assert parse(dialog.result_links) == parse("entrance ~ hall : 8; hall ~ yard : 12.3")  # never above the shortest


@pytest.mark.parametrize(("suggestions", "note"), [(None, NOT_RUNNING), ((), NOTHING_LEARNED)])
def test_without_suggestions_the_dialog_says_why(qtbot, suggestions, note: str) -> None:
    dialog = TopologyDialog("", ["hall", "yard"], 0.5)
    qtbot.addWidget(dialog)
    dialog.set_suggestions([WALK])
    dialog.set_suggestions(suggestions)  # a later answer replaces the earlier one
    qtbot.waitUntil(lambda: not dialog.suggestion_box.findChildren(QPushButton))
    assert dialog.suggestion_note.text() == note and not dialog.suggestion_buttons


def test_the_window_offers_what_the_running_cameras_learned(qtbot, make_window, app_settings) -> None:
    window = make_window(app_settings)
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    learned = LinkSuggestion("vtest_excerpt", "yard", False, 9.0, 11.0, 12, "right edge", "left edge")
    done: list[bool] = []

    def remember(pipeline) -> bool:
        pipeline.regrouping.reassociator.suggestions = (learned,)  # as a re-association pass leaves them
        return True
    window.client.submit(remember, done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    dialog = window.topology.dialog()
    qtbot.waitUntil(lambda: bool(dialog.suggestion_buttons), timeout=WAIT_MS)
    qtbot.mouseClick(dialog.suggestion_buttons[0], Qt.MouseButton.LeftButton)
    ok(qtbot, dialog)
    saved = load_settings(window.settings_file)[0].pipeline["matcher.camera_links"]
    assert parse(saved) == parse("vtest_excerpt = vtest_excerpt-2; vtest_excerpt ~ yard : 9")
    running: list[str] = []
    window.client.submit(lambda p: p.matcher.links.describe(), running.append)
    qtbot.waitUntil(lambda: bool(running), timeout=WAIT_MS)
    assert parse(running[0]) == parse(saved)


def test_the_window_keeps_the_topology_and_the_running_matcher_uses_it(qtbot, make_window, app_settings) -> None:
    window = make_window(app_settings)
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    window.topology.set_links("gate ~ yard : 12")
    seen: list[str] = []
    window.client.submit(lambda p: p.matcher.links.describe(), seen.append)
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    assert seen == ["gate ~ yard : 12"]  # no restart: the matcher has it from its next frame
    settings, _ = load_settings(window.settings_file)
    assert settings.pipeline["matcher.camera_links"] == "gate ~ yard : 12"
    window.topology.set_links("")
    assert "matcher.camera_links" not in load_settings(window.settings_file)[0].pipeline
