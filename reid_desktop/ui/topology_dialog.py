"""The camera topology editor: which cameras see the same ground, and the shortest walk between others.

It edits ``matcher.camera_links`` (:mod:`reid_desktop.core.topology`) as a table instead of a string;
the matcher uses it to refuse links that are physically impossible. Below the table, what the running app learned
from the footage (:class:`~reid_desktop.core.identity.camera_transitions.LinkSuggestion`: where people leave one
picture, where they enter the other and how long the walk takes) is offered as suggestions; the operator adds the
ones that are right, nothing is added by itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core import topology
from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.ui.table_dialog import TableDialog

COLUMNS = ("Camera", "Camera", "Same ground", "Shortest walk")
MAX_WALK_S = 24 * 3600.0
WAITING = "Asking the running cameras what they have learned…"
NOTHING_LEARNED = ("Nothing to suggest yet: links are learned from people seen walking between cameras "
                   "(or in two at once) while the cameras run.")
NOT_RUNNING = "Suggestions come from running cameras: start processing to learn where people walk."


class TopologyDialog(TableDialog):
    """One row per pair of cameras: they overlap, or walking from one to the other takes at least N seconds."""

    def __init__(self, links: str, cameras: list[str], same_moment_s: float, parent: QWidget | None = None) -> None:
        super().__init__(
            "Camera topology",
            "Tell the matcher where people can walk. Cameras that see the same ground may show one person at "
            f"the same moment; for any other pair, someone seen in both within {same_moment_s:g} s is two "
            "people, or within the shortest walk you give here. There is no longest walk: people leave and "
            "come back days later, and must still be recognised.", COLUMNS, "Add link", "Remove link", parent)
        self.setMinimumWidth(640)
        self.cameras = cameras
        header = self.table.horizontalHeader()
        for column in (0, 1):  # camera names must be readable whole
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.result_links: str | None = None

        parsed = topology.parse(links, same_moment_s)  # the settings were validated when they were loaded
        for pair in sorted(parsed.overlapping, key=sorted):
            self.add_link(*sorted(pair), overlap=True)
        for pair, seconds in sorted(parsed.min_transit_s.items(), key=lambda item: sorted(item[0])):
            self.add_link(*sorted(pair), walk_s=seconds)

        self.suggestion_box = QGroupBox("Learned from the footage")
        self.suggestion_rows = QVBoxLayout(self.suggestion_box)
        self.suggestion_note = QLabel(WAITING)
        self.suggestion_note.setWordWrap(True)
        self.suggestion_rows.addWidget(self.suggestion_note)
        self.suggestion_widgets: list[QWidget] = []
        self.suggestion_buttons: list[QPushButton] = []
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(self.error), self.suggestion_box)

    def set_suggestions(self, suggestions: Sequence[LinkSuggestion] | None) -> None:
        """Show what the running app learned, one row each with an *Add* button (``None``: nothing is running)."""
        for row in self.suggestion_widgets:
            row.deleteLater()
        self.suggestion_widgets, self.suggestion_buttons = [], []
        self.suggestion_note.setText(NOT_RUNNING if suggestions is None else "" if suggestions else NOTHING_LEARNED)
        self.suggestion_note.setVisible(not suggestions)
        for suggestion in suggestions or ():
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            text = QLabel(suggestion.describe())
            text.setWordWrap(True)
            add = QPushButton("Add")
            add.setToolTip(f"Add the link {suggestion.entry} to the table")
            add.clicked.connect(lambda _=False, s=suggestion, b=add: self._add_suggested(s, b))
            line.addWidget(text, 1)
            line.addWidget(add)
            self.suggestion_rows.addWidget(row)
            self.suggestion_widgets.append(row)
            self.suggestion_buttons.append(add)

    def _add_suggested(self, suggestion: LinkSuggestion, button: QPushButton) -> None:
        self.add_link(suggestion.first, suggestion.second, overlap=suggestion.overlap, walk_s=suggestion.walk_s)
        button.setEnabled(False)
        button.setText("Added")

    def _camera_box(self, name: str) -> QComboBox:
        box = QComboBox()
        box.setEditable(True)  # a camera of another station, or one not added yet
        box.addItems(self.cameras)
        box.setCurrentText(name)
        return box

    def add_link(self, first: str = "", second: str = "", *, overlap: bool = False, walk_s: float = 10.0) -> int:
        """A row for a pair of cameras; returns its index."""
        row = self.table.rowCount()
        self.table.insertRow(row)
        cameras = [c for c in self.cameras if c != first]
        self.table.setCellWidget(row, 0, self._camera_box(first or (self.cameras[0] if self.cameras else "")))
        self.table.setCellWidget(row, 1, self._camera_box(second or (cameras[0] if cameras else "")))
        same_ground = QCheckBox()
        same_ground.setChecked(overlap)
        walk = QDoubleSpinBox()
        walk.setRange(0.0, MAX_WALK_S)
        walk.setDecimals(1)
        walk.setSuffix(" s")
        walk.setValue(walk_s)
        walk.setEnabled(not overlap)
        same_ground.toggled.connect(lambda checked: walk.setEnabled(not checked))
        self.table.setCellWidget(row, 2, same_ground)
        self.table.setCellWidget(row, 3, walk)
        return row

    def add_row_dialog(self) -> None:
        self.add_link()

    def links(self) -> str:
        """The rows as a ``matcher.camera_links`` string (not yet checked)."""
        entries = []
        for row in range(self.table.rowCount()):
            first, second, same_ground, walk = (self.table.cellWidget(row, col) for col in range(len(COLUMNS)))
            assert isinstance(first, QComboBox) and isinstance(second, QComboBox)
            assert isinstance(same_ground, QCheckBox) and isinstance(walk, QDoubleSpinBox)
            a, b = first.currentText().strip(), second.currentText().strip()
            entries.append(f"{a} = {b}" if same_ground.isChecked() else f"{a} ~ {b} : {walk.value():g}")
        return "; ".join(entries)

    def accept_rows(self) -> str:
        try:
            self.result_links = topology.parse(self.links()).describe()
        except ValueError as exc:
            return str(exc)
        return ""
