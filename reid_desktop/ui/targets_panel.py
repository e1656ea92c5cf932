"""Targets (the people being followed) and the timeline of the selected target.

Both panels only display what the main window gives them and say what the operator asked for
through signals; they never touch the database or the engine themselves.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QSize, Qt, Signal, SignalInstance
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core.store.interface import IdentitySummary, TrackSegment
from reid_desktop.core.store.report import format_media_time
from reid_desktop.core.wording import count

THUMB = QSize(48, 96)
ID_ROLE = Qt.ItemDataRole.UserRole


def thumbnail_icon(jpeg: bytes | None) -> QIcon:
    pixmap = QPixmap()
    if jpeg and pixmap.loadFromData(jpeg):
        return QIcon(pixmap.scaled(THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation))
    return QIcon()


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    moment = dt.datetime.fromtimestamp(seconds)
    if moment.date() == dt.date.today():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class TargetsPanel(QWidget):
    """Thumbnail, editable name, first/last seen and cameras of every target."""

    renamed = Signal(int, str)
    untarget_requested = Signal(int)
    merge_requested = Signal(int, int)  # keep, drop
    timeline_requested = Signal(int)
    search_requested = Signal(int)

    COLUMNS = ("Target", "Name", "First seen", "Last seen", "Cameras")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setIconSize(THUMB)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.itemSelectionChanged.connect(self._on_selection_changed)
        layout.addWidget(self.tree)
        buttons = QHBoxLayout()
        self.untarget_button = QPushButton("Stop following")
        self.untarget_button.setToolTip("Remove the selected targets from the list (Del)")
        self.untarget_button.clicked.connect(self._untarget_selected)
        self.merge_button = QPushButton("Merge")
        self.merge_button.setToolTip("The two selected targets are the same person: merge them into the first")
        self.merge_button.clicked.connect(self._merge_selected)
        self.search_button = QPushButton("Find similar")
        self.search_button.setToolTip("Appearance search for the selected target in the recorded history")
        self.search_button.clicked.connect(lambda: self._emit_selected(self.search_requested))
        for button in (self.untarget_button, self.merge_button, self.search_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self._updating = False
        self._on_selection_changed()

    def _items(self) -> list[QTreeWidgetItem]:
        return [item for i in range(self.tree.topLevelItemCount()) if (item := self.tree.topLevelItem(i)) is not None]

    def identity_ids(self) -> list[int]:
        return [item.data(0, ID_ROLE) for item in self._items()]

    def item_for(self, identity_id: int) -> QTreeWidgetItem | None:
        return next((item for item in self._items() if item.data(0, ID_ROLE) == identity_id), None)

    def selected_ids(self) -> list[int]:
        items = sorted(self.tree.selectedItems(), key=lambda it: self.tree.indexOfTopLevelItem(it))
        return [item.data(0, ID_ROLE) for item in items]

    def set_targets(self, targets: list[IdentitySummary], thumbnails: dict[int, bytes | None]) -> None:
        """Replace the rows, keeping the selection and any name being edited."""
        if self.tree.state() == QAbstractItemView.State.EditingState:
            return
        selected = set(self.selected_ids())
        self._updating = True
        try:
            self.tree.clear()
            for target in targets:
                item = QTreeWidgetItem([f"#{target.identity_id}", target.label, format_time(target.first_seen),
                                        format_time(target.last_seen), ", ".join(c for c in target.cameras if c)])
                item.setData(0, ID_ROLE, target.identity_id)
                item.setIcon(0, thumbnail_icon(thumbnails.get(target.identity_id)))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                item.setToolTip(1, "Double-click to name this person")
                self.tree.addTopLevelItem(item)
                item.setSelected(target.identity_id in selected)
            for column in range(len(self.COLUMNS)):
                self.tree.resizeColumnToContents(column)
        finally:
            self._updating = False
        self._on_selection_changed()

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating:
            return
        if column != 1:  # only the name is editable; put anything else back on the next refresh
            return
        self.renamed.emit(item.data(0, ID_ROLE), item.text(1).strip())

    def _on_selection_changed(self) -> None:
        ids = self.selected_ids()
        self.untarget_button.setEnabled(bool(ids))
        self.merge_button.setEnabled(len(ids) == 2)
        self.search_button.setEnabled(len(ids) == 1)
        if len(ids) == 1:
            self.timeline_requested.emit(ids[0])

    def _emit_selected(self, signal: SignalInstance) -> None:
        ids = self.selected_ids()
        if ids:
            signal.emit(ids[0])

    def _untarget_selected(self) -> None:
        for identity_id in self.selected_ids():
            self.untarget_requested.emit(identity_id)

    def _merge_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 2:
            self.merge_requested.emit(ids[0], ids[1])


class TimelinePanel(QWidget):
    """Every appearance (track) of one target across cameras, oldest first."""

    segment_activated = Signal(object)  # TrackSegment
    split_requested = Signal(object)  # TrackSegment: "not this person"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.identity_id: int | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel("Select a target to see where it was seen.")
        layout.addWidget(self.title)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Seen", "Camera", "Until", "In file", "Frames"])
        self.tree.setRootIsDecorated(False)
        self.tree.setIconSize(THUMB)
        self.tree.itemActivated.connect(lambda item, _c: self.segment_activated.emit(item.data(0, ID_ROLE)))
        self.tree.itemClicked.connect(lambda item, _c: self.segment_activated.emit(item.data(0, ID_ROLE)))
        layout.addWidget(self.tree)
        self.split_button = QPushButton("Not this person")
        self.split_button.setToolTip("The selected sighting is someone else: give it its own identity")
        self.split_button.clicked.connect(self._split_selected)
        layout.addWidget(self.split_button)

    def set_segments(self, identity_id: int | None, name: str, segments: list[TrackSegment]) -> None:
        """Show a target's segments; refreshing the same target keeps the selected row."""
        current = self.tree.currentItem()
        keep = current.data(0, ID_ROLE).track_row if current is not None and identity_id == self.identity_id else None
        self.identity_id = identity_id
        self.tree.clear()
        if identity_id is None:
            self.title.setText("Select a target to see where it was seen.")
            return
        cameras = sorted({s.source for s in segments})
        who = f"#{identity_id} {name}" if name else f"#{identity_id}"
        self.title.setText(f"{who}: {count(len(segments), 'sighting')} in {count(len(cameras), 'camera')}")
        for segment in segments:
            media = ""
            if segment.first_media_time is not None and segment.last_media_time is not None:
                media = f"{format_media_time(segment.first_media_time)}–{format_media_time(segment.last_media_time)}"
            item = QTreeWidgetItem([format_time(segment.first_seen), segment.source, format_time(segment.last_seen),
                                    media, str(segment.sightings)])
            item.setData(0, ID_ROLE, segment)
            item.setIcon(0, thumbnail_icon(segment.thumbnail))
            item.setToolTip(0, "Click to jump to this moment (file sources) or show the stored snapshot")
            self.tree.addTopLevelItem(item)
            if segment.track_row == keep:
                self.tree.setCurrentItem(item)
        for column in range(5):
            self.tree.resizeColumnToContents(column)

    def _split_selected(self) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self.split_requested.emit(item.data(0, ID_ROLE))
