"""A processing node's camera watched live on a station: a real RTSP camera (with a password), a real PostgreSQL
server, the node's heartbeat and published boxes, and the window opening the stream itself, drawing the node's
boxes on its own pictures, and following a person clicked there."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.live_boxes import LivePublisher
from reid_desktop.core.store.node_health import NodeHealth
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.types import FrameResult, SourceState, TrackedPerson
from reid_desktop.ui.dialogs import StreamDialog
from reid_desktop.ui.settings import load_settings
from tests.core.test_shared_history import begin, sight
from tests.pg_server import PASSWORD
from tests.tools.rtsp import RtspServer, free_port, needs_rtsp
from tests.ui.test_main_window import WAIT_MS, click_person

REGION = (0.5, 0.0, 1.0, 1.0)  # the node analyses the right half of the camera's picture
NODE_SIZE = (576, 384)  # height, width of that half of the 768 x 576 clip


class FakeAnalysis:
    """The node's side of the boxes: a real publisher, fed with persons at known places every 50 ms."""

    def __init__(self, publisher: LivePublisher, persons: tuple[TrackedPerson, ...]) -> None:
        self.publisher, self.persons = publisher, persons
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        image, frame = np.zeros((*NODE_SIZE, 3), np.uint8), 0
        while not self._stop.wait(0.05):
            frame += 1
            self.publisher.publish(FrameResult("street", frame, time.time(), image, self.persons))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def node_camera(pg_url: str, long_clip: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NodeHealth, int]]:
    """A camera with a password, run by node ``node-east``; yields the node and an identity it has seen."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    port = free_port()
    server = RtspServer(long_clip, port, user="viewer", password="s3cret")
    server.start()
    location = parse_postgres_url(pg_url)
    node = NodeHealth(location, "node-east")
    node.add_camera(SourceSpec(f"rtsp://viewer:s3cret@127.0.0.1:{port}/cam", "street", REGION))
    node.add_camera(SourceSpec("0", "desk"))
    with PgSightingStore(location) as store:
        identity = store.allocate_identity_id()
        assert identity is not None
        sight(store, begin(store), "street", 1, 0, identity)
    node.start()
    node.camera_state("street", "live")
    try:
        yield node, identity
    finally:
        node.stop()
        server.stop()


def give_password(qtbot, user: str, password: str) -> None:
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, StreamDialog) and dialog.url.isReadOnly()
    assert "s3cret" not in dialog.url.text()
    dialog.user.setText(user)
    dialog.password.setText(password)
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)


@needs_rtsp
def test_a_station_shows_a_node_camera_live_with_the_nodes_boxes_and_follows_a_click(
        qtbot, make_window, app_settings, pg_url: str, node_camera, memory_keyring, tmp_path: Path) -> None:
    node, identity = node_camera
    publisher = LivePublisher(node.location, node.name, {"street": REGION})
    publisher.start()
    walker = TrackedPerson(4, np.array([100, 150, 220, 480], np.float32), 0.9, identity, 0.8)
    followed = TrackedPerson(9, np.array([250, 100, 330, 300], np.float32), 0.7, identity + 1000, 0.8,
                             is_target=True)
    analysis = FakeAnalysis(publisher, (walker, followed))
    try:
        app_settings.database = pg_url
        window = make_window(app_settings)
        panel = window.sources.panel
        qtbot.waitUntil(lambda: any("street — live" in t for t in panel.node_camera_texts()), timeout=WAIT_MS)

        # the webcam of the node: its history only, said in one line
        desk = panel.node_camera("node-east", "desk")
        assert desk is not None and window.node_cameras.watch(desk) is None
        assert any("Only the history of desk (node node-east)" in m and "webcam" in m for m in window.banner.messages)

        # the stream needs the node's password: asked once (the keyring keeps it), then the feed opens it
        row = next(i for i, t in enumerate(panel.node_camera_texts()) if "street" in t)
        item = panel.nodes.item(row)
        QTimer.singleShot(200, lambda: give_password(qtbot, "viewer", "s3cret"))
        where = panel.nodes.visualItemRect(item).center()
        qtbot.mouseClick(panel.nodes.viewport(), Qt.MouseButton.LeftButton, pos=where)
        qtbot.mouseDClick(panel.nodes.viewport(), Qt.MouseButton.LeftButton, pos=where)
        feed = window.grid.feeds.get("node-east/street")
        assert feed is not None and feed.title == "street @ node-east"
        assert memory_keyring.secrets[("reid-desktop", "source:node-east/street")].startswith("rtsp://viewer:s3cret@")
        qtbot.waitUntil(lambda: feed.state is SourceState.LIVE and feed.result is not None, timeout=WAIT_MS)
        assert feed.picture_aspect == pytest.approx(NODE_SIZE[1] / NODE_SIZE[0], rel=0.02), "cut as the node cuts"
        shown = {p.track_id: p for p in feed.result.persons}
        scale = feed._frame_size.width() / NODE_SIZE[1]
        assert np.allclose(shown[4].box, walker.box * scale, atol=1) and shown[9].is_target
        qtbot.waitUntil(lambda: feed.display_fps > 5 and feed.fps > 3, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: any("street" in t and "▶ watching" in t for t in panel.node_camera_texts()),
                        timeout=10_000)  # the list says which are shown
        if os.environ.get("REID_SCREENSHOTS"):
            window.grab().save(str(Path(os.environ["REID_SCREENSHOTS"]) / "remote-feed.png"))

        # the next start opens it again, with the password the keyring kept
        assert window.settings.watched_node_cameras == ["node-east/street"]
        window.close()
        settings, warning = load_settings(tmp_path / "settings.json")
        assert not warning and settings.watched_node_cameras == ["node-east/street"]
        window = make_window(settings)
        qtbot.waitUntil(lambda: "node-east/street" in window.grid.feeds, timeout=WAIT_MS)
        feed = window.grid.feeds["node-east/street"]
        qtbot.waitUntil(lambda: feed.state is SourceState.LIVE and feed.result is not None, timeout=WAIT_MS)

        # a click on the node's person follows them on every node and station
        click_person(qtbot, feed, next(p for p in feed.result.persons if p.track_id == 4))
        with PgSightingStore(node.location) as store:
            qtbot.waitUntil(lambda: any(i.identity_id == identity and i.is_target for i in store.identities()),
                            timeout=WAIT_MS)

        # the node stops publishing: its boxes leave the picture, the video goes on
        analysis.stop()
        qtbot.waitUntil(lambda: feed.result is None, timeout=10_000)
        assert feed.state is SourceState.LIVE

        window.node_cameras.stop_watching("node-east/street")
        remote = window.node_cameras.remote
        assert "node-east/street" not in window.grid.feeds and not remote.watched
        assert window.settings.watched_node_cameras == [] and remote._listener is None  # its connection went
        qtbot.waitUntil(lambda: not any(t.name == "source:node-east/street" and t.is_alive()
                                        for t in threading.enumerate()), timeout=10_000)
    finally:
        analysis.stop()
        publisher.stop()


def test_a_flapping_region_does_not_reopen_the_cameras_stream(qtbot, pg_url: str, demo_clip: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Payloads that alternate a camera's region (a bug or anyone who can NOTIFY) would reopen its stream on every
    tick and use up the camera's sessions: a new region is followed at most every REOPEN_MIN_S."""
    from reid_desktop.core.store.interface import CameraHealth
    from reid_desktop.core.store.live_boxes import LiveBoxes
    from reid_desktop.ui import remote_feeds
    from reid_desktop.ui.feeds import FeedView

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    remote = remote_feeds.RemoteFeeds()
    feed = FeedView("node-a/gate", "gate")
    qtbot.addWidget(feed)
    camera = CameraHealth("node-a", "gate", str(demo_clip), "running", 10.0, True)
    remote.watch(parse_postgres_url(pg_url), camera, str(demo_clip), feed)
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    try:
        opened = []
        for tick in range(20):
            remote._deliver(LiveBoxes("node-a", "gate", tick, time.time(), None, 384, 576,
                                      (left, right)[tick % 2], ()))
            qtbot.wait(20)
            opened.append(remote.watched["node-a/gate"].source)
        watched = remote.watched["node-a/gate"]
        assert len({id(source) for source in opened}) == 1 and watched.region == left
        monkeypatch.setattr(remote_feeds, "REOPEN_MIN_S", 0.0)  # later: the node's new region is followed
        remote._deliver(LiveBoxes("node-a", "gate", 21, time.time(), None, 384, 576, right, ()))
        qtbot.waitUntil(lambda: watched.region == right, timeout=5000)
        assert watched.source is not opened[-1]
    finally:  # the readers and the listener end before this RemoteFeeds goes: they call into it
        sources = [w.source for w in remote.watched.values() if w.source is not None] + [s for s in opened if s]
        listener = remote._listener
        remote.close()
        for source in sources:
            source.stop(timeout=10)
        if listener is not None:
            listener.stop()
