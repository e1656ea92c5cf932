"""Stream health: every camera's state, frame rates, drops, reconnects, last error and latency.

The engine reports a :class:`SourceHealth` per camera about once a second; the window adds the
latency from capture to display, which only it can measure. A camera whose analysis falls far
behind its input, or whose pictures arrive late, is named in the status bar.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from reid_desktop.core.types import SourceHealth, SourceState

COLUMNS = ("Camera", "State", "Input fps", "Analysed fps", "Dropped", "Reconnects", "Latency", "Last error")
BEHIND_SHARE = 0.5  # analysing less than half of what a live camera delivers
LATE_S = 2.0  # a picture shown more than this after it was captured


def falls_behind(health: SourceHealth, display_latency_s: float | None) -> str:
    """Why a live camera is behind (for the status bar), or ``""``."""
    if health.state is not SourceState.LIVE or not health.paced:
        return ""
    if health.input_fps >= 1.0 and health.processed_fps < BEHIND_SHARE * health.input_fps:
        return f"analysed {health.processed_fps:.1f} of {health.input_fps:.1f} fps"
    if display_latency_s is not None and display_latency_s > LATE_S:
        return f"pictures {display_latency_s:.1f} s late"
    return ""


class HealthPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table)
        self.health: dict[str, SourceHealth] = {}

    def _find(self, name: str) -> int | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == name:
                return row
        return None

    def _row(self, name: str) -> int:
        row = self._find(name)
        if row is None:
            row = self.table.rowCount()
            self.table.insertRow(row)
        return row

    def show_health(self, health: SourceHealth, display_latency_s: float | None) -> None:
        self.health[health.source_id] = health
        row = self._row(health.source_id)
        latency = [f"{v:.2f} s" for v in (health.latency_s, display_latency_s) if v is not None]
        cells = [health.source_id, health.state.value, f"{health.input_fps:.1f}", f"{health.processed_fps:.1f}",
                 str(health.dropped), str(health.reconnects), " / ".join(latency), health.last_error]
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if 2 <= col <= 6:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if COLUMNS[col] == "Latency":
                item.setToolTip("capture to analysis / capture to display")
            self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def cell(self, name: str, column: str) -> str:
        """The text shown for a camera in a column (for tests and tooltips)."""
        row = self._find(name)
        item = self.table.item(row, COLUMNS.index(column)) if row is not None else None
        return item.text() if item is not None else ""

    def remove(self, name: str) -> None:
        self.health.pop(name, None)
        row = self._find(name)
        if row is not None:
            self.table.removeRow(row)
