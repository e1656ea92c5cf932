"""The video wall's geometry: layouts, maximising, mapping clicks back to picture pixels."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt

from reid_desktop.core.types import FrameResult, SourceState, SourceStatus, TrackedPerson
from reid_desktop.ui.feeds import TARGET_COLOUR, FeedGrid, FeedView, identity_colour, to_qimage


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


def test_a_feed_that_ended_shows_the_targets_set_after_its_last_frame(qtbot) -> None:
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.resize(640, 480)
    walker = person(1, (100, 100, 300, 400), 7)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    feed.show_result(FrameResult("cam", 0, 0.0, np.zeros((480, 640, 3), np.uint8), (walker,)))

    def target_frame_drawn() -> bool:
        image = feed.grab().toImage()
        outside = feed.widget_point(100, 250) - QPointF(4, 0)  # the target frame stands 3 px outside the box
        return image.pixelColor(outside.toPoint()) == TARGET_COLOUR

    feed.target_ids = {7}
    assert not target_frame_drawn()  # while the camera runs, each frame says who is followed
    feed.set_status(SourceStatus("cam", SourceState.ENDED, "end of file"))
    assert feed.is_target(walker) and target_frame_drawn()  # the last picture follows the operator's targets
    feed.target_ids = set()
    assert not feed.is_target(walker) and not target_frame_drawn()


def test_a_live_camera_is_behind_when_analysis_or_display_lags() -> None:
    from reid_desktop.core.types import SourceHealth
    from reid_desktop.ui.health_panel import falls_behind

    def health(state: SourceState, input_fps: float, processed_fps: float) -> SourceHealth:
        return SourceHealth("cam", state, True, input_fps, processed_fps, 0, 0, "", 0.1)

    assert falls_behind(health(SourceState.LIVE, 25.0, 24.0), 0.3) == ""
    assert falls_behind(health(SourceState.LIVE, 25.0, 4.0), 0.3) == "analysed 4.0 of 25.0 fps"
    assert falls_behind(health(SourceState.LIVE, 25.0, 24.0), 3.5) == "pictures 3.5 s late"
    assert falls_behind(health(SourceState.RECONNECTING, 0.0, 0.0), None) == ""  # the state says it already
    unpaced = SourceHealth("file", SourceState.LIVE, False, 25.0, 4.0, 0, 0, "", 9.0)
    assert falls_behind(unpaced, 9.0) == ""  # a file read as fast as analysis goes waits in a queue by design


def test_the_automatic_wall_fits_the_pictures_shape(qtbot) -> None:
    grid = FeedGrid()
    qtbot.addWidget(grid)
    grid.resize(720, 650)
    feeds = [FeedView(name, name) for name in ("left", "right")]
    for feed in feeds:
        grid.add_feed(feed)
    assert grid.columns(2) == 1  # 4:3 pictures until frames arrive: one above the other
    for feed in feeds:  # the demo's halves are portrait pictures: side by side shows them larger
        feed.show_result(FrameResult(feed.source_id, 0, 0.0, np.zeros((576, 422, 3), np.uint8)))
    assert grid.picture_aspect() == 422 / 576 and grid.columns(2) == 2
    assert [f.source_id for f in grid.visible_feeds()] == ["left", "right"]


def shown_box(feed: FeedView, person: TrackedPerson) -> np.ndarray | None:
    """Where the feed draws this person on the shown picture (None: not drawn)."""
    return next((box for p, box in feed.shown_persons() if p is person), None)


def test_pictures_come_at_the_cameras_rate_and_boxes_follow_their_tracks(qtbot) -> None:
    from reid_desktop.core.types import Frame

    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.resize(640, 480)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    image = np.zeros((960, 1280, 3), np.uint8)
    feed.show_result(FrameResult("cam", 0, 100.0, image, (person(1, (100, 100, 200, 300), 7),)))
    feed.show_result(FrameResult("cam", 5, 100.5, image, (person(1, (110, 100, 210, 300), 7),)))  # 20 px/s
    walker = feed.result.persons[0]
    assert feed.analysis_age_s == 0.0 and np.allclose(shown_box(feed, walker), (110, 100, 210, 300))

    # pictures between analyses: the box moves on along the track's motion, for at most a second
    feed.show_picture(Frame("cam", 8, 101.0, np.full((960, 1280, 3), 60, np.uint8)))
    assert feed.analysis_age_s == 0.5 and np.allclose(shown_box(feed, walker), (120, 100, 220, 300))
    assert feed._image.width() <= 700  # scaled down to the cell; boxes stay in the camera's pixels
    assert feed.person_at(feed.widget_point(215, 200)) is walker  # clicks hit the box where it is drawn
    feed.show_picture(Frame("cam", 30, 104.0, np.full((960, 1280, 3), 60, np.uint8)))
    assert np.allclose(shown_box(feed, walker), (130, 100, 230, 300))  # carried for one second, not four
    assert "analysis 3.5 s behind" in feed._rates_text()
    feed.grab()


def test_a_picture_before_the_first_analysis_is_painted_without_boxes(qtbot) -> None:
    from reid_desktop.core.types import Frame

    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.resize(320, 240)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    feed.show_picture(Frame("cam", 0, 1.0, np.full((48, 64, 3), 90, np.uint8)))
    assert feed.result is None and feed.grab().toImage().pixelColor(feed.rect().center()).red() == 90


def test_a_tentative_person_is_drawn_dashed_and_cannot_be_followed_yet(qtbot) -> None:
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.resize(640, 480)
    image = np.zeros((480, 640, 3), np.uint8)
    new = TrackedPerson(5, np.array((300, 100, 400, 400), np.float32), 0.8, None, None, tentative=True)
    feed.show_result(FrameResult("cam", 0, 0.0, image, (person(1, (50, 100, 150, 400), 7), new)))
    assert feed.person_at(feed.widget_point(350, 250)) is None  # one frame old: nothing to follow yet
    assert feed.person_at(feed.widget_point(100, 250)) is not None
    painted = feed.grab().toImage()

    def drawn_share(x: float, colour) -> float:
        """The share of a box's left edge painted in its colour (the picture under it is black)."""
        edge = [painted.pixelColor(feed.widget_point(x, y).toPoint()) for y in range(110, 220)]  # above the banner
        return sum(c.rgb() == colour.rgb() for c in edge) / len(edge)

    assert 0.2 < drawn_share(300, identity_colour(None)) < 0.9  # dashes: the edge is drawn in part
    assert drawn_share(50, identity_colour(7)) > 0.95  # a confirmed track's box: a solid line


def test_in_step_a_picture_waits_for_its_analysis_and_boxes_move_between_analyses(qtbot) -> None:
    """The analysis comes back half a second after its frame, half a second apart: a picture taken between two
    analysed frames is shown once both are in, with each person between where the two analyses put them."""
    import time

    from reid_desktop.core.types import Frame

    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    image = np.zeros((480, 640, 3), np.uint8)
    start = time.time() - 1.0
    feed.show_result(FrameResult("cam", 0, start, image, (person(1, (100, 100, 150, 300), 7),)))
    walker = person(1, (200, 100, 250, 300), 7)
    new = person(2, (400, 100, 450, 300), 8)  # first found on the second analysis
    feed.show_result(FrameResult("cam", 5, start + 0.5, image, (walker, new)))
    assert 0.9 < feed.display_delay_s < 1.5  # the lag (0.5 to 1 s, smoothed) and the interval (0.5 s)
    feed.show_picture(Frame("cam", 2, start + 0.2, image))
    feed.show_picture(Frame("cam", 3, start + 0.3, image))
    assert feed.picture_time == start + 0.5  # still the analysed picture: the camera's wait for their analysis
    def shown_when_due() -> bool:  # the window ticks every feed at its display rate
        feed.tick()
        return feed.picture_time == start + 0.3  # the older one was passed over

    qtbot.waitUntil(shown_when_due, timeout=2000)
    assert np.allclose(shown_box(feed, walker), (160, 100, 210, 300))  # 60 % of the way
    assert shown_box(feed, new) is not None  # past halfway: drawn where it was found
    feed.in_step = False  # live: shown at once, boxes carried along their motion
    feed.show_picture(Frame("cam", 9, start + 0.9, image))
    assert feed.picture_time == start + 0.9 and np.allclose(shown_box(feed, walker), (280, 100, 330, 300))


def test_in_step_a_person_missing_from_the_newer_analysis_is_shown_until_halfway(qtbot) -> None:
    """One analysis did not find a person the one before it did (a weak detection, a person leaving): the pictures
    between the two still show them, up to halfway; after that, the newer analysis stands."""
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    image = np.zeros((480, 640, 3), np.uint8)
    missed = person(2, (400, 100, 450, 300), 8)
    feed.show_result(FrameResult("cam", 0, 100.0, image, (person(1, (100, 100, 150, 300), 7), missed)))
    feed.show_result(FrameResult("cam", 5, 100.5, image, (person(1, (200, 100, 250, 300), 7),)))
    feed._set_picture(to_qimage(image), image.shape, 100.2, None)  # 40 % of the way
    assert np.allclose(shown_box(feed, missed), (400, 100, 450, 300))
    feed._set_picture(to_qimage(image), image.shape, 100.3, None)  # 60 %
    assert shown_box(feed, missed) is None and len(feed.shown_persons()) == 1
    assert feed.crop_of(feed.result.persons[0]) is not None


def test_in_step_the_end_of_a_looping_file_keeps_its_boxes_after_the_start_was_analysed(qtbot) -> None:
    """A looping file started again: its first analysis ends the tracks of its end. The pictures of the end that
    are shown after that analysis came (they waited for their analysis) still carry the end's people, moved along
    their motion; a picture of the new start older than its first analysis has none (nobody is known there)."""
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.set_status(SourceStatus("cam", SourceState.LIVE))
    image = np.zeros((480, 640, 3), np.uint8)
    feed.show_result(FrameResult("cam", 70, 100.0, image, (person(1, (100, 100, 150, 300), 7),), media_time=7.0))
    feed.show_result(FrameResult("cam", 75, 100.5, image, (person(1, (110, 100, 160, 300), 7),), media_time=7.5))
    feed.show_result(FrameResult("cam", 3, 101.1, image, (person(1, (300, 100, 350, 300), 9),), media_time=0.3))
    walker_at_the_end = feed._ended[0].persons[0]
    feed._set_picture(to_qimage(image), image.shape, 100.75, 7.75)  # the file's end, a quarter second on
    assert np.allclose(shown_box(feed, walker_at_the_end), (115, 100, 165, 300))  # 20 px/s along its motion
    assert feed.person_at(feed.widget_point(140, 200)) is walker_at_the_end
    assert feed.crop_of(walker_at_the_end) is not None
    feed._set_picture(to_qimage(image), image.shape, 100.9, 0.1)  # the new start, before its first analysis
    assert feed.shown_persons() == []


def test_a_box_carried_along_its_motion_stops_at_the_picture_edge(qtbot) -> None:
    """A person walking out of view: on newer pictures their box moves on with them, clipped to the picture, and
    is gone once it would lie mostly outside (it once slid on past the edge, a box on nobody)."""
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    feed.in_step = False
    image = np.zeros((480, 640, 3), np.uint8)
    feed.show_result(FrameResult("cam", 0, 100.0, image, (person(1, (540, 100, 600, 300), 7),)))
    feed.show_result(FrameResult("cam", 5, 100.5, image, (person(1, (580, 100, 640, 300), 7),)))  # 80 px/s
    walker = feed.result.persons[0]
    feed._set_picture(to_qimage(image), image.shape, 100.75, None)
    assert np.allclose(shown_box(feed, walker), (600, 100, 640, 300))  # 20 px of 60 left the picture
    feed._set_picture(to_qimage(image), image.shape, 101.0, None)
    assert shown_box(feed, walker) is None  # 40 of 60 out: walked out of view


def test_in_step_a_tentative_person_is_drawn_from_the_analysis_that_found_them(qtbot) -> None:
    """A track seen on one analysed frame so far may be a person just walking in, or no person at all: the pictures
    before that frame do not show it, even past halfway (a confirmed track first found there would be)."""
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    image = np.zeros((480, 640, 3), np.uint8)
    new = TrackedPerson(5, np.array((600, 100, 640, 300), np.float32), 0.5, None, None, tentative=True)
    feed.show_result(FrameResult("cam", 0, 100.0, image, (person(1, (100, 100, 150, 300), 7),)))
    feed.show_result(FrameResult("cam", 5, 100.5, image, (person(1, (200, 100, 250, 300), 7), new)))
    feed._set_picture(to_qimage(image), image.shape, 100.4, None)  # 80 % of the way
    assert shown_box(feed, new) is None and len(feed.shown_persons()) == 1
    feed._set_picture(to_qimage(image), image.shape, 100.5, None)  # the analysed picture
    assert np.allclose(shown_box(feed, new), (600, 100, 640, 300))


def test_a_person_given_a_while_ago_is_cut_from_the_last_analysed_frame(qtbot) -> None:
    """The window asks for the crop of a person it was given a while ago (to search with it): the analysis they were
    found on is no longer kept, so the crop comes from the last analysed frame, at the box they were given (it was
    empty: the window's search from a clicked person failed)."""
    feed = FeedView("cam", "cam")
    qtbot.addWidget(feed)
    image = np.zeros((480, 640, 3), np.uint8)
    clicked = person(1, (100, 100, 150, 300), 7)
    feed.show_result(FrameResult("cam", 0, 100.0, image, (clicked,)))
    newest = image.copy()
    newest[100:300, 100:150] = 200
    for index in (5, 10):
        feed.show_result(FrameResult("cam", index, 100.0 + index / 10, newest, (person(1, (110, 100, 160, 300), 7),)))
    patch = feed.crop_of(clicked)
    assert patch is not None and patch.mean() > 150
