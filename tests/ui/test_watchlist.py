"""The watch list: edited in a dialog, kept in the settings, and an alert when a person like one appears."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from reid_desktop.ui.settings import WatchedPerson, load_settings
from reid_desktop.ui.watchlist_dialog import WatchListDialog
from tests.ui.test_main_window import WAIT_MS, clearest_person


def test_people_are_added_with_their_pictures_and_a_threshold(qtbot, tmp_path: Path) -> None:
    picture = tmp_path / "coat.png"
    cv2.imwrite(str(picture), (255 * (cv2.getGaussianKernel(64, 8) @ cv2.getGaussianKernel(32, 8).T)).astype("uint8"))
    dialog = WatchListDialog([WatchedPerson("red cap", [str(picture)], 0.8)], 0.62)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 1
    assert dialog.add_person("red cap", [str(picture)]).startswith("choose a name not used yet")
    assert dialog.add_person("dark coat", []) == "give 1 to 20 pictures"
    assert dialog.add_person("dark coat", [str(picture)]) == ""
    assert [(p.name, p.threshold) for p in dialog.people] == [("red cap", 0.8), ("dark coat", 0.62)]
    dialog.table.cellWidget(1, 2).setValue(0.7)
    assert dialog.people[1].threshold == 0.7


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "pictures": [], "threshold": 1.5}, r"threshold must be in \(0, 1\]"),
    ({"name": "x", "pictures": "a.png"}, "must be a list of text"),
    ({"name": "x", "pictures": [3]}, "must be a list of text"),
])
def test_a_broken_watch_list_in_the_settings_is_refused_with_one_line(tmp_path: Path, entry: dict,
                                                                      message: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "watch_list": [entry]}))
    settings, warning = load_settings(path)
    assert settings.watch_list == [] and warning and re.search(message, warning)


@pytest.mark.slow
def test_a_picture_of_someone_in_the_demo_raises_a_watch_list_alert(qtbot, make_window, app_settings,
                                                                     demo_clip: Path, tmp_path: Path) -> None:
    window = make_window(app_settings)
    (name,) = window.sources.add_files([str(demo_clip)])
    feed = window.grid.feeds[name]
    qtbot.waitUntil(lambda: clearest_person(feed) is not None, timeout=WAIT_MS)
    person = clearest_person(feed)
    picture = feed.crop_of(person)
    assert picture is not None
    cv2.imwrite(str(tmp_path / "them.png"), picture)
    window.watch_list.set([WatchedPerson("them", [str(tmp_path / "them.png")], 0.75)])
    window.sources.set_every_frame(name, True)  # the clip from the start, every frame: they walk in again
    panel = window.alerts_panel
    qtbot.waitUntil(lambda: any("watch list: them" in panel.list.item(i).text() for i in range(panel.list.count())),
                    timeout=WAIT_MS)
    assert load_settings(window.settings_file)[0].watch_list[0].name == "them"
