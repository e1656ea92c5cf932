"""Processing nodes' cameras watched live on this station.

The node does the analysis; the station opens the camera's stream itself (a :class:`VideoSource` of its
own, cut to the region the node cuts) and draws over its pictures the boxes the node publishes
(core/store/live_boxes.py), scaled to its picture. The stream is opened when the node's first boxes arrive, since
they say which region of the picture the node analyses. A recording played on both sides is kept in step
with the node by seeking to where the node is. Boxes that stop coming (the node went down) are taken off
the picture after :data:`BOXES_STALE_S`. What cannot be opened here (a webcam of the node, a file only the
node has, a stream whose password this station lacks) is said in one line: only its history is here.

Decoding and listening run on their own threads; like the engine, they hand over only the newest picture and
the newest boxes per camera, and the GUI thread takes them at the display's rate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer, Signal

from reid_desktop.core.capture.sources import SourceKind, SourceSpec, VideoSource
from reid_desktop.core.config import SourceOptions
from reid_desktop.core.credentials import load_secret_url, save_secret_url
from reid_desktop.core.redaction import strip_secrets
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.interface import CameraHealth
from reid_desktop.core.store.live_boxes import LiveBoxes, LiveListener, hides_credentials, remote_source_id, station_uri
from reid_desktop.core.types import Frame, SourceState, SourceStatus
from reid_desktop.ui.engine import Latest
from reid_desktop.ui.feeds import FeedView

log = logging.getLogger(__name__)

BOXES_STALE_S = 2.0  # boxes older than this are taken off the picture: the node stopped publishing them
IN_STEP_S = 1.0  # a recording further than this from where the node is gets seeked there
REOPEN_MIN_S = 10.0  # a camera's stream is reopened for a new region at most this often (sessions are scarce)


@dataclass
class _Watched:
    camera: CameraHealth
    uri: str
    feed: FeedView
    source: VideoSource | None = None
    region: tuple[float, float, float, float] | None = None
    picture: Frame | None = None
    boxes: LiveBoxes | None = None
    boxes_at: float = field(default_factory=time.monotonic)
    opened_at: float = 0.0  # monotonic time the stream was last (re)opened


class RemoteFeeds(QObject):
    """Node cameras shown in this window's wall; one listener for all of them."""

    _statuses_ready = Signal(object)  # SourceStatus from a reader thread
    _boxes_ready = Signal()  # new boxes wait in ``boxes``

    def __init__(self, options: SourceOptions | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.options = options or SourceOptions(realtime=True, loop=True)
        self.watched: dict[str, _Watched] = {}
        self.pictures: Latest[Frame] = Latest()
        self.boxes: Latest[LiveBoxes] = Latest()
        self._listener: LiveListener | None = None
        self._secrets: dict[str, str] = {}  # full URLs given in this session (kept here too when there is no keyring)
        self._location: PostgresLocation | None = None
        self._statuses_ready.connect(self._on_status)
        self._boxes_ready.connect(self._take_boxes)
        self._stale_timer = QTimer(self)
        self._stale_timer.setInterval(500)
        self._stale_timer.timeout.connect(self._drop_stale_boxes)
        self._stale_timer.start()

    def playable(self, camera: CameraHealth) -> tuple[str | None, str]:
        """The address this station opens for ``camera``, or None and why only its history is here."""
        source_id = remote_source_id(camera.node, camera.name)
        secret = None
        if hides_credentials(camera.uri):
            secret = self._secrets.get(source_id) or load_secret_url(source_id, strip_secrets(camera.uri))
        return station_uri(camera.node, camera.uri, secret)

    def remember_secret(self, camera: CameraHealth, full_url: str) -> None:
        """The operator gave this camera's credentials: kept in the keyring when there is one, here for the session."""
        source_id = remote_source_id(camera.node, camera.name)
        self._secrets[source_id] = full_url
        save_secret_url(source_id, full_url)

    def watch(self, location: PostgresLocation, camera: CameraHealth, uri: str, feed: FeedView) -> None:
        """Show ``camera`` in ``feed``, opened at ``uri`` (what :meth:`playable` said)."""
        if location != self._location:
            self.close()
            self._location = location
        if self._listener is None:
            self._listener = LiveListener(location, self._deliver)
            self._listener.start()
        self.watched[feed.source_id] = _Watched(camera, uri, feed)
        self._listener.watch(feed.source_id)
        feed.set_status(SourceStatus(feed.source_id, SourceState.CONNECTING,
                                     f"waiting for node {camera.node}'s boxes of this camera"))

    def unwatch(self, source_id: str) -> None:
        watched = self.watched.pop(source_id, None)
        if watched is None:
            return
        if watched.source is not None:
            watched.source.stop(timeout=0.0)  # it ends after its current read: the GUI does not wait
        if self._listener is not None:
            self._listener.watch(source_id, False)
            if not self.watched:  # nothing left to hear: its connection goes
                self._listener.stop(wait=False)
                self._listener = None

    def close(self) -> None:
        """Stop every stream and the listener (the window closes, or the database changed)."""
        for source_id in list(self.watched):
            self.unwatch(source_id)

    # -- from other threads ---------------------------------------------------------------------------

    def _deliver(self, boxes: LiveBoxes) -> None:
        if self.boxes.put(boxes):
            self._boxes_ready.emit()

    # -- on the GUI thread ----------------------------------------------------------------------------

    def _take_boxes(self) -> None:
        for boxes in self.boxes.take():
            watched = self.watched.get(boxes.source_id)
            if watched is None:
                continue
            if watched.source is None:
                self._open(watched, boxes.region)
            elif watched.region != boxes.region:
                if time.monotonic() - watched.opened_at < REOPEN_MIN_S:
                    continue  # boxes of another region do not fit this picture; a flapping region is not followed
                self._open(watched, boxes.region)
            watched.boxes, watched.boxes_at = boxes, time.monotonic()
            if watched.picture is not None:
                watched.feed.show_result(boxes.on_picture(watched.picture.image))
                self._keep_in_step(watched)

    def _open(self, watched: _Watched, region: tuple[float, float, float, float] | None) -> None:
        if watched.source is not None:
            watched.source.stop(timeout=0.0)  # it ends after its current read: the GUI does not wait
        source_id = watched.feed.source_id
        spec = SourceSpec(watched.uri, source_id, region)
        watched.region, watched.picture, watched.opened_at = region, None, time.monotonic()
        watched.source = VideoSource(spec, self.options, on_status=self._statuses_ready.emit,
                                     on_picture=self.pictures.put).start()
        log.info("watching %s of node %s live", watched.camera.name, watched.camera.node)

    def _keep_in_step(self, watched: _Watched) -> None:
        """A recording shown here goes where the node is in it (a live stream is in step by itself)."""
        boxes, picture, source = watched.boxes, watched.picture, watched.source
        if boxes is None or picture is None or source is None or source.spec.kind is not SourceKind.FILE:
            return
        if boxes.media_time is not None and picture.media_time is not None \
                and abs(boxes.media_time - picture.media_time) > IN_STEP_S:
            source.seek(boxes.media_time)

    def show_pictures(self) -> None:
        """The newest picture of each watched camera (called at the display's rate)."""
        for frame in self.pictures.take():
            watched = self.watched.get(frame.source_id)
            if watched is None:
                continue
            watched.picture = frame
            if watched.feed.isVisible():
                watched.feed.show_picture(frame)

    def _on_status(self, status: SourceStatus) -> None:
        watched = self.watched.get(status.source_id)
        if watched is not None:
            watched.feed.set_status(status)

    def _drop_stale_boxes(self) -> None:
        for watched in self.watched.values():
            if watched.feed.result is not None and time.monotonic() - watched.boxes_at > BOXES_STALE_S:
                watched.feed.result = None
                watched.feed.update()
