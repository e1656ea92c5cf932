"""The watch list: people the operator is told about when someone like them appears on any camera.

The list lives in the settings; its pictures are read on the thread pool and embedded in the engine with the model
that runs (again after each engine start, since a new model means new embeddings).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from reid_desktop.core.identity.watchlist import WatchPictures
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.settings import AppSettings, WatchedPerson
from reid_desktop.ui.watchlist_dialog import WatchListDialog

DEFAULT_THRESHOLD = 0.6  # offered in the editor before the engine has said what its matcher uses


class WatchListController(QObject):
    status_message = Signal(str, int)

    def __init__(self, client: EngineClient, window: QWidget, settings: Callable[[], AppSettings],
                 save: Callable[[], None]) -> None:
        super().__init__(window)
        self.client, self._window, self._settings, self._save = client, window, settings, save

    def dialog(self) -> None:
        info = self.client.engine.info
        dialog = WatchListDialog(self._settings().watch_list,
                                 info.match_threshold if info is not None else DEFAULT_THRESHOLD, self._window)
        if dialog.exec():
            self.set(dialog.people)

    def set(self, people: list[WatchedPerson]) -> None:
        """Keep the watch list in the settings and hand it to the running pipeline."""
        self._settings().watch_list = people
        self._save()
        self.push()

    def push(self) -> None:
        """Read the pictures on the thread pool, then embed them in the engine (with its model)."""
        people = list(self._settings().watch_list)

        def read() -> list[WatchPictures]:
            entries = []
            for person in people:
                pictures = []
                for path in person.pictures:
                    image = cv2.imread(path)
                    if image is None:
                        raise ValueError(f"{person.name}: cannot read {path} as an image")
                    pictures.append(image)
                entries.append(WatchPictures(person.name, tuple(pictures), person.threshold))
            return entries

        def load(entries: list[WatchPictures]) -> None:
            self.client.submit(lambda p: p.commands.set_watch_list(entries),
                               lambda count: self.status_message.emit(f"Watching for {count} people", 4000),
                               what="load the watch list")

        self.client.in_background(read, load, "read the watch list's pictures")
