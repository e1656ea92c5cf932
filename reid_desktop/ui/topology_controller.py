"""The camera topology from the window: edited in its dialog, kept in the settings, handed to the running matcher.

The links the engine runs are the saved ones and those of this session's cameras (the demo's two halves overlap),
which are never saved.
"""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.settings import AppSettings
from reid_desktop.ui.topology_dialog import TopologyDialog


class TopologyController(QObject):
    def __init__(self, client: EngineClient, window: QWidget, cameras: CameraList, session_links: str,
                 settings: Callable[[], AppSettings], save: Callable[[], None]) -> None:
        super().__init__(window)
        self.client, self._window, self.cameras, self._settings, self._save = client, window, cameras, settings, save
        self.session_links = session_links

    def running(self, saved: str) -> str:
        """The saved camera links and those of this session's cameras."""
        return "; ".join(filter(None, (saved, self.session_links)))

    def dialog(self) -> TopologyDialog:
        """The topology editor (window-modal, not blocking): the links in the settings, and what the running
        cameras learned as suggestions when the engine answers."""
        matcher = self._settings().pipeline_config().matcher
        dialog = TopologyDialog(matcher.camera_links, self.cameras.names(), matcher.same_moment_s, self._window)

        def accepted() -> None:
            if dialog.result_links is not None:
                self.set_links(dialog.result_links)

        def learned(suggestions: tuple[LinkSuggestion, ...]) -> None:
            if shiboken6.isValid(dialog):  # the answer may come after the dialog was closed
                dialog.set_suggestions(suggestions)

        dialog.accepted.connect(accepted)
        dialog.finished.connect(dialog.deleteLater)
        if self.client.engine.control is None:
            dialog.set_suggestions(None)
        else:
            self.client.submit(lambda p: p.commands.link_suggestions(), learned, what="read the learned links")
        dialog.open()
        return dialog

    def set_links(self, links: str) -> None:
        """Keep the topology in the settings and hand it to the running matcher (no restart)."""
        settings = self._settings()
        settings.pipeline = {k: v for k, v in settings.pipeline.items() if k != "matcher.camera_links"}
        if links:
            settings.pipeline["matcher.camera_links"] = links
        self._save()
        if self.client.engine.control is not None:
            running = self.running(links)
            self.client.submit(lambda p: p.commands.set_camera_links(running), what="change the camera topology")
