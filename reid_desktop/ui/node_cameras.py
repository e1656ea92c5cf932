"""Other machines' cameras on a shared database: listed with their health, and watched live in this wall.

Every :data:`NODES_INTERVAL_MS` the nodes' health rows are read in the background and listed in the sources panel.
A camera the operator watches becomes a feed here (:class:`RemoteFeeds` opens its stream and draws the node's
boxes); the ones watched when the window last closed open again once the nodes' list names them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QWidget

from reid_desktop.core.redaction import join_credentials, redact, strip_secrets
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.interface import CameraHealth
from reid_desktop.core.store.live_boxes import hides_credentials, remote_source_id
from reid_desktop.ui.banner import MessageBanner
from reid_desktop.ui.dialogs import StreamDialog
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.feeds import FeedGrid, FeedView
from reid_desktop.ui.remote_feeds import RemoteFeeds
from reid_desktop.ui.settings import AppSettings
from reid_desktop.ui.sources_panel import SourcesPanel

NODES_INTERVAL_MS = 2000  # processing nodes write their health every 2 s


class NodeCameras(QObject):
    """The nodes' cameras of the sources panel and the ones of them in the wall."""

    status_message = Signal(str, int)

    def __init__(self, client: EngineClient, panel: SourcesPanel, grid: FeedGrid, banner: MessageBanner,
                 add_feed: Callable[[str, str], FeedView], remove_feed: Callable[[str], None],
                 settings: Callable[[], AppSettings], save: Callable[[], None], window: QWidget) -> None:
        super().__init__(window)
        self.client, self.panel, self.grid, self.banner = client, panel, grid, banner
        self._add_feed, self._remove_feed = add_feed, remove_feed
        self._settings, self._save, self._window = settings, save, window
        self.remote = RemoteFeeds(dataclasses.replace(settings().pipeline_config().sources, realtime=True, loop=True),
                                  parent=self)
        self._watch_at_start = set(settings().watched_node_cameras)  # opened again once the nodes' list names them
        self._reading = False
        self._timer = QTimer(self)
        self._timer.setInterval(NODES_INTERVAL_MS)
        self._timer.timeout.connect(self.read)
        self._timer.start()
        panel.watch_requested.connect(self._on_watch_requested)

    def read(self) -> None:
        """The processing nodes' cameras and health, read in the background (one read at a time)."""
        if not isinstance(self._settings().history, PostgresLocation):
            self.panel.set_node_cameras([])
            return
        if self._reading:
            return
        self._reading = True

        def shown(cameras: list[CameraHealth] | None) -> None:
            self._reading = False
            self.panel.set_node_cameras(cameras or [])
            self._watch_again(cameras or [])

        def failed(message: str) -> None:
            self._reading = False
            self.status_message.emit(f"Processing nodes unknown: {message}", NODES_INTERVAL_MS)

        self.client.read(lambda store: store.node_cameras(), shown, on_error=failed)

    def _on_watch_requested(self, camera: CameraHealth, watch: bool) -> None:
        if watch:
            self.watch(camera)
        else:
            self.stop_watching(remote_source_id(camera.node, camera.name))

    def _watch_again(self, cameras: list[CameraHealth]) -> None:
        """The node cameras watched when the window last closed, once the nodes' list names them (no questions:
        one whose password this station lacks is left to the operator)."""
        for camera in cameras:
            source_id = remote_source_id(camera.node, camera.name)
            if source_id in self._watch_at_start:
                self._watch_at_start.discard(source_id)
                self.watch(camera, ask=False)

    def watch(self, camera: CameraHealth, ask: bool = True) -> str | None:
        """Show a node's camera live in the wall (brought forward when it is there already); its feed's name, or
        None when this station cannot open its video (the banner says why: its history is here all the same).
        ``ask``: a password this station lacks is asked for."""
        source_id = remote_source_id(camera.node, camera.name)
        settings = self._settings()
        if source_id in self.remote.watched:
            self.grid.bring_forward(source_id, "first")
            return source_id
        uri, why_not = self.remote.playable(camera)
        if uri is None and ask and hides_credentials(camera.uri) and self._ask_password(camera):
            uri, why_not = self.remote.playable(camera)
        if uri is None or not isinstance(settings.history, PostgresLocation):
            self.banner.show_message(f"Only the history of {camera.name} (node {camera.node}) is on this station: "
                                     f"{why_not or 'not on a shared database'}")
            return None
        feed = self._add_feed(source_id, f"{camera.name} @ {camera.node}")
        feed.in_step = False  # the node's boxes carry the node's clock, not the moments of these pictures
        self.remote.watch(settings.history, camera, uri, feed)
        self.panel.watching.add((camera.node, camera.name))
        if source_id not in settings.watched_node_cameras:
            settings.watched_node_cameras.append(source_id)
            self._save()
        self.grid.bring_forward(source_id, "first")
        self.status_message.emit(f"Watching {camera.name} of node {camera.node} live", 4000)
        return source_id

    def _ask_password(self, camera: CameraHealth) -> bool:
        """A node's camera whose stream needs credentials: the operator gives them once, the keyring keeps them."""
        dialog = StreamDialog(self._window, set())
        dialog.setWindowTitle(f"Password of {camera.name} (node {camera.node})")
        dialog.name.setText(remote_source_id(camera.node, camera.name))
        dialog.url.setText(strip_secrets(camera.uri))
        dialog.name.setReadOnly(True)
        dialog.url.setReadOnly(True)
        if not dialog.exec():
            return False
        _name, url, user, password = dialog.values()
        full = join_credentials(url, user, password)
        if redact(full) != camera.uri:
            self.banner.show_message(f"These credentials do not fit {camera.uri}: give the user name and password "
                                     "the node uses")
            return False
        self.remote.remember_secret(camera, full)
        return True

    def stop_watching(self, source_id: str, by_operator: bool = True) -> None:
        """Take a node's camera off the wall; ``by_operator``: it is not opened again at the next start."""
        watched = self.remote.watched.get(source_id)
        if watched is None:
            return
        self.remote.unwatch(source_id)
        self.panel.watching.discard((watched.camera.node, watched.camera.name))
        self._remove_feed(source_id)
        settings = self._settings()
        if by_operator and source_id in settings.watched_node_cameras:
            settings.watched_node_cameras.remove(source_id)
            self._save()

    def stop(self) -> None:
        """Every node camera off the wall, their streams and listener closed; the list stays for the next start."""
        for source_id in list(self.remote.watched):
            self.stop_watching(source_id, by_operator=False)
        self.remote.close()

    def forget(self) -> None:
        """Another database: its nodes' cameras, not these (nothing is opened again)."""
        self.stop()
        self._watch_at_start = set()
