"""Appearance search: a person's picture (clicked, followed or from a file) against the stored history.

The engine thread only hands over its model and live index (:meth:`Pipeline.searcher`); the search
itself runs on the thread pool with a read-only connection. Confirming or rejecting a result edits
identities through the :class:`TargetsController`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QWidget

from reid_desktop.core.identity.search import Searcher
from reid_desktop.core.store.interface import HistoryReader, SearchHit
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.search_panel import SearchPanel, SearchQuery, SearchResult
from reid_desktop.ui.targets_controller import TargetsController

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.webp)"


def search_results(searcher: Searcher, store: HistoryReader, crop: np.ndarray, k: int,
                   identity_id: int | None = None) -> list[SearchResult]:
    """The ``k`` best-matching tracks with their pictures: many sightings of one track look alike, so more
    are fetched and each track is shown once, at its best place (``identity_id``: the query is that person)."""
    best_per_track: dict[int, SearchHit] = {}
    for hit in searcher.search(store, crop, 5 * k, identity_id):
        best_per_track.setdefault(hit.sighting.track_row, hit)
    return [SearchResult(hit, store.track_thumbnail(hit.sighting.track_row))
            for hit in list(best_per_track.values())[:k]]


class SearchController(QObject):
    finished = Signal()  # the panel shows the results of the last search
    top_k_changed = Signal(int)  # the operator's result count, to remember in the settings

    def __init__(self, client: EngineClient, panel: SearchPanel, dock: QDockWidget, targets: TargetsController,
                 dialog_parent: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client, self.panel, self.dock, self.targets = client, panel, dock, targets
        self._dialog_parent = dialog_parent
        panel.image_search_requested.connect(self.search_with_image_file)
        panel.confirmed.connect(self.confirm)
        panel.rejected.connect(self.reject)

    def search(self, query: SearchQuery) -> None:
        self.dock.show()
        self.dock.raise_()
        self.panel.set_query(query)
        k = self.panel.top_k.value()
        self.top_k_changed.emit(k)

        def show(results: list[SearchResult] | None) -> None:
            self.panel.set_results(results or [])
            self.finished.emit()

        self.client.submit(lambda p: p.searcher(),
                           lambda searcher: self.client.read(
                               lambda store: search_results(searcher, store, query.crop, k, query.identity_id),
                               show, "search"),
                           what="search")

    def search_identity(self, identity_id: int) -> None:
        """Search with the stored picture of an identity (a target's best crop)."""
        def go(jpeg: bytes | None) -> None:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
            if image is None:
                self.client.report(f"#{identity_id} has no stored picture to search with yet")
                return
            self.search(SearchQuery(image, identity_id, f"#{identity_id}"))

        self.client.read(lambda store: store.thumbnail(identity_id), go, "read the target's picture")

    def search_with_image_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._dialog_parent, "Search with an image of a person", "",
                                              IMAGE_FILTER)
        if path:
            self.search_with_image(Path(path))

    def search_with_image(self, path: Path) -> None:
        image = cv2.imread(str(path))
        if image is None:
            self.client.report(f"Cannot read {path.name} as an image")
            return
        self.search(SearchQuery(image, None, path.name))

    def confirm(self, query: SearchQuery, result: SearchResult) -> None:
        """The result is the query's person: follow them (a picture) or merge them into the query's identity."""
        match = result.hit.sighting.identity_id
        if match is None:
            return
        if query.identity_id is None:
            self.targets.set_target(match, True)
        elif match != query.identity_id:
            self.targets.merge_identities(query.identity_id, match)
        self.panel.drop_result(result)

    def reject(self, query: SearchQuery, result: SearchResult) -> None:
        """Not the query's person: when the identity holds that track, the track is split off."""
        self.panel.drop_result(result)
        sighting = result.hit.sighting
        if query.identity_id is not None and sighting.identity_id == query.identity_id:
            self.targets.split_track(sighting.track_row, query.identity_id)
