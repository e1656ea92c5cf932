"""The watch list editor: people to be told about, each with pictures of them and a threshold.

A picture is a crop of the person, as a camera shows them (a snapshot from another camera, a photo
cut to the person). The threshold is a cosine similarity; it starts at the running model's match
threshold, and a higher one gives fewer, surer alerts.
"""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QTableWidgetItem,
    QWidget,
)

from reid_desktop.core.identity.watchlist import MAX_ENTRIES, MAX_PICTURES
from reid_desktop.ui.settings import WatchedPerson
from reid_desktop.ui.table_dialog import TableDialog

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.webp)"
COLUMNS = ("Person", "Pictures", "Threshold")


class WatchListDialog(TableDialog):
    def __init__(self, people: list[WatchedPerson], default_threshold: float, parent: QWidget | None = None) -> None:
        super().__init__(
            "Watch list",
            "An alert when someone like these people appears on a camera. Give pictures of the person cut to "
            "them, as a camera shows a person; a higher threshold gives fewer, surer alerts (the model matches "
            f"at {default_threshold:.2f}).", COLUMNS, "Add person…", "Remove", parent)
        self.setMinimumWidth(560)
        self.default_threshold = default_threshold
        self.people = copy.deepcopy(people)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for person in self.people:
            self._show(person)

    def _show(self, person: WatchedPerson) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(person.name))
        item = QTableWidgetItem(", ".join(Path(p).name for p in person.pictures))
        item.setToolTip("\n".join(person.pictures))
        self.table.setItem(row, 1, item)
        threshold = QDoubleSpinBox()
        threshold.setRange(0.05, 1.0)
        threshold.setSingleStep(0.01)
        threshold.setDecimals(2)
        threshold.setValue(person.threshold)
        threshold.valueChanged.connect(lambda value, who=person: setattr(who, "threshold", round(value, 2)))
        self.table.setCellWidget(row, 2, threshold)

    def add_person(self, name: str, pictures: list[str]) -> str:
        """Add an entry; returns why it cannot be added (``""`` when it was)."""
        name = name.strip()
        if not name or any(p.name == name for p in self.people):
            return f"choose a name not used yet{f' ({name!r} is)' if name else ''}"
        if not 1 <= len(pictures) <= MAX_PICTURES:
            return f"give 1 to {MAX_PICTURES} pictures"
        if len(self.people) >= MAX_ENTRIES:
            return f"the watch list holds at most {MAX_ENTRIES} people"
        person = WatchedPerson(name, [str(Path(p)) for p in pictures], round(self.default_threshold, 2))
        self.people.append(person)
        self._show(person)
        return ""

    def add_row_dialog(self) -> None:
        pictures, _ = QFileDialog.getOpenFileNames(self, "Pictures of the person", "", IMAGE_FILTER)
        if not pictures:
            return
        name, ok = QInputDialog.getText(self, "Watch list", "Name of this person:", text=Path(pictures[0]).stem)
        if ok:
            self.error.setText(self.add_person(name, pictures))

    def row_removed(self, row: int) -> None:
        del self.people[row]

    def accept_rows(self) -> str:
        missing = [p for person in self.people for p in person.pictures if not Path(p).is_file()]
        return f"picture not found: {missing[0]}" if missing else ""
