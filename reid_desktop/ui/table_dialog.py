"""A dialog that edits a list as a table: an explanation, the rows, add / remove, one error line, OK / Cancel.

The camera topology and the watch list are edited this way; a subclass fills the rows, says what
adding one means, and checks the rows before the dialog closes (:meth:`accept_rows`).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)


class TableDialog(QDialog):
    add_row_dialog: Callable[[], None]  # each subclass's add button: ask what the new row holds and add it

    def __init__(self, title: str, explanation: str, columns: tuple[str, ...], add_label: str, remove_label: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        text = QLabel(explanation)
        text.setWordWrap(True)
        self.table = QTableWidget(0, len(columns))
        self.table.setHorizontalHeaderLabels(list(columns))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        add, remove = QPushButton(add_label), QPushButton(remove_label)
        add.clicked.connect(self.add_row_dialog)
        remove.clicked.connect(self._remove_selected)
        row_buttons = QHBoxLayout()
        row_buttons.addWidget(add)
        row_buttons.addWidget(remove)
        row_buttons.addStretch(1)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c33;")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.table, 1)
        layout.addLayout(row_buttons)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def row_removed(self, row: int) -> None:
        """A row left the table (what the subclass keeps beside it goes too)."""

    def accept_rows(self) -> str:
        """Why the rows cannot be kept (shown in the error line), or ``""`` to close the dialog."""
        return ""

    def _remove_selected(self) -> None:
        for row in sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
            self.row_removed(row)

    def _accept(self) -> None:
        problem = self.accept_rows()
        self.error.setText(problem)
        if not problem:
            self.accept()
