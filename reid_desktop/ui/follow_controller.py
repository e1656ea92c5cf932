"""Follow mode: when a followed person appears on a camera, the operator is told where.

Each :class:`TargetSighted` from the engine becomes a line in the alerts list; the wall brings
that camera forward (maximised, or in the first cell), unless the operator changed the wall in the
last :data:`OPERATOR_QUIET_S` seconds (their own choice wins); an optional sound and a desktop
notification go with it. Clicking an alert goes to the camera, and for a video file to the moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from reid_desktop.core.capture.sources import SourceKind
from reid_desktop.core.identity.watchlist import WatchMatch
from reid_desktop.core.store.history import History
from reid_desktop.core.store.interface import Alert
from reid_desktop.core.types import TargetSighted
from reid_desktop.ui.alerts_panel import ROWS_SHOWN, AlertsPanel, live_alert, path_text
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.feeds import FeedGrid
from reid_desktop.ui.settings import AppSettings
from reid_desktop.ui.targets_controller import TargetsController

OPERATOR_QUIET_S = 30.0  # after the operator changes the wall, follow mode leaves it alone this long


class FollowController(QObject):
    status_message = Signal(str, int)
    resume_requested = Signal(str)  # a paused camera must play to show the moment of an alert

    def __init__(self, client: EngineClient, panel: AlertsPanel, grid: FeedGrid, cameras: CameraList,
                 targets: TargetsController, settings: Callable[[], AppSettings], save: Callable[[], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client, self.panel, self.grid, self.cameras, self.targets = client, panel, grid, cameras, targets
        self._settings, self._save = settings, save
        self._operator_at = -OPERATOR_QUIET_S  # the wall was never touched
        self._tray: QSystemTrayIcon | None = None
        self._loaded_from: History | None = None
        current = settings()
        panel.follow_mode.setCurrentIndex(max(0, panel.follow_mode.findData(current.follow_mode)))
        panel.sound.setChecked(current.alert_sound)
        panel.notify.setChecked(current.alert_notify)
        panel.options_changed.connect(self._remember_options)
        panel.alert_activated.connect(self.go_to)
        grid.operator_acted.connect(self._operator_acted)

    def _operator_acted(self) -> None:
        self._operator_at = time.monotonic()

    def _remember_options(self) -> None:
        settings = self._settings()
        settings.follow_mode = self.panel.follow_mode.currentData()
        settings.alert_sound, settings.alert_notify = self.panel.sound.isChecked(), self.panel.notify.isChecked()
        self._save()

    def load(self) -> None:
        """The stored alerts, newest first, once per database (the engine started: the database is there)."""
        if self._loaded_from == self.client.database:
            return
        self._loaded_from = self.client.database
        self.client.read(lambda store: store.alerts(limit=ROWS_SHOWN),
                         lambda alerts: self.panel.set_rows(alerts or [],
                                                            self.targets.labels), "read the alerts")

    def on_target_sighted(self, alert: TargetSighted) -> None:
        name = self.targets.labels.get(alert.identity_id, "")
        who = f"#{alert.identity_id}" + (f" {name}" if name else "")
        self.panel.add(live_alert(alert), name)
        self.panel.path.setText(f"{who}: {path_text(self.panel.rows, alert.identity_id)}")
        self._raise(alert.source_id, f"Followed: {who} is on {alert.source_id} now")

    def on_watch_match(self, match: WatchMatch) -> None:
        label = f"watch list: {match.name}"
        self.panel.add(Alert(0, match.identity_id, match.source_id, match.timestamp, match.media_time, match.score,
                             match.thumbnail, track_row=-1), label)
        self._raise(match.source_id, f"Watch list: someone like {match.name} is on {match.source_id} "
                                     f"(match {match.score:.2f})")

    def _raise(self, source: str, message: str) -> None:
        """Bring the camera forward (unless the operator just arranged the wall), sound, notify, say it."""
        mode = self._settings().follow_mode
        if mode != "off" and time.monotonic() - self._operator_at >= OPERATOR_QUIET_S:
            self.grid.bring_forward(source, mode)
        if self._settings().alert_sound:
            QApplication.beep()
        if self._settings().alert_notify:
            self._notify(message)
        self.status_message.emit(message, 8000)

    def _notify(self, text: str) -> None:
        if not QSystemTrayIcon.isSystemTrayAvailable():  # no notification area (a bare X server, offscreen)
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(QApplication.windowIcon() or QIcon(), self)
            self._tray.show()
        self._tray.showMessage("reid-desktop", text, QSystemTrayIcon.MessageIcon.Information, 5000)

    def go_to(self, row: Alert) -> None:
        """The alert's camera in front; a video file plays from the moment of the alert."""
        self._operator_acted()  # they chose this camera: the next alert leaves it in front for a while
        camera = self.cameras.get(row.source)
        if camera is None:
            self.status_message.emit(f"{row.source} is no longer in the list of cameras", 5000)
            return
        self.grid.bring_forward(row.source, "maximise")
        if camera.spec.kind is SourceKind.FILE and row.media_time is not None:
            moment = row.media_time
            self.client.control(lambda c: c.seek(row.source, moment), what=f"jump to that moment in {row.source}")
            if camera.paused:
                self.resume_requested.emit(row.source)
