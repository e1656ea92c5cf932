"""The alerts list: each time a followed person appears on a camera, with the picture of that moment.

Newest first; a click asks to go to that camera (and, for a video file, to that moment). Above the
list: what follow mode does with the wall, sound and desktop notifications, and the path of the
selected person across cameras.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core.store.interface import Alert
from reid_desktop.core.types import TargetSighted
from reid_desktop.ui.targets_panel import THUMB, format_time, thumbnail_icon

ROWS_SHOWN = 500  # the newest; the store keeps them all (with their sightings)
FOLLOW_MODES = (("Maximise the camera", "maximise"), ("Move it to the first cell", "first"),
                ("Leave the wall as it is", "off"))


def live_alert(event: TargetSighted) -> Alert:
    """An alert from the engine as the list shows it (the store gives it an id and a row when it commits)."""
    return Alert(0, event.identity_id, event.source_id, event.timestamp, event.media_time, event.score,
                 event.thumbnail, track_row=-1)


def path_text(rows: list[Alert], identity_id: int) -> str:
    """Where a person was seen, camera by camera, oldest first: ``north 10:02:01 → south 10:02:09``."""
    steps = sorted((r for r in rows if r.identity_id == identity_id), key=lambda r: r.timestamp)
    return " → ".join(f"{r.source} {format_time(r.timestamp)}" for r in steps)


class AlertsPanel(QWidget):
    alert_activated = Signal(object)  # Alert: go to that camera (and moment)
    options_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.follow_mode = QComboBox()
        for label, value in FOLLOW_MODES:
            self.follow_mode.addItem(label, value)
        self.follow_mode.setToolTip("What the wall does when a followed person appears on a camera")
        self.sound = QCheckBox("Sound")
        self.notify = QCheckBox("Desktop notification")
        self.follow_mode.currentIndexChanged.connect(lambda _i: self.options_changed.emit())
        for check in (self.sound, self.notify):
            check.toggled.connect(lambda _c: self.options_changed.emit())
        options = QHBoxLayout()
        options.addWidget(QLabel("On alert:"))
        options.addWidget(self.follow_mode, 1)
        options.addWidget(self.sound)
        options.addWidget(self.notify)
        self.path = QLabel("Click an alert to see that person's path across cameras.")
        self.path.setWordWrap(True)
        self.list = QListWidget()
        self.list.setIconSize(THUMB)
        self.list.itemClicked.connect(self._activated)
        self.list.itemActivated.connect(self._activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(options)
        layout.addWidget(self.path)
        layout.addWidget(self.list, 1)
        self.rows: list[Alert] = []  # newest first, as shown

    def add(self, row: Alert, name: str = "") -> None:
        """A new alert on top; the oldest beyond :data:`ROWS_SHOWN` leave the list."""
        self.rows.insert(0, row)
        self.list.insertItem(0, self._item(row, name))
        while self.list.count() > ROWS_SHOWN:
            self.list.takeItem(self.list.count() - 1)
            self.rows.pop()

    def set_rows(self, rows: list[Alert], names: dict[int, str]) -> None:
        """The stored alerts, newest first (at start)."""
        self.list.clear()
        self.rows = []
        for row in reversed(rows[:ROWS_SHOWN]):
            self.add(row, names.get(row.identity_id or -1, ""))

    @staticmethod
    def _item(row: Alert, name: str) -> QListWidgetItem:
        who = (f"#{row.identity_id}" if row.identity_id is not None else "someone") + (f" {name}" if name else "")
        score = f"   match {row.score:.2f}" if row.score is not None else ""
        item = QListWidgetItem(thumbnail_icon(row.thumbnail), f"{format_time(row.timestamp)}   {row.source}\n"
                                                              f"{who}{score}")
        item.setData(Qt.ItemDataRole.UserRole, row)
        return item

    def _activated(self, item: QListWidgetItem) -> None:
        row: Alert = item.data(Qt.ItemDataRole.UserRole)
        if row.identity_id is not None:
            self.path.setText(f"#{row.identity_id}: {path_text(self.rows, row.identity_id)}")
        self.alert_activated.emit(row)
