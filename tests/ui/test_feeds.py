"""The video wall's geometry: layouts, maximising, mapping clicks back to picture pixels."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt

from reid_desktop.core.types import FrameResult, SourceState, SourceStatus, TrackedPerson
from reid_desktop.ui.feeds import FeedGrid, FeedView, identity_colour


def person(track_id: int, box: tuple[float, float, float, float], identity: int | None) -> TrackedPerson:
    return TrackedPerson(track_id, np.array(box, np.float32), 0.9, identity, 1.0)


def test_clicks_map_to_the_person_under_the_cursor(qtbot) -> None:
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.resize(800, 300)  # wider than the 4:3 picture: letterboxed left and right
    image = np.zeros((480, 640, 3), np.uint8)
    outer, inner = person(1, (100, 100, 300, 400), 7), person(2, (150, 150, 200, 250), 9)
    feed.show_result(FrameResult("cam", 0, 0.0, image, (outer, inner)))
    assert feed.picture_rect().x() > 0 and feed.picture_rect().height() == 300
    assert feed.person_at(feed.widget_point(175, 200)) is inner  # the smaller box wins where they overlap
    assert feed.person_at(feed.widget_point(120, 380)) is outer
    assert feed.person_at(feed.widget_point(500, 50)) is None
    assert feed.person_at(QPointF(2, 150)) is None  # the black border is not the picture
    crop = feed.crop_of(outer)
    assert crop is not None and crop.shape == (300, 200, 3)
    with qtbot.waitSignal(feed.person_clicked) as clicked:
        qtbot.mouseClick(feed, Qt.MouseButton.LeftButton, pos=feed.widget_point(175, 200).toPoint())
    assert clicked.args[0] == "cam" and clicked.args[1] is inner


def test_states_and_fps_are_shown(qtbot) -> None:
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.set_status(SourceStatus("cam", SourceState.FAILED, "file not found: x.mp4"))
    assert feed.fps == 0.0
    feed.grab()  # paints the failure banner without a picture
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    for index in range(5):
        feed.show_result(FrameResult("cam", index, 0.0, np.zeros((48, 64, 3), np.uint8)))
        qtbot.wait(50)
    assert feed.fps > 1.0
    assert identity_colour(3) == identity_colour(3) != identity_colour(4)


def test_grid_layouts_and_maximise(qtbot) -> None:
    grid = FeedGrid()
    qtbot.addWidget(grid)
    grid.resize(1200, 900)
    for name in "abcde":
        grid.add_feed(FeedView(name, name))
    grid.set_layout_mode("2x2")
    assert [f.source_id for f in grid.visible_feeds()] == ["a", "b", "c", "d"]
    grid.set_layout_mode("3x3")
    assert len(grid.visible_feeds()) == 5 and grid.columns(5) == 3
    grid.set_layout_mode("1")
    assert [f.source_id for f in grid.visible_feeds()] == ["a"]
    grid.set_layout_mode("auto")
    assert len(grid.visible_feeds()) == 5 and grid.columns(5) in (2, 3)
    assert grid.columns(1) == 1
    qtbot.mouseDClick(grid.feeds["c"], Qt.MouseButton.LeftButton)
    assert [f.source_id for f in grid.visible_feeds()] == ["c"]
    qtbot.mouseDClick(grid.feeds["c"], Qt.MouseButton.LeftButton)
    assert len(grid.visible_feeds()) == 5
    grid.remove_feed("a")
    assert "a" not in grid.feeds and len(grid.visible_feeds()) == 4
