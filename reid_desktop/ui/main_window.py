"""The operator's main window: video wall, sources, targets, timeline, appearance search.

The window owns the :class:`Engine` (the pipeline thread), lays out the panels and wires them to
small controllers: this machine's cameras (:class:`SourcesController` over :class:`CameraList`, which has no Qt),
the nodes' cameras on a shared database (:class:`NodeCameras`), what the engine says in the status bar
(:class:`EngineStatus`), the models (:class:`ModelsController`), the watch list and the camera topology
(:class:`WatchListController`, :class:`TopologyController`), targets and timeline (:class:`TargetsController`),
follow mode (:class:`FollowController`), appearance search (:class:`SearchController`) and exports
(:class:`ExportController`). All of them reach the engine and the database through one
:class:`EngineClient`; database reads run on Qt's thread pool, and the GUI thread only builds
widgets and paints.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QPoint, Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core import config as config_mod
from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.types import FrameResult, PipelineInfo, TrackedPerson
from reid_desktop.ui.alerts_panel import AlertsPanel
from reid_desktop.ui.banner import MessageBanner
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.dialogs import AboutDialog, SettingsDialog
from reid_desktop.ui.engine import Engine, EngineClient
from reid_desktop.ui.engine_status import EngineStatus
from reid_desktop.ui.exports import ExportController
from reid_desktop.ui.feeds import FeedGrid, FeedView
from reid_desktop.ui.follow_controller import FollowController
from reid_desktop.ui.health_panel import HealthPanel
from reid_desktop.ui.models_controller import ModelsController
from reid_desktop.ui.node_cameras import NodeCameras
from reid_desktop.ui.search_controller import SearchController
from reid_desktop.ui.search_panel import SearchPanel, SearchQuery
from reid_desktop.ui.settings import AppSettings, save_settings
from reid_desktop.ui.sources_controller import SourcesController
from reid_desktop.ui.targets_controller import TargetsController
from reid_desktop.ui.targets_panel import TargetsPanel, TimelinePanel
from reid_desktop.ui.tasks import Dispatcher
from reid_desktop.ui.topology_controller import TopologyController
from reid_desktop.ui.trainer_tab import TrainerTab
from reid_desktop.ui.watchlist_controller import WatchListController

log = logging.getLogger(__name__)

DISPLAY_INTERVAL_MS = 33  # pictures at most 30 times a second, fewer on a slower screen


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings, settings_file: Path | None = None,
                 extra_sources: list[SourceSpec] | None = None, settings_warning: str = "",
                 session_links: str = "") -> None:
        super().__init__()
        self.setWindowTitle("reid-desktop")
        self.setAcceptDrops(True)
        self.settings = settings
        self.settings_file = settings_file
        self.dispatcher = Dispatcher(self)
        self.engine = Engine(self)
        self.cameras = CameraList()
        self._live_dock_state: QByteArray | None = None
        self._closing = False

        self._build_central()
        self.client = EngineClient(self.engine, self.dispatcher, lambda: self.settings.history,
                                   self.banner.show_message)
        self._build_docks()
        self._build_controllers(session_links)
        self._build_actions()
        self.engine_status = EngineStatus(self.engine, self.statusBar(), self.banner, self.health_panel, self.grid,
                                          self.cameras, lambda: self.settings)
        self.sources.camera_gone.connect(self.engine_status.forget)
        self.grid.set_layout_mode(settings.layout, by_operator=False)
        self._restore_window_layout()

        self.engine.info_ready.connect(self._on_info_ready)
        self.engine.frame_processed.connect(self._on_frame_processed)
        self._display_timer = QTimer(self)  # the cameras' pictures, at most at the screen's refresh rate
        self._display_timer.setInterval(max(DISPLAY_INTERVAL_MS, round(1000 / max(self.screen().refreshRate(), 1))))
        self._display_timer.timeout.connect(self._show_pictures)
        self._display_timer.start()

        if settings_warning:
            self.banner.show_message(settings_warning)
        self.sources.restore(settings.sources, extra_sources or [])
        self.start_engine()

    # -- layout ------------------------------------------------------------------------------------

    def _build_central(self) -> None:
        self.tabs = QTabWidget()
        live = QWidget()
        layout = QVBoxLayout(live)
        layout.setContentsMargins(0, 0, 0, 0)
        self.banner = MessageBanner()
        layout.addWidget(self.banner)
        self.grid = FeedGrid()
        layout.addWidget(self.grid, 1)
        self.empty_hint = QLabel("No cameras yet. Add a video file (Ctrl+O), a stream camera (Ctrl+Shift+O) or a "
                                 "webcam (Ctrl+Shift+K) — or drop video files here.")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        layout.addWidget(self.empty_hint)
        self.tabs.addTab(live, "Live")
        self.trainer_tab = TrainerTab(self.dispatcher)
        self.tabs.addTab(self.trainer_tab, "Trainer")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _live_docks(self) -> tuple[QDockWidget, ...]:
        return (self.sources_dock, self.targets_dock, self.timeline_dock, self.search_dock, self.alerts_dock,
                self.health_dock)

    def _build_docks(self) -> None:
        self.sources = SourcesController(self, self.cameras, self.grid, self.client, self.banner,
                                         self._add_feed, self._remove_feed, lambda: self.settings, self.save_settings)
        self.sources.status_message.connect(self.statusBar().showMessage)
        self.sources_dock = self._dock("Sources", self.sources.panel, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.targets_panel = TargetsPanel()
        self.targets_dock = self._dock("Targets", self.targets_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.timeline_panel = TimelinePanel()
        self.timeline_dock = self._dock("Timeline", self.timeline_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.search_panel = SearchPanel()
        self.search_panel.top_k.setValue(self.settings.search_top_k)
        self.search_dock = self._dock("Appearance search", self.search_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.timeline_dock, self.search_dock)
        self.alerts_panel = AlertsPanel()
        self.alerts_dock = self._dock("Alerts", self.alerts_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.timeline_dock, self.alerts_dock)
        self.timeline_dock.raise_()
        self.resizeDocks([self.sources_dock, self.targets_dock], [220, 380], Qt.Orientation.Horizontal)
        self.health_panel = HealthPanel()
        self.health_dock = self._dock("Stream health", self.health_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.health_dock], [130], Qt.Orientation.Vertical)

    def _build_controllers(self, session_links: str) -> None:
        self.targets = TargetsController(self.client, self.targets_panel, self.timeline_panel, self.cameras, self,
                                         parent=self)
        self.targets.status_message.connect(self.statusBar().showMessage)
        self.targets.resume_requested.connect(lambda name: self.sources.set_paused(name, False))
        self.targets.labels_changed.connect(self._on_labels_changed)
        self.targets.targets_changed.connect(self._on_targets_changed)
        self.searches = SearchController(self.client, self.search_panel, self.search_dock, self.targets, self,
                                         parent=self)
        self.searches.top_k_changed.connect(self._remember_top_k)
        self.targets_panel.search_requested.connect(self.searches.search_identity)
        self.follow = FollowController(self.client, self.alerts_panel, self.grid, self.cameras, self.targets,
                                       lambda: self.settings, self.save_settings, parent=self)
        self.follow.status_message.connect(self.statusBar().showMessage)
        self.follow.resume_requested.connect(lambda name: self.sources.set_paused(name, False))
        self.engine.target_sighted.connect(self.follow.on_target_sighted)
        self.engine.watch_matched.connect(self.follow.on_watch_match)
        self.exports = ExportController(self.client, self.targets_panel, self, parent=self)
        self.exports.status_message.connect(self.statusBar().showMessage)
        self.exports.training_data_ready.connect(self._train_on)
        self.node_cameras = NodeCameras(self.client, self.sources.panel, self.grid, self.banner, self._add_feed,
                                        self._remove_feed, lambda: self.settings, self.save_settings, self)
        self.node_cameras.status_message.connect(self.statusBar().showMessage)
        self.models = ModelsController(self.client, self, lambda: self.settings, self.save_settings)
        self.models.status_message.connect(self.statusBar().showMessage)
        self.models.swapped.connect(self._on_info_ready)
        self.models.restart_requested.connect(self.start_engine)
        self.trainer_tab.model_ready.connect(self.models.use_reid_model)
        self.watch_list = WatchListController(self.client, self, lambda: self.settings, self.save_settings)
        self.watch_list.status_message.connect(self.statusBar().showMessage)
        self.topology = TopologyController(self.client, self, self.cameras, session_links, lambda: self.settings,
                                           self.save_settings)

    def _action(self, menu: QMenu, text: str, slot: Callable[[], Any], shortcut: str | QKeySequence.StandardKey = "",
                ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions(self.sources.add_actions())
        file_menu.addSeparator()
        export = self.exports.export_dialog
        self._action(file_menu, "Export target sightings (CSV)…", lambda: export("csv"), "Ctrl+E")
        self._action(file_menu, "Export target sightings (JSON)…", lambda: export("json"))
        self._action(file_menu, "Export target report (HTML)…", lambda: export("html"), "Ctrl+Shift+E")
        self._action(file_menu, "Export confirmed people as training data…", self.exports.export_training_data_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "Settings…", self.settings_dialog, QKeySequence.StandardKey.Preferences)
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)

        models_menu = bar.addMenu("&Models")
        self._action(models_menu, "Get a re-id model…", self.models.get_reid_model_dialog, "Ctrl+Shift+M")
        self._action(models_menu, "Prepare faster detector…", self.models.prepare_detector_dialog)

        sources_menu = bar.addMenu("&Sources")
        sources_menu.addActions(self.sources.camera_actions())
        self._action(sources_menu, "Pause all", lambda: self.sources.pause_all(True))
        self._action(sources_menu, "Resume all", lambda: self.sources.pause_all(False))
        sources_menu.addSeparator()
        self._action(sources_menu, "Camera topology…", self.topology.dialog, "Ctrl+T")

        view_menu = bar.addMenu("&View")
        for label, mode, key in (("Automatic grid", "auto", "Ctrl+0"), ("Single feed", "1", "Ctrl+1"),
                                 ("2 × 2", "2x2", "Ctrl+2"), ("3 × 3", "3x3", "Ctrl+3")):
            self._action(view_menu, label, functools.partial(self.set_layout_mode, mode), key)
        self._action(view_menu, "Restore maximised feed", lambda: self.grid.toggle_maximised(self.grid.maximised or ""),
                     "Esc")
        self._action(view_menu, "Full screen", self._toggle_full_screen, "F11")
        self.act_in_step = self._action(view_menu, "Pictures in step with analysis", self._toggle_in_step, "Ctrl+K")
        self.act_in_step.setCheckable(True)
        self.act_in_step.setChecked(self.settings.pictures_in_step)
        self.act_in_step.setToolTip("Each picture waits for the analysis of its moment (up to 2 s), so every box "
                                    "stays on its person; off: pictures are shown as they come, boxes follow")
        view_menu.addSeparator()
        for dock in self._live_docks():
            view_menu.addAction(dock.toggleViewAction())

        targets_menu = bar.addMenu("&Targets")
        self._action(targets_menu, "Stop following selected", self.targets_panel._untarget_selected,
                     "Ctrl+Backspace")
        self._action(targets_menu, "Merge the two selected", self.targets_panel._merge_selected, "Ctrl+M")
        self._action(targets_menu, "Search with an image…", self.searches.search_with_image_file,
                     QKeySequence.StandardKey.Find)
        self._action(targets_menu, "Watch list…", self.watch_list.dialog, "Ctrl+L")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "About reid-desktop", self.about_dialog, "F1")

    def _restore_window_layout(self) -> None:
        """Where the operator left the window and its docks; a first start gets a sensible size."""
        state = QByteArray.fromBase64(self.settings.window_state.encode("ascii", "ignore"))
        if not state.isEmpty():
            self.restoreState(state)  # the docks first: their sizes bound the window's
        geometry = QByteArray.fromBase64(self.settings.window_geometry.encode("ascii", "ignore"))
        if geometry.isEmpty() or not self.restoreGeometry(geometry):
            self.resize(1400, 860)

    def _remember_window_layout(self) -> None:
        state = self._live_dock_state or self.saveState()  # on the Trainer tab the live docks are hidden
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        self.settings.window_state = bytes(state.toBase64().data()).decode("ascii")

    def _on_tab_changed(self, index: int) -> None:
        """The camera docks belong to the live view; the Trainer tab gets the whole window."""
        on_trainer = self.tabs.widget(index) is self.trainer_tab
        if on_trainer:
            self._live_dock_state = self.saveState()
            for dock in self._live_docks():
                dock.hide()
        elif self._live_dock_state is not None:
            self.restoreState(self._live_dock_state)
            self._live_dock_state = None

    # -- engine ------------------------------------------------------------------------------------

    def start_engine(self) -> None:
        try:
            config = self.settings.pipeline_config()
        except config_mod.ConfigError as exc:
            self.banner.show_message(f"Settings: {exc}")
            config = config_mod.PipelineConfig()
        try:
            config = config_mod.apply(config, {"matcher.camera_links": self.topology.running(
                config.matcher.camera_links)})
        except config_mod.ConfigError as exc:  # the saved links contradict the demo's
            self.banner.show_message(f"Camera topology: {exc}")
        self.engine_status.loading()
        self.engine.start(config, self.settings.history, self._engine_sources)

    def _engine_sources(self) -> tuple[list[SourceSpec], set[str]]:
        """What the engine runs, read at every (re)start: the cameras in the list now and which are paused."""
        return self.cameras.specs(), self.cameras.paused()

    def _on_info_ready(self, info: PipelineInfo) -> None:
        self.engine_status.show_info(info)
        self.models.offer_reid_model(info)
        self.targets.refresh()
        self.follow.load()
        if self.settings.watch_list:
            self.watch_list.push()

    def _toggle_in_step(self) -> None:
        self.settings.pictures_in_step = self.act_in_step.isChecked()
        for feed in self.grid.feeds.values():
            feed.in_step = self.settings.pictures_in_step
        self.save_settings()

    def _show_pictures(self) -> None:
        """The newest decoded picture of each visible, running camera (older ones were never converted)."""
        for frame in self.engine.pictures.take():
            feed = self.grid.feeds.get(frame.source_id)
            if feed is not None and feed.isVisible() and not feed.paused:
                feed.show_picture(frame)
        for feed in self.grid.feeds.values():  # held pictures whose analysis is now due
            feed.tick()
        self.node_cameras.remote.show_pictures()

    def _on_frame_processed(self, result: FrameResult) -> None:
        feed = self.grid.feeds.get(result.source_id)
        if feed is not None:
            feed.show_result(result)

    def _on_labels_changed(self, labels: dict[int, str]) -> None:
        for feed in self.grid.feeds.values():
            feed.names = labels

    def _on_targets_changed(self, target_ids: set[int]) -> None:
        for feed in self.grid.feeds.values():
            feed.target_ids = target_ids
            feed.update()

    # -- sources -----------------------------------------------------------------------------------

    def _add_feed(self, source_id: str, title: str) -> FeedView:
        """A feed in the wall that names people and follows the one clicked, as every feed does."""
        feed = FeedView(source_id, title)
        feed.names, feed.target_ids = self.targets.labels, self.targets.target_ids
        feed.person_clicked.connect(lambda _source, person, _crop: self.targets.follow_clicked(person))
        feed.person_context_requested.connect(self._on_person_context)
        self.grid.add_feed(feed)
        self.empty_hint.hide()
        return feed

    def _remove_feed(self, source_id: str) -> None:
        self.grid.remove_feed(source_id)
        self.empty_hint.setVisible(not self.grid.feeds)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.sources.add_dropped([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])
        event.acceptProposedAction()

    def set_layout_mode(self, mode: str) -> None:
        self.grid.set_layout_mode(mode)
        self.settings.layout = mode
        self.save_settings()

    def _toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # -- people in the feeds -----------------------------------------------------------------------

    def _on_person_context(self, source_id: str, person: TrackedPerson, crop: np.ndarray | None,
                           where: QPoint) -> None:
        menu = QMenu(self)
        identity = person.identity_id
        follow = menu.addAction("Follow this person")
        unfollow = menu.addAction("Stop following")
        similar = menu.addAction("Find similar in history")
        follow.setEnabled(identity is not None and not person.is_target)
        unfollow.setEnabled(identity is not None and person.is_target)
        similar.setEnabled(crop is not None)
        chosen = menu.exec(where)
        if chosen is follow and identity is not None:
            self.targets.set_target(identity, True)
        elif chosen is unfollow and identity is not None:
            self.targets.set_target(identity, False)
        elif chosen is similar and crop is not None:
            label = f"#{identity} in {source_id}" if identity is not None else f"a person in {source_id}"
            self.searches.search(SearchQuery(crop, identity, label))

    def _remember_top_k(self, k: int) -> None:
        self.settings.search_top_k = k

    def _train_on(self, folder: str) -> None:
        """An exported training data set: checked in the Trainer tab, which comes forward."""
        self.trainer_tab.data_edit.setText(folder)
        self.trainer_tab.check_dataset()
        self.tabs.setCurrentWidget(self.trainer_tab)

    # -- settings, model swap, about ---------------------------------------------------------------

    def settings_dialog(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() and dialog.result_settings is not None:
            self.apply_settings(dialog.result_settings)

    def apply_settings(self, updated: AppSettings) -> None:
        restart = (updated.pipeline != self.settings.pipeline or updated.history != self.settings.history)
        if updated.history != self.settings.history:  # another database: its nodes' cameras, not these
            self.node_cameras.forget()
            updated.watched_node_cameras = []
        self.settings = updated
        self.save_settings()
        if restart:
            self.statusBar().showMessage("Settings changed: restarting processing", 4000)
            self.start_engine()

    def about_dialog(self) -> None:
        AboutDialog(self, self.engine_status.model_label.text()).exec()

    def save_settings(self) -> None:
        try:
            save_settings(self.settings, self.settings_file)
        except OSError as exc:
            self.banner.show_message(f"Could not save the settings: {exc}")

    # -- shutdown ----------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop everything and commit. If the engine is in a long step (a model being built), the window says so
        and closes by itself once the step is over: a thread still running must never be torn down (Qt aborts).
        """
        if not self._closing:
            self._closing = True
            self._remember_window_layout()
            self.targets.stop()
            self.engine_status.stop()
            self._display_timer.stop()
            self.node_cameras.stop()
            self.trainer_tab.shutdown()
            self.save_settings()
            self.engine.idle.connect(self.close)
        if self.engine.stop(timeout_s=2.0):  # cancels the run: sources stop, the store commits and closes
            QThreadPool.globalInstance().waitForDone(3000)
            event.accept()
            return
        self.tabs.setEnabled(False)
        self.menuBar().setEnabled(False)
        self.engine_status.model_label.setText("Closing: waiting for the current processing step (a model load) to "
                                               "finish…")
        event.ignore()
