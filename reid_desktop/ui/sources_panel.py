"""The list of cameras with their state; actions on them are the main window's (it owns the engine).

On a shared database a second list shows every processing node's cameras with their node and health; their
history (sightings, timelines, targets, search) is on this station, and a double-click (or "Watch live")
shows one live in the wall, with the node's boxes (ui/remote_feeds.py).
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QMenu, QToolBar, QVBoxLayout, QWidget

from reid_desktop.core.store.interface import CameraHealth
from reid_desktop.core.types import SourceState

_STATE_MARKS = {
    SourceState.CONNECTING: "◌", SourceState.LIVE: "●", SourceState.RECONNECTING: "↻",
    SourceState.ENDED: "■", SourceState.FAILED: "✖",
}


class SourcesPanel(QWidget):
    watch_requested = Signal(object, bool)  # CameraHealth of a node's camera; True: watch it live, False: stop

    def __init__(self, actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in actions:
            bar.addAction(action)
        layout.addWidget(bar)
        self.list = QListWidget()
        self.list.setAlternatingRowColors(True)
        layout.addWidget(self.list)
        self.nodes_title = QLabel("On processing nodes (double-click to watch)")
        self.nodes_title.setToolTip("These cameras are processed by other machines on the shared database. Their "
                                    "people, timelines and targets are here; double-click one to watch it live: "
                                    "this station opens its stream and draws the boxes its node publishes.")
        self.nodes = QListWidget()
        self.nodes.setAlternatingRowColors(True)
        self.nodes.itemDoubleClicked.connect(lambda item: self._request(item, True))
        self.nodes.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.nodes.customContextMenuRequested.connect(self._node_menu)
        self.watching: set[tuple[str, str]] = set()  # (node, camera) shown live in the wall
        self._node_cameras: dict[tuple[str, str], CameraHealth] = {}
        layout.addWidget(self.nodes_title)
        layout.addWidget(self.nodes)
        self.set_node_cameras([])

    def _item(self, name: str) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                return item
        return None

    def names(self) -> list[str]:
        return [self.list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.list.count())]

    def current(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def add(self, name: str, display_uri: str) -> None:
        item = QListWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, name)
        item.setData(Qt.ItemDataRole.UserRole + 1, display_uri)
        self.list.addItem(item)
        self.set_state(name, SourceState.CONNECTING, "", paused=False)
        self.list.setCurrentItem(item)

    def remove(self, name: str) -> None:
        item = self._item(name)
        if item is not None:
            self.list.takeItem(self.list.row(item))

    def rename(self, old: str, new: str) -> None:
        item = self._item(old)
        if item is not None:
            item.setData(Qt.ItemDataRole.UserRole, new)
            item.setText(item.text().replace(old, new, 1))

    def set_state(self, name: str, state: SourceState, reason: str, paused: bool) -> None:
        item = self._item(name)
        if item is None:
            return
        mark = "⏸" if paused else _STATE_MARKS[state]
        label = "paused" if paused else state.value
        item.setText(f"{mark}  {name} — {label}")
        uri = item.data(Qt.ItemDataRole.UserRole + 1)
        item.setToolTip(f"{uri}\n{label}" + (f": {reason}" if reason else ""))
        if state is SourceState.FAILED and not paused:
            item.setForeground(Qt.GlobalColor.red)
        else:
            item.setData(Qt.ItemDataRole.ForegroundRole, None)

    def set_node_cameras(self, cameras: list[CameraHealth]) -> None:
        """Every node's cameras, as the database says now (the list is hidden when there are none)."""
        current = self.nodes.currentItem()
        selected = _key(current) if current is not None else None
        self.nodes.clear()
        self._node_cameras = {(camera.node, camera.name): camera for camera in cameras}
        for camera in cameras:
            key = (camera.node, camera.name)
            up = camera.node_up and camera.state == SourceState.LIVE.value
            rate = f", {camera.frames_per_s:.1f} fps" if camera.node_up else ""
            shown = "  ▶ watching" if key in self.watching else ""
            item = QListWidgetItem(f"{'●' if up else '✖' if not camera.node_up else '◌'}  {camera.node} / "
                                   f"{camera.name} — {camera.state}{rate}{shown}")
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(f"{camera.uri}\nprocessed by node {camera.node}"
                            f"{'' if camera.node_up else ' (down: no heartbeat)'}\n"
                            "Its sightings, timelines and targets are on this station; double-click to watch it "
                            "live with the node's boxes")
            if not camera.node_up:
                item.setForeground(Qt.GlobalColor.red)
            self.nodes.addItem(item)
            if key == selected:
                self.nodes.setCurrentItem(item)
        self.nodes_title.setVisible(bool(cameras))
        self.nodes.setVisible(bool(cameras))

    def node_camera(self, node: str, name: str) -> CameraHealth | None:
        return self._node_cameras.get((node, name))

    def node_camera_texts(self) -> list[str]:
        return [self.nodes.item(row).text() for row in range(self.nodes.count())]

    def _request(self, item: QListWidgetItem, watch: bool) -> None:
        camera = self._node_cameras.get(_key(item))
        if camera is not None:
            self.watch_requested.emit(camera, watch)

    def _node_menu(self, where: QPoint) -> None:
        item = self.nodes.itemAt(where)
        if item is None:
            return
        menu = QMenu(self)
        watching = _key(item) in self.watching
        action = menu.addAction("Stop watching" if watching else "Watch live")
        if menu.exec(self.nodes.viewport().mapToGlobal(where)) is action:
            self._request(item, not watching)


def _key(item: QListWidgetItem) -> tuple[str, str]:
    """(node, camera) of an item of the nodes' list."""
    node, name = item.data(Qt.ItemDataRole.UserRole)
    return str(node), str(name)
