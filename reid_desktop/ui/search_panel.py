"""Appearance search: a person (clicked in a feed, a target, or an image file) against the history."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core.store.interface import SearchHit
from reid_desktop.core.store.report import format_media_time
from reid_desktop.ui.feeds import to_qimage
from reid_desktop.ui.targets_panel import ID_ROLE, THUMB, format_time, thumbnail_icon


@dataclass(frozen=True)
class SearchQuery:
    """Who is searched for: a crop, and the identity it belongs to when the operator clicked a known person."""

    crop: np.ndarray
    identity_id: int | None
    description: str


@dataclass(frozen=True)
class SearchResult:
    hit: SearchHit
    thumbnail: bytes | None


class SearchPanel(QWidget):
    image_search_requested = Signal()
    confirmed = Signal(object, object)  # SearchQuery, SearchResult
    rejected = Signal(object, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.query: SearchQuery | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.query_picture = QLabel()
        self.query_picture.setFixedSize(THUMB)
        self.query_picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.query_picture.setStyleSheet("border: 1px solid palette(mid);")
        top.addWidget(self.query_picture)
        column = QVBoxLayout()
        self.query_label = QLabel("Right-click a person in a feed and choose “Find similar”, or search with an image.")
        self.query_label.setWordWrap(True)
        column.addWidget(self.query_label)
        row = QHBoxLayout()
        self.image_button = QPushButton("Search with image…")
        self.image_button.clicked.connect(self.image_search_requested)
        row.addWidget(self.image_button)
        row.addWidget(QLabel("Top"))
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 500)
        self.top_k.setValue(20)
        row.addWidget(self.top_k)
        row.addStretch(1)
        column.addLayout(row)
        top.addLayout(column, 1)
        layout.addLayout(top)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Score", "Camera", "Seen", "In file", "Identity"])
        self.results.setRootIsDecorated(False)
        self.results.setIconSize(THUMB)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.itemSelectionChanged.connect(self._on_selection_changed)
        layout.addWidget(self.results)
        buttons = QHBoxLayout()
        self.confirm_button = QPushButton("Confirm: same person")
        self.confirm_button.setToolTip("Merge this match into the searched person (or follow it)")
        self.confirm_button.clicked.connect(lambda: self._emit_current(self.confirmed))
        self.reject_button = QPushButton("Reject")
        self.reject_button.setToolTip("Not the same person: drop it from the results (and split it off if it was "
                                      "linked to the searched person)")
        self.reject_button.clicked.connect(lambda: self._emit_current(self.rejected))
        buttons.addWidget(self.confirm_button)
        buttons.addWidget(self.reject_button)
        layout.addLayout(buttons)
        self._on_selection_changed()

    def set_query(self, query: SearchQuery) -> None:
        self.query = query
        self.results.clear()
        pixmap = QPixmap.fromImage(to_qimage(query.crop))
        self.query_picture.setPixmap(pixmap.scaled(THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.SmoothTransformation))
        self.query_label.setText(f"Searching for {query.description}…")

    def set_results(self, results: list[SearchResult]) -> None:
        self.results.clear()
        for result in results:
            sighting = result.hit.sighting
            item = QTreeWidgetItem([f"{result.hit.score:.3f}", sighting.source, format_time(sighting.timestamp),
                                    "" if sighting.media_time is None else format_media_time(sighting.media_time),
                                    "" if sighting.identity_id is None else f"#{sighting.identity_id}"])
            item.setData(0, ID_ROLE, result)
            item.setIcon(0, thumbnail_icon(result.thumbnail))
            self.results.addTopLevelItem(item)
        for column in range(5):
            self.results.resizeColumnToContents(column)
        if self.query is not None:
            found = f"{len(results)} most similar sightings" if results else "nothing similar in the history yet"
            self.query_label.setText(f"{self.query.description}: {found}")

    def result_rows(self) -> list[SearchResult]:
        return [item.data(0, ID_ROLE) for i in range(self.results.topLevelItemCount())
                if (item := self.results.topLevelItem(i)) is not None]

    def drop_result(self, result: SearchResult) -> None:
        for i, row in enumerate(self.result_rows()):
            if row is result:
                self.results.takeTopLevelItem(i)
                return

    def _on_selection_changed(self) -> None:
        has = self.results.currentItem() is not None and bool(self.results.selectedItems())
        self.confirm_button.setEnabled(has)
        self.reject_button.setEnabled(has)

    def _emit_current(self, signal: SignalInstance) -> None:
        item = self.results.currentItem()
        if item is not None and self.query is not None:
            signal.emit(self.query, item.data(0, ID_ROLE))
