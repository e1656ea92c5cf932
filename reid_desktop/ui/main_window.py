"""The operator's main window: video wall, sources, targets, timeline, appearance search.

The window owns the :class:`Engine` (the pipeline thread), lays out the panels and wires them to
small controllers: the cameras (:class:`CameraList`, without Qt), targets and timeline
(:class:`TargetsController`), appearance search (:class:`SearchController`) and exports
(:class:`ExportController`). All of them reach the engine and the database through one
:class:`EngineClient`; database reads run on Qt's thread pool, and the GUI thread only builds
widgets and paints.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shiboken6
from PySide6.QtCore import QByteArray, QPoint, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core import config as config_mod
from reid_desktop.core.capture.sources import SourceKind, SourceSpec
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.core.identity.watchlist import WatchPictures
from reid_desktop.core.redaction import join_credentials, redact, strip_secrets
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.interface import CameraHealth, StorageHealth
from reid_desktop.core.store.live_boxes import hides_credentials, remote_source_id
from reid_desktop.core.types import FrameResult, PipelineInfo, SourceHealth, SourceState, SourceStatus, TrackedPerson
from reid_desktop.core.vision.detector_preparation import DetectorPreparation
from reid_desktop.core.vision.models import load_embedder
from reid_desktop.ui.alerts_panel import AlertsPanel
from reid_desktop.ui.cameras import Added, CameraError, CameraList, parse_rate, rate_choices, rate_text
from reid_desktop.ui.detector_dialog import PrepareDetectorDialog
from reid_desktop.ui.dialogs import AboutDialog, SettingsDialog, StreamDialog
from reid_desktop.ui.engine import Engine, EngineClient
from reid_desktop.ui.exports import ExportController
from reid_desktop.ui.feeds import FeedGrid, FeedView
from reid_desktop.ui.follow_controller import FollowController
from reid_desktop.ui.health_panel import HealthPanel, falls_behind
from reid_desktop.ui.model_dialog import GetReidModelDialog
from reid_desktop.ui.remote_feeds import RemoteFeeds
from reid_desktop.ui.search_controller import SearchController
from reid_desktop.ui.search_panel import SearchPanel, SearchQuery
from reid_desktop.ui.settings import AppSettings, WatchedPerson, save_settings
from reid_desktop.ui.sources_panel import SourcesPanel
from reid_desktop.ui.targets_controller import TargetsController
from reid_desktop.ui.targets_panel import TargetsPanel, TimelinePanel
from reid_desktop.ui.tasks import Dispatcher
from reid_desktop.ui.topology_dialog import TopologyDialog
from reid_desktop.ui.trainer_tab import TrainerTab
from reid_desktop.ui.watchlist_dialog import WatchListDialog

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.m4v *.mpg *.mpeg *.ts *.webm *.wmv);;All files (*)"
_VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv", ".h264"}
DISPLAY_INTERVAL_MS = 33  # pictures at most 30 times a second, fewer on a slower screen
NODES_INTERVAL_MS = 2000  # processing nodes write their health every 2 s


class MessageBanner(QWidget):
    """A dismissable, non-blocking strip for errors the operator must see (never a modal traceback)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet("background: #7a1f1f; color: white;")
        self.setAutoFillBackground(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: white;")
        layout.addWidget(self.label, 1)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.clear)
        layout.addWidget(close)
        self.messages: list[str] = []
        self._keyed: dict[str, str] = {}  # conditions that last (the database is full): one line each, updated
        self.hide()

    def show_message(self, message: str, key: str | None = None) -> None:
        """Show a line; with ``key``, it replaces that key's previous line until :meth:`clear_key`."""
        if key is not None:
            previous = self._keyed.get(key)
            self._keyed[key] = message
            self.messages = [message if m == previous else m for m in self.messages]
        if message not in self.messages:
            self.messages = [*self.messages[-3:], message]
        self._refresh()

    def clear_key(self, key: str) -> None:
        message = self._keyed.pop(key, None)
        if message in self.messages:
            self.messages.remove(message)
            self._refresh()

    def _refresh(self) -> None:
        self.label.setText("\n".join(self.messages))
        self.setVisible(bool(self.messages))

    def clear(self) -> None:
        self.messages = []
        self._keyed = {}
        self.hide()


class MainWindow(QMainWindow):
    reid_model_swapped = Signal(object)  # PipelineInfo of the pipeline after a hot swap

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
        self.remote = RemoteFeeds(dataclasses.replace(settings.pipeline_config().sources, realtime=True, loop=True),
                                  parent=self)  # node cameras watched live
        self._behind: dict[str, str] = {}  # camera -> why it falls behind ("" when it does not)
        self._session_links = session_links  # camera links of this session's cameras (the demo's), not saved
        self._live_dock_state: QByteArray | None = None
        self._closing = False
        self._info: PipelineInfo | None = None  # the engine's last word on its models

        self._build_central()
        self.client = EngineClient(self.engine, self.dispatcher, lambda: self.settings.history,
                                   self.banner.show_message)
        self._build_docks()
        self._build_controllers()
        self._build_actions()
        self._build_status_bar()
        self.grid.set_layout_mode(settings.layout, by_operator=False)
        self._restore_window_layout()

        self.engine.info_ready.connect(self._on_info_ready)
        self.engine.frame_processed.connect(self._on_frame_processed)
        self.engine.source_changed.connect(self._on_source_changed)
        self.engine.health_reported.connect(self._on_health_reported)
        self.engine.errored.connect(self._on_engine_error)
        self.engine.storage_changed.connect(self._on_storage_changed)
        self.engine.preparation_progressed.connect(self._on_preparation_progressed)
        self.engine.restarting.connect(self._on_engine_restarting)
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(1000)
        self._fps_timer.timeout.connect(self._update_fps)
        self._fps_timer.start()
        self._display_timer = QTimer(self)  # the cameras' pictures, at most at the screen's refresh rate
        self._display_timer.setInterval(max(DISPLAY_INTERVAL_MS, round(1000 / max(self.screen().refreshRate(), 1))))
        self._display_timer.timeout.connect(self._show_pictures)
        self._display_timer.start()
        self._nodes_timer = QTimer(self)  # other machines' cameras on a shared database
        self._nodes_timer.setInterval(NODES_INTERVAL_MS)
        self._nodes_timer.timeout.connect(self._read_node_cameras)
        self._nodes_timer.start()
        self._reading_nodes = False
        self._watch_at_start = set(settings.watched_node_cameras)  # opened again once the nodes' list names them

        if settings_warning:
            self.banner.show_message(settings_warning)
        for saved in settings.sources:
            self._show_camera(self.cameras.restore(saved))
        for spec in extra_sources or []:
            self._show_camera(self.cameras.add_session(spec))
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
        self.trainer_tab.model_ready.connect(self.use_reid_model)
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
        self.act_add_file = QAction("Add video file…", self, shortcut=QKeySequence(QKeySequence.StandardKey.Open))
        self.act_add_stream = QAction("Add stream camera…", self, shortcut=QKeySequence("Ctrl+Shift+O"))
        self.act_add_webcam = QAction("Add webcam…", self, shortcut=QKeySequence("Ctrl+Shift+K"))
        self.act_pause = QAction("Pause / resume", self, shortcut=QKeySequence("Ctrl+P"))
        self.act_rename_source = QAction("Rename…", self, shortcut=QKeySequence("F2"))
        self.act_remove_source = QAction("Remove", self)
        self.act_every_frame = QAction("Analyse every frame", self, checkable=True)
        self.act_every_frame.setToolTip("For a video file: analyse all its frames, slower than its own pace, "
                                        "instead of playing it in real time")
        self.act_analysis_rate = QAction("Analysis rate…", self)
        self.act_analysis_rate.setToolTip("At most this many frames of the camera analysed a second; the others are "
                                          "shown with the last boxes (spares the machine for other cameras)")
        for action, short in ((self.act_add_file, "+ File"), (self.act_add_stream, "+ Stream"),
                              (self.act_add_webcam, "+ Webcam")):
            action.setIconText(short)
            action.setToolTip(f"{action.text()} ({action.shortcut().toString()})")
        self.sources_panel = SourcesPanel([self.act_add_file, self.act_add_stream, self.act_add_webcam])
        self.sources_panel.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.sources_panel.list.addActions([self.act_pause, self.act_rename_source, self.act_remove_source,
                                            self.act_every_frame, self.act_analysis_rate])
        self.sources_panel.list.currentItemChanged.connect(lambda *_: self._show_camera_options())
        self.act_remove_source.setShortcut(QKeySequence.StandardKey.Delete)
        self.act_remove_source.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.sources_panel.watch_requested.connect(self._on_watch_requested)
        self.sources_dock = self._dock("Sources", self.sources_panel, Qt.DockWidgetArea.LeftDockWidgetArea)

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

    def _build_controllers(self) -> None:
        self.targets = TargetsController(self.client, self.targets_panel, self.timeline_panel, self.cameras, self,
                                         parent=self)
        self.targets.status_message.connect(self.statusBar().showMessage)
        self.targets.resume_requested.connect(lambda name: self.set_paused(name, False))
        self.targets.labels_changed.connect(self._on_labels_changed)
        self.targets.targets_changed.connect(self._on_targets_changed)
        self.searches = SearchController(self.client, self.search_panel, self.search_dock, self.targets, self,
                                         parent=self)
        self.searches.top_k_changed.connect(self._remember_top_k)
        self.targets_panel.search_requested.connect(self.searches.search_identity)
        self.follow = FollowController(self.client, self.alerts_panel, self.grid, self.cameras, self.targets,
                                       lambda: self.settings, self.save_settings, parent=self)
        self.follow.status_message.connect(self.statusBar().showMessage)
        self.follow.resume_requested.connect(lambda name: self.set_paused(name, False))
        self.engine.target_sighted.connect(self.follow.on_target_sighted)
        self.engine.watch_matched.connect(self.follow.on_watch_match)
        self.exports = ExportController(self.client, self.targets_panel, self, parent=self)
        self.exports.status_message.connect(self.statusBar().showMessage)
        self.exports.training_data_ready.connect(self._train_on)

    def _action(self, menu: QMenu, text: str, slot: Callable[[], Any], shortcut: str | QKeySequence.StandardKey = "",
                ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.act_add_file.triggered.connect(self.add_file_dialog)
        self.act_add_stream.triggered.connect(self.add_stream_dialog)
        self.act_add_webcam.triggered.connect(self.add_webcam_dialog)
        self.act_pause.triggered.connect(lambda: self._with_current_source(self.toggle_pause))
        self.act_rename_source.triggered.connect(lambda: self._with_current_source(self.rename_source_dialog))
        self.act_remove_source.triggered.connect(lambda: self._with_current_source(self.remove_source))
        self.act_every_frame.triggered.connect(
            lambda checked: self._with_current_source(lambda name: self.set_every_frame(name, checked)))
        self.act_analysis_rate.triggered.connect(lambda: self._with_current_source(self.analysis_rate_dialog))

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for action in (self.act_add_file, self.act_add_stream, self.act_add_webcam):
            file_menu.addAction(action)
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
        self._action(models_menu, "Get a re-id model…", self.get_reid_model_dialog, "Ctrl+Shift+M")
        self._action(models_menu, "Prepare faster detector…", self.prepare_detector_dialog)

        sources_menu = bar.addMenu("&Sources")
        for action in (self.act_pause, self.act_rename_source, self.act_remove_source, self.act_every_frame,
                       self.act_analysis_rate):
            sources_menu.addAction(action)
        self._action(sources_menu, "Pause all", lambda: self._pause_all(True))
        self._action(sources_menu, "Resume all", lambda: self._pause_all(False))
        sources_menu.addSeparator()
        self._action(sources_menu, "Camera topology…", self.topology_dialog, "Ctrl+T")

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
        self._action(targets_menu, "Watch list…", self.watch_list_dialog, "Ctrl+L")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "About reid-desktop", self.about_dialog, "F1")

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.model_label = QLabel("Loading models…")
        self.warning_label = QLabel()
        self.warning_label.setStyleSheet("color: #d33; font-weight: bold;")
        self.fps_label = QLabel("0.0 fps")
        self.preparation_label = QLabel()  # the faster detector being prepared in the background
        self.preparation_label.hide()
        status.addPermanentWidget(self.preparation_label)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.warning_label)
        self.streams_label = QLabel()  # cameras whose analysis falls behind
        self.streams_label.setStyleSheet("color: #d33; font-weight: bold;")
        status.addPermanentWidget(self.streams_label)
        status.addPermanentWidget(self.fps_label)

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
            config = config_mod.apply(config, {"matcher.camera_links": self._links_with_session(
                config.matcher.camera_links)})
        except config_mod.ConfigError as exc:  # the saved links contradict the demo's
            self.banner.show_message(f"Camera topology: {exc}")
        self.model_label.setText("Loading models…")
        self.warning_label.clear()
        self.engine.start(config, self.settings.history, self._engine_sources)

    def _links_with_session(self, saved: str) -> str:
        """The saved camera links and those of this session's cameras (the demo's halves overlap)."""
        return "; ".join(filter(None, (saved, self._session_links)))

    def _engine_sources(self) -> tuple[list[SourceSpec], set[str]]:
        """What the engine runs, read at every (re)start: the cameras in the list now and which are paused."""
        return self.cameras.specs(), self.cameras.paused()

    def _on_preparation_progressed(self, news: DetectorPreparation) -> None:
        """Progress in the status bar while it runs; its end as a message (the detector label shows the switch)."""
        if news.finished:
            self.preparation_label.hide()
            self.statusBar().showMessage(news.text, 10_000)
        else:
            self.preparation_label.setText(f"Preparing faster detector {news.done + 1}/{news.total}…")
            self.preparation_label.setToolTip(f"{news.text}\nIn the background at low priority; the cameras switch "
                                              "to the fastest checked runtime when it is ready, without stopping.")
            self.preparation_label.show()
        if self._info is not None:
            self.model_label.setToolTip(self._model_notes(self._info))

    def _model_notes(self, info: PipelineInfo) -> str:
        """The detector label's tooltip: what runs, and how to make it faster where the operator can."""
        notes = [f"Re-id model: {info.embedder_description}"] if info.embedder_description else []
        if ("(PyTorch" in info.detector and self.settings.pipeline_config().detector.runtime == "auto"
                and self.preparation_label.isHidden()):  # while it is prepared in the background: no advice
            notes.append("The detector runs in PyTorch: Models > Prepare faster detector… makes it several times "
                         "faster on most machines")
        requested = self.settings.pipeline_config().reid.providers
        if not info.embedder_is_fallback and info.provider.startswith("CPU") and requested not in ("cuda", "tensorrt"):
            notes.append("No usable GPU found: ONNX Runtime runs on the CPU")
        return "\n".join(notes)

    def _on_info_ready(self, info: PipelineInfo) -> None:
        self.banner.clear_key("engine")
        self._info = info
        device = f" on {info.detector_device}" if info.detector_device else ""
        provider = info.provider.replace("ExecutionProvider", "")
        about = f" ({info.embedder_description})" if info.embedder_description else ""
        self.model_label.setText(f"Detector: {info.detector}{device}   Re-id: {info.embedder}{about} "
                                 f"[{provider} {info.embedder_precision.upper()}]   "
                                 f"threshold {info.match_threshold:.2f}")
        self.model_label.setToolTip(self._model_notes(info))
        warnings = []
        if info.embedder_is_fallback:
            warnings.append("⚠ No re-id model: using the colour-texture fallback (less accurate); "
                            "Models > Get a re-id model…")
            self._offer_reid_model("No re-id model is installed: the colour-texture descriptor runs, and people keep "
                                   "their identity across cameras much less often.")
        elif info.embedder_imagenet_only:
            warnings.append("⚠ The re-id model was never trained for re-id (ImageNet features); "
                            "Models > Get a re-id model…")
            self._offer_reid_model("The re-id model runs ImageNet features, which were never trained to tell people "
                                   "apart.")
        requested = self.settings.pipeline_config().reid.providers
        if not info.embedder_is_fallback and info.provider.startswith("CPU") and requested in ("cuda", "tensorrt"):
            warnings.append(f"⚠ {requested.upper()} not usable: re-id fell back to CPU")
        self.warning_label.setText("   ".join(warnings))
        self.warning_label.setToolTip("\n".join(info.warnings))
        self.targets.refresh()
        self.follow.load()
        if self.settings.watch_list:
            self._push_watch_list()

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
        self.remote.show_pictures()

    def _on_frame_processed(self, result: FrameResult) -> None:
        feed = self.grid.feeds.get(result.source_id)
        if feed is not None:
            feed.show_result(result)

    def _on_source_changed(self, status: SourceStatus) -> None:
        camera = self.cameras.update(status)
        if camera is None:  # removed meanwhile
            return
        feed = self.grid.feeds.get(status.source_id)
        if feed is not None:
            feed.set_status(status)
        self.sources_panel.set_state(camera.name, camera.state, camera.reason, camera.paused)
        if status.state is SourceState.FAILED:
            self.banner.show_message(f"Camera {status.source_id} failed: {status.reason}")
            self.statusBar().showMessage(f"{status.source_id}: {status.reason}", 10000)

    def _on_health_reported(self, health: SourceHealth) -> None:
        if health.source_id not in self.cameras:  # removed meanwhile
            return
        feed = self.grid.feeds.get(health.source_id)
        display_latency = feed.display_latency_s if feed is not None and health.state is SourceState.LIVE else None
        self.health_panel.show_health(health, display_latency)
        self._behind[health.source_id] = falls_behind(health, display_latency)
        behind = [f"{name}: {why}" for name, why in self._behind.items() if why and name in self.cameras]
        self.streams_label.setText(("⚠ Behind: " + "; ".join(behind)) if behind else "")

    def _on_engine_error(self, message: str) -> None:
        self.model_label.setText("Processing stopped")
        self.banner.show_message(f"{message}. Fix it in Settings (Ctrl+,); the cameras stay in the list.")

    def _on_engine_restarting(self, message: str, delay_s: float) -> None:
        self.model_label.setText("Processing restarting…")
        self.banner.show_message(f"Processing stopped unexpectedly ({message}); restarting in {delay_s:.0f} s with "
                                 "the same cameras", key="engine")

    def _on_storage_changed(self, health: StorageHealth) -> None:
        """The database stopped (or resumed) saving: a lasting banner line while it lasts, the video goes on."""
        if health.ok:
            self.banner.clear_key("storage")
            self.statusBar().showMessage("Saving sightings again", 6000)
        else:
            self.banner.show_message(health.message[:1].upper() + health.message[1:], key="storage")

    def _read_node_cameras(self) -> None:
        """The processing nodes' cameras and health, read in the background (one read at a time)."""
        if not isinstance(self.settings.history, PostgresLocation):
            self.sources_panel.set_node_cameras([])
            return
        if self._reading_nodes:
            return
        self._reading_nodes = True

        def shown(cameras: list[CameraHealth] | None) -> None:
            self._reading_nodes = False
            self.sources_panel.set_node_cameras(cameras or [])
            self._watch_again(cameras or [])

        def failed(message: str) -> None:
            self._reading_nodes = False
            self.statusBar().showMessage(f"Processing nodes unknown: {message}", NODES_INTERVAL_MS)

        self.client.read(lambda store: store.node_cameras(), shown, on_error=failed)

    def _on_watch_requested(self, camera: CameraHealth, watch: bool) -> None:
        if watch:
            self.watch_node_camera(camera)
        else:
            self.stop_watching(remote_source_id(camera.node, camera.name))

    def _watch_again(self, cameras: list[CameraHealth]) -> None:
        """The node cameras watched when the window last closed, once the nodes' list names them (no questions:
        one whose password this station lacks is left to the operator)."""
        for camera in cameras:
            source_id = remote_source_id(camera.node, camera.name)
            if source_id in self._watch_at_start:
                self._watch_at_start.discard(source_id)
                self.watch_node_camera(camera, ask=False)

    def watch_node_camera(self, camera: CameraHealth, ask: bool = True) -> str | None:
        """Show a node's camera live in the wall (brought forward when it is there already); its feed's name, or
        None when this station cannot open its video (the banner says why: its history is here all the same).
        ``ask``: a password this station lacks is asked for."""
        source_id = remote_source_id(camera.node, camera.name)
        location = self.settings.history
        if source_id in self.remote.watched:
            self.grid.bring_forward(source_id, "first")
            return source_id
        uri, why_not = self.remote.playable(camera)
        if uri is None and ask and hides_credentials(camera.uri) and self._ask_node_camera_password(camera):
            uri, why_not = self.remote.playable(camera)
        if uri is None or not isinstance(location, PostgresLocation):
            self.banner.show_message(f"Only the history of {camera.name} (node {camera.node}) is on this station: "
                                     f"{why_not or 'not on a shared database'}")
            return None
        feed = FeedView(source_id, f"{camera.name} @ {camera.node}")
        feed.in_step = False  # the node's boxes carry the node's clock, not the moments of these pictures
        feed.names, feed.target_ids = self.targets.labels, self.targets.target_ids
        feed.person_clicked.connect(lambda _source, person, _crop: self.targets.follow_clicked(person))
        feed.person_context_requested.connect(self._on_person_context)
        self.grid.add_feed(feed)
        self.empty_hint.hide()
        self.remote.watch(location, camera, uri, feed)
        self.sources_panel.watching.add((camera.node, camera.name))
        if source_id not in self.settings.watched_node_cameras:
            self.settings.watched_node_cameras.append(source_id)
            self.save_settings()
        self.grid.bring_forward(source_id, "first")
        self.statusBar().showMessage(f"Watching {camera.name} of node {camera.node} live", 4000)
        return source_id

    def _ask_node_camera_password(self, camera: CameraHealth) -> bool:
        """A node's camera whose stream needs credentials: the operator gives them once, the keyring keeps them."""
        dialog = StreamDialog(self, set())
        dialog.setWindowTitle(f"Password of {camera.name} (node {camera.node})")
        dialog.name.setText(remote_source_id(camera.node, camera.name))
        dialog.url.setText(strip_secrets(camera.uri))
        dialog.name.setReadOnly(True)
        dialog.url.setReadOnly(True)
        if not dialog.exec():
            return False
        _name, url, user, password = dialog.values()
        full = join_credentials(url, user, password)
        if redact(full) != camera.uri:
            self.banner.show_message(f"These credentials do not fit {camera.uri}: give the user name and password "
                                     "the node uses")
            return False
        self.remote.remember_secret(camera, full)
        return True

    def stop_watching(self, source_id: str, by_operator: bool = True) -> None:
        """Take a node's camera off the wall; ``by_operator``: it is not opened again at the next start."""
        watched = self.remote.watched.get(source_id)
        if watched is None:
            return
        self.remote.unwatch(source_id)
        self.sources_panel.watching.discard((watched.camera.node, watched.camera.name))
        self.grid.remove_feed(source_id)
        self.empty_hint.setVisible(not self.grid.feeds)
        if by_operator and source_id in self.settings.watched_node_cameras:
            self.settings.watched_node_cameras.remove(source_id)
            self.save_settings()

    def _stop_watching_all(self) -> None:
        for source_id in list(self.remote.watched):
            self.stop_watching(source_id, by_operator=False)
        self.remote.close()

    def _update_fps(self) -> None:
        total = sum(feed.fps for name, feed in self.grid.feeds.items() if name not in self.remote.watched)
        self.fps_label.setText(f"{total:.1f} fps")

    def _on_labels_changed(self, labels: dict[int, str]) -> None:
        for feed in self.grid.feeds.values():
            feed.names = labels

    def _on_targets_changed(self, target_ids: set[int]) -> None:
        for feed in self.grid.feeds.values():
            feed.target_ids = target_ids
            feed.update()

    # -- sources -----------------------------------------------------------------------------------

    def add_source(self, uri: str, name: str = "", persist: bool = True, username: str = "",
                   password: str = "", paused: bool = False, every_frame: bool = False) -> str:
        """Add a camera to the list, the wall and the running engine; returns its (unique) name.

        Secrets (credentials, secret URL parameters) go to the OS keyring; the settings keep the URL without them.
        """
        added = self.cameras.add(uri, name, username=username, password=password, paused=paused, persist=persist,
                                 every_frame=every_frame)
        self._show_camera(added)
        name = added.camera.name
        if persist:
            self._save_cameras()
        if self.engine.control is not None:
            spec = added.camera.spec
            self.client.control(lambda c: c.add_source(spec), what=f"add {name}")
            if paused:
                self.client.control(lambda c: c.pause_source(name, True))
        return name

    def _show_camera(self, added: Added) -> None:
        """Show a camera of the list in this window (feed, list entry); the engine is told separately."""
        camera = added.camera
        if added.warning:
            self.banner.show_message(added.warning)
        feed = FeedView(camera.name, camera.name)
        feed.paused = camera.paused
        feed.in_step = self.settings.pictures_in_step
        feed.names, feed.target_ids = self.targets.labels, self.targets.target_ids
        feed.person_clicked.connect(lambda _source, person, _crop: self.targets.follow_clicked(person))
        feed.person_context_requested.connect(self._on_person_context)
        self.grid.add_feed(feed)
        self.sources_panel.add(camera.name, camera.spec.display_uri)
        self.sources_panel.set_state(camera.name, SourceState.CONNECTING, "", camera.paused)
        self.empty_hint.hide()

    def _save_cameras(self) -> None:
        self.settings.sources = self.cameras.saved()
        self.save_settings()

    def add_files(self, paths: list[str], every_frame: bool = False) -> list[str]:
        """Video files as cameras; played in real time unless ``every_frame`` (all frames analysed)."""
        return [self.add_source(str(Path(p)), every_frame=every_frame) for p in paths]

    def add_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add video files", "", VIDEO_FILTER)
        self.add_files(paths)

    def add_stream_dialog(self) -> None:
        dialog = StreamDialog(self, set(self.cameras.names()))
        if dialog.exec():
            name, url, user, password = dialog.values()
            self.add_source(url, name, username=user, password=password)

    def add_webcam_dialog(self) -> None:
        index, ok = QInputDialog.getInt(self, "Add webcam", "Webcam number (0 is the first camera):", 0, 0, 63)
        if ok:
            self.add_source(str(index))

    def _with_current_source(self, fn: Callable[[str], Any]) -> None:
        name = self.sources_panel.current()
        if name is not None:
            fn(name)

    def remove_source(self, name: str) -> None:
        if self.cameras.remove(name) is None:
            return
        self.grid.remove_feed(name)
        self.sources_panel.remove(name)
        self.health_panel.remove(name)
        self._behind.pop(name, None)
        self._save_cameras()
        self.empty_hint.setVisible(not self.cameras)
        if self.engine.control is not None:
            self.client.control(lambda c: c.remove_source(name), what=f"remove {name}")

    def toggle_pause(self, name: str) -> None:
        if name in self.cameras:
            self.set_paused(name, not self.cameras[name].paused)

    def set_paused(self, name: str, paused: bool) -> None:
        if name not in self.cameras:
            return
        camera = self.cameras.set_paused(name, paused)
        feed = self.grid.feeds[name]
        feed.paused = paused
        feed.update()
        self.sources_panel.set_state(name, camera.state, "", paused)
        self._save_cameras()
        self.client.control(lambda c: c.pause_source(name, paused), what=f"pause {name}")

    def _pause_all(self, paused: bool) -> None:
        for name in self.cameras.names():
            self.set_paused(name, paused)

    def rename_source_dialog(self, name: str) -> None:
        new, ok = QInputDialog.getText(self, "Rename camera", "New name:", text=name)
        if ok:
            self.rename_source(name, new.strip())

    def _show_camera_options(self) -> None:
        camera = self.cameras.get(self.sources_panel.current() or "")
        is_file = camera is not None and camera.spec.kind is SourceKind.FILE
        self.act_every_frame.setEnabled(is_file)
        self.act_every_frame.setChecked(is_file and camera is not None and not camera.spec.realtime)

    def set_every_frame(self, name: str, every_frame: bool) -> None:
        """Analyse all of a video file's frames, or play it in real time; the camera restarts with it."""
        if name not in self.cameras:
            return
        camera = self.cameras.set_every_frame(name, every_frame)
        self._save_cameras()
        self._show_camera_options()
        self._restart_camera(name, camera.spec, camera.paused)

    def analysis_rate_dialog(self, name: str) -> None:
        camera = self.cameras.get(name)
        if camera is None:
            return
        everyone = self.settings.pipeline_config().sources.analysis_fps
        choices = rate_choices(everyone)
        current = choices[0] if camera.spec.analysis_fps is None else rate_text(camera.spec.analysis_fps)
        if current not in choices:
            choices.append(current)
        text, ok = QInputDialog.getItem(self, "Analysis rate", f"Frames of {name} analysed a second:", choices,
                                        choices.index(current), editable=True)
        if not ok:
            return
        try:
            self.set_analysis_rate(name, parse_rate(text, everyone))
        except ValueError as exc:
            self.banner.show_message(str(exc))

    def set_analysis_rate(self, name: str, frames_per_s: float | None) -> None:
        """At most this many of the camera's frames analysed a second (None: the setting for all cameras)."""
        if name not in self.cameras:
            return
        camera = self.cameras.set_analysis_rate(name, frames_per_s)
        self._save_cameras()
        self._restart_camera(name, camera.spec, camera.paused)

    def _restart_camera(self, old: str, spec: SourceSpec, paused: bool) -> None:
        """The engine drops the camera and opens it again as ``spec`` says (a new name, another pace)."""
        self.client.control(lambda c: c.remove_source(old))
        self.client.control(lambda c: c.add_source(spec), what=f"restart {spec.source_id}")
        if paused:
            self.client.control(lambda c: c.pause_source(spec.source_id, True))

    def rename_source(self, old: str, new: str) -> None:
        """Renaming restarts the camera under its new name (the database files sightings by camera name)."""
        if not new or new == old or old not in self.cameras:
            return
        try:
            camera = self.cameras.rename(old, new)
        except CameraError as exc:
            self.banner.show_message(str(exc))
            return
        self.grid.rename_feed(old, new, new)
        self.sources_panel.rename(old, new)
        self.health_panel.remove(old)
        self._behind.pop(old, None)
        self._save_cameras()
        self._restart_camera(old, camera.spec, camera.paused)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        videos = [p for p in paths if Path(p).suffix.lower() in _VIDEO_SUFFIXES or Path(p).is_file()]
        self.add_files(videos)
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

    def prepare_detector_dialog(self) -> None:
        detector = self.settings.pipeline_config().detector
        dialog = PrepareDetectorDialog(detector.imgsz, detector.model, self)
        dialog.prepared.connect(self._detector_prepared)
        dialog.start()
        dialog.open()

    def get_reid_model_dialog(self, reason: str = "") -> GetReidModelDialog:
        """The catalogue; a model downloaded there replaces the running one (no restart)."""
        dialog = GetReidModelDialog(self, reason)
        dialog.installed.connect(self.use_reid_model)
        dialog.show()
        return dialog

    def _offer_reid_model(self, reason: str) -> None:
        """On the first start without a re-id-trained model, offer one once (not for sites that stay offline)."""
        if self.settings.reid_model_offered or not self.settings.pipeline_config().reid.allow_download:
            return
        self.settings.reid_model_offered = True
        self.save_settings()
        self.get_reid_model_dialog(reason)

    def _detector_prepared(self, label: str) -> None:
        if self.settings.pipeline_config().detector.runtime == "auto":
            self.statusBar().showMessage(f"Detector prepared: restarting processing with {label}", 6000)
            self.start_engine()

    def apply_settings(self, updated: AppSettings) -> None:
        restart = (updated.pipeline != self.settings.pipeline or updated.history != self.settings.history)
        if updated.history != self.settings.history:  # another database: its nodes' cameras, not these
            self._stop_watching_all()
            updated.watched_node_cameras = []
            self._watch_at_start = set()
        self.settings = updated
        self.save_settings()
        if restart:
            self.statusBar().showMessage("Settings changed: restarting processing", 4000)
            self.start_engine()

    def watch_list_dialog(self) -> None:
        threshold = self.engine.info.match_threshold if self.engine.info is not None else 0.6
        dialog = WatchListDialog(self.settings.watch_list, threshold, self)
        if dialog.exec():
            self.set_watch_list(dialog.people)

    def set_watch_list(self, people: list[WatchedPerson]) -> None:
        """Keep the watch list in the settings and hand it to the running pipeline."""
        self.settings.watch_list = people
        self.save_settings()
        self._push_watch_list()

    def _push_watch_list(self) -> None:
        """Read the pictures on the thread pool, then embed them in the engine (with its model)."""
        people = list(self.settings.watch_list)

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
                               lambda count: self.statusBar().showMessage(f"Watching for {count} people", 4000),
                               what="load the watch list")

        self.client.in_background(read, load, "read the watch list's pictures")

    def topology_dialog(self) -> TopologyDialog:
        """The topology editor (window-modal, not blocking): the links in the settings, and what the running
        cameras learned as suggestions when the engine answers."""
        matcher = self.settings.pipeline_config().matcher
        dialog = TopologyDialog(matcher.camera_links, self.cameras.names(), matcher.same_moment_s, self)

        def accepted() -> None:
            if dialog.result_links is not None:
                self.set_camera_links(dialog.result_links)

        def learned(suggestions: tuple[LinkSuggestion, ...]) -> None:
            if shiboken6.isValid(dialog):  # the answer may come after the dialog was closed
                dialog.set_suggestions(suggestions)

        dialog.accepted.connect(accepted)
        dialog.finished.connect(dialog.deleteLater)
        if self.engine.control is None:
            dialog.set_suggestions(None)
        else:
            self.client.submit(lambda p: p.commands.link_suggestions(), learned, what="read the learned links")
        dialog.open()
        return dialog

    def set_camera_links(self, links: str) -> None:
        """Keep the topology in the settings and hand it to the running matcher (no restart)."""
        self.settings.pipeline = {k: v for k, v in self.settings.pipeline.items() if k != "matcher.camera_links"}
        if links:
            self.settings.pipeline["matcher.camera_links"] = links
        self.save_settings()
        if self.engine.control is not None:
            running = self._links_with_session(links)
            self.client.submit(lambda p: p.commands.set_camera_links(running), what="change the camera topology")

    def use_reid_model(self, path: str) -> None:
        """Hot-swap the running pipeline's re-id model (the cameras keep running) and remember it."""

        def swap(pipeline: Pipeline) -> PipelineInfo:
            embedder, warnings = load_embedder(dataclasses.replace(pipeline.config.reid, model=path))
            return pipeline.set_embedder(embedder, warnings)

        def swapped(info: PipelineInfo) -> None:
            self.settings.pipeline["reid.model"] = path
            self.save_settings()
            self._on_info_ready(info)
            self.statusBar().showMessage(f"Re-id model switched to {Path(path).name}", 6000)
            self.reid_model_swapped.emit(info)

        self.client.submit(swap, swapped, what=f"switch to {Path(path).name}")

    def about_dialog(self) -> None:
        AboutDialog(self, self.model_label.text()).exec()

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
            self._fps_timer.stop()
            self._display_timer.stop()
            self._stop_watching_all()
            self.trainer_tab.shutdown()
            self.save_settings()
            self.engine.idle.connect(self.close)
        if self.engine.stop(timeout_s=2.0):  # cancels the run: sources stop, the store commits and closes
            QThreadPool.globalInstance().waitForDone(3000)
            event.accept()
            return
        self.tabs.setEnabled(False)
        self.menuBar().setEnabled(False)
        self.model_label.setText("Closing: waiting for the current processing step (a model load) to finish…")
        event.ignore()
