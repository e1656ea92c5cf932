"""The operator's main window: video wall, sources, targets, timeline, appearance search.

The window owns the :class:`Engine` (the pipeline thread) and is the only place that turns
operator actions into engine commands. Database reads run on Qt's thread pool through the
:class:`Dispatcher`; the GUI thread only builds widgets and paints.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QByteArray, QPoint, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core import config as config_mod
from reid_desktop.core import credentials
from reid_desktop.core.pipeline import Pipeline, PipelineInfo, Searcher
from reid_desktop.core.redaction import has_secrets, join_credentials, redact, strip_secrets
from reid_desktop.core.report import write_html_report
from reid_desktop.core.sources import SourceKind, SourceSpec
from reid_desktop.core.storage import SightingStore
from reid_desktop.core.store import HistoryReader, IdentitySummary, SearchHit, StorageHealth, TrackSegment
from reid_desktop.core.types import FrameResult, SourceState, SourceStatus, TrackedPerson
from reid_desktop.ui.dialogs import AboutDialog, SettingsDialog, StreamDialog
from reid_desktop.ui.engine import Engine
from reid_desktop.ui.feeds import FeedGrid, FeedView
from reid_desktop.ui.search_panel import SearchPanel, SearchQuery, SearchResult
from reid_desktop.ui.settings import AppSettings, SavedSource, save_settings
from reid_desktop.ui.sources_panel import SourcesPanel
from reid_desktop.ui.targets_panel import TargetsPanel, TimelinePanel
from reid_desktop.ui.tasks import Dispatcher
from reid_desktop.ui.trainer_tab import TrainerTab

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.m4v *.mpg *.mpeg *.ts *.webm *.wmv);;All files (*)"
_VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv", ".h264"}


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


def search_results(searcher: Searcher, store: HistoryReader, crop: np.ndarray, k: int) -> list[SearchResult]:
    """The ``k`` best-matching tracks with their pictures: many sightings of one track look alike, so more
    are fetched and each track is shown once, at its best score."""
    best_per_track: dict[int, SearchHit] = {}
    for hit in searcher.search(store, crop, 5 * k):
        best_per_track.setdefault(hit.sighting.track_row, hit)
    return [SearchResult(hit, store.track_thumbnail(hit.sighting.track_row))
            for hit in list(best_per_track.values())[:k]]


class MainWindow(QMainWindow):
    targets_refreshed = Signal()  # after the Targets panel shows the database's current targets
    search_finished = Signal()
    reid_model_swapped = Signal(object)  # PipelineInfo of the pipeline after a hot swap

    def __init__(self, settings: AppSettings, settings_file: Path | None = None,
                 extra_sources: list[SourceSpec] | None = None, settings_warning: str = "") -> None:
        super().__init__()
        self.setWindowTitle("reid-desktop")
        self.resize(1400, 860)
        self.setAcceptDrops(True)
        self.settings = settings
        self.settings_file = settings_file
        self.dispatcher = Dispatcher(self)
        self.engine = Engine(self)
        self._specs: dict[str, SourceSpec] = {}  # full URIs (with passwords) only in memory
        self._transient: set[str] = set()  # sources of this session only (--demo, files on the command line)
        self._paused: set[str] = set()
        self._states: dict[str, SourceState] = {}
        self._timeline_identity: int | None = None
        self._select_after_refresh: int | None = None
        self._live_dock_state: QByteArray | None = None
        self._labels: dict[int, str] = {}

        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self.grid.set_layout_mode(settings.layout)

        self.engine.info_ready.connect(self._on_info_ready)
        self.engine.frame_processed.connect(self._on_frame_processed)
        self.engine.source_changed.connect(self._on_source_changed)
        self.engine.errored.connect(self._on_engine_error)
        self.engine.storage_changed.connect(self._on_storage_changed)
        self.engine.restarting.connect(self._on_engine_restarting)
        self._refreshing = False  # a targets read is on the thread pool
        self._refresh_again = False  # and another was asked for meanwhile
        self._closing = False

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(2000)
        self._refresh_timer.timeout.connect(self.refresh_targets)
        self._refresh_timer.start()
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(1000)
        self._fps_timer.timeout.connect(self._update_fps)
        self._fps_timer.start()

        if settings_warning:
            self.banner.show_message(settings_warning)
        for saved in settings.sources:
            self._add_saved_source(saved)
        for spec in extra_sources or []:
            self.add_source(spec.uri, spec.name, persist=False)
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

    def _build_docks(self) -> None:
        self.act_add_file = QAction("Add video file…", self, shortcut=QKeySequence(QKeySequence.StandardKey.Open))
        self.act_add_stream = QAction("Add stream camera…", self, shortcut=QKeySequence("Ctrl+Shift+O"))
        self.act_add_webcam = QAction("Add webcam…", self, shortcut=QKeySequence("Ctrl+Shift+K"))
        self.act_pause = QAction("Pause / resume", self, shortcut=QKeySequence("Ctrl+P"))
        self.act_rename_source = QAction("Rename…", self, shortcut=QKeySequence("F2"))
        self.act_remove_source = QAction("Remove", self)
        for action, short in ((self.act_add_file, "+ File"), (self.act_add_stream, "+ Stream"),
                              (self.act_add_webcam, "+ Webcam")):
            action.setIconText(short)
            action.setToolTip(f"{action.text()} ({action.shortcut().toString()})")
        self.sources_panel = SourcesPanel([self.act_add_file, self.act_add_stream, self.act_add_webcam])
        self.sources_panel.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.sources_panel.list.addActions([self.act_pause, self.act_rename_source, self.act_remove_source])
        self.act_remove_source.setShortcut(QKeySequence.StandardKey.Delete)
        self.act_remove_source.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.sources_dock = self._dock("Sources", self.sources_panel, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.targets_panel = TargetsPanel()
        self.targets_dock = self._dock("Targets", self.targets_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.timeline_panel = TimelinePanel()
        self.timeline_dock = self._dock("Timeline", self.timeline_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.search_panel = SearchPanel()
        self.search_panel.top_k.setValue(self.settings.search_top_k)
        self.search_dock = self._dock("Appearance search", self.search_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.timeline_dock, self.search_dock)
        self.timeline_dock.raise_()
        self.resizeDocks([self.sources_dock, self.targets_dock], [220, 380], Qt.Orientation.Horizontal)

        self.targets_panel.renamed.connect(self.rename_identity)
        self.targets_panel.untarget_requested.connect(lambda i: self.set_target(i, False))
        self.targets_panel.merge_requested.connect(self._confirm_merge)
        self.targets_panel.timeline_requested.connect(self.show_timeline)
        self.targets_panel.search_requested.connect(self._search_target)
        self.timeline_panel.segment_activated.connect(self._on_segment_activated)
        self.timeline_panel.split_requested.connect(self._split_segment)
        self.search_panel.image_search_requested.connect(self.search_with_image_file)
        self.search_panel.confirmed.connect(self._on_search_confirmed)
        self.search_panel.rejected.connect(self._on_search_rejected)

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

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for action in (self.act_add_file, self.act_add_stream, self.act_add_webcam):
            file_menu.addAction(action)
        file_menu.addSeparator()
        self._action(file_menu, "Export target sightings (CSV)…", lambda: self.export_dialog("csv"), "Ctrl+E")
        self._action(file_menu, "Export target sightings (JSON)…", lambda: self.export_dialog("json"))
        self._action(file_menu, "Export target report (HTML)…", lambda: self.export_dialog("html"), "Ctrl+Shift+E")
        self._action(file_menu, "Export confirmed people as training data…", self.export_training_data_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "Settings…", self.settings_dialog, QKeySequence.StandardKey.Preferences)
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)

        sources_menu = bar.addMenu("&Sources")
        for action in (self.act_pause, self.act_rename_source, self.act_remove_source):
            sources_menu.addAction(action)
        self._action(sources_menu, "Pause all", lambda: self._pause_all(True))
        self._action(sources_menu, "Resume all", lambda: self._pause_all(False))

        view_menu = bar.addMenu("&View")
        for label, mode, key in (("Automatic grid", "auto", "Ctrl+0"), ("Single feed", "1", "Ctrl+1"),
                                 ("2 × 2", "2x2", "Ctrl+2"), ("3 × 3", "3x3", "Ctrl+3")):
            self._action(view_menu, label, functools.partial(self.set_layout_mode, mode), key)
        self._action(view_menu, "Restore maximised feed", lambda: self.grid.toggle_maximised(self.grid.maximised or ""),
                     "Esc")
        self._action(view_menu, "Full screen", self._toggle_full_screen, "F11")
        view_menu.addSeparator()
        for dock in (self.sources_dock, self.targets_dock, self.timeline_dock, self.search_dock):
            view_menu.addAction(dock.toggleViewAction())

        targets_menu = bar.addMenu("&Targets")
        self._action(targets_menu, "Stop following selected", self.targets_panel._untarget_selected,
                     "Ctrl+Backspace")
        self._action(targets_menu, "Merge the two selected", self.targets_panel._merge_selected, "Ctrl+M")
        self._action(targets_menu, "Search with an image…", self.search_with_image_file, QKeySequence.StandardKey.Find)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "About reid-desktop", self.about_dialog, "F1")

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.model_label = QLabel("Loading models…")
        self.warning_label = QLabel()
        self.warning_label.setStyleSheet("color: #d33; font-weight: bold;")
        self.fps_label = QLabel("0.0 fps")
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.warning_label)
        status.addPermanentWidget(self.fps_label)

    def _on_tab_changed(self, index: int) -> None:
        """The camera docks belong to the live view; the Trainer tab gets the whole window."""
        on_trainer = self.tabs.widget(index) is self.trainer_tab
        if on_trainer:
            self._live_dock_state = self.saveState()
            for dock in (self.sources_dock, self.targets_dock, self.timeline_dock, self.search_dock):
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
        self.model_label.setText("Loading models…")
        self.warning_label.clear()
        self.engine.start(config, self.settings.database_path, self._engine_sources)

    def _engine_sources(self) -> tuple[list[SourceSpec], set[str]]:
        """What the engine runs, read at every (re)start: the cameras in the list now and which are paused."""
        return list(self._specs.values()), set(self._paused)

    def _control_call(self, command: Callable[[Any], Future[Any]], on_result: Callable[[Any], Any] | None = None,
                      what: str = "") -> bool:
        """Send a command to the engine; failures become a banner line, never a dialog storm."""
        control = self.engine.control
        if control is None:
            self.banner.show_message(f"Cannot {what or 'do that'}: processing is not running")
            return False

        def failed(message: str) -> None:
            self.banner.show_message(f"Could not {what or 'do that'}: {message}")

        self.dispatcher.when_done(command(control), on_result, failed)
        return True

    def _submit(self, fn: Callable[[Pipeline], Any], on_result: Callable[[Any], Any] | None = None,
                what: str = "") -> bool:
        return self._control_call(lambda c: c.submit(fn), on_result, what)

    def _read_store(self, fn: Callable[[HistoryReader], Any], on_result: Callable[[Any], Any],
                    what: str = "read the database", on_error: Callable[[str], Any] | None = None) -> None:
        """Run a read on the thread pool with its own read-only connection (WAL: never blocks the writer)."""
        path = self.settings.database_path

        def job() -> Any:
            if not path.exists():
                return None
            with SightingStore(path, readonly=True) as store:
                return fn(store)

        self.dispatcher.in_background(job, on_result,
                                      on_error or (lambda m: self.banner.show_message(f"Could not {what}: {m}")))

    def _on_info_ready(self, info: PipelineInfo) -> None:
        self.banner.clear_key("engine")
        device = f" on {info.detector_device}" if info.detector_device else ""
        self.model_label.setText(f"Detector: {info.detector}{device}   Re-id: {info.embedder} "
                                 f"[{info.provider.replace('ExecutionProvider', '')}]   "
                                 f"threshold {info.match_threshold:.2f}")
        warnings = []
        if info.embedder_is_fallback:
            warnings.append("⚠ Re-id model unavailable: using the colour-texture fallback (less accurate)")
        requested = self.settings.pipeline_config().reid.providers
        if not info.embedder_is_fallback and info.provider.startswith("CPU") and requested in ("cuda", "tensorrt"):
            warnings.append(f"⚠ {requested.upper()} not usable: re-id fell back to CPU")
        elif not info.embedder_is_fallback and info.provider.startswith("CPU"):
            self.model_label.setToolTip("No usable GPU found: ONNX Runtime runs on the CPU")
        self.warning_label.setText("   ".join(warnings))
        self.warning_label.setToolTip("\n".join(info.warnings))
        self.refresh_targets()

    def _on_frame_processed(self, result: FrameResult) -> None:
        feed = self.grid.feeds.get(result.source_id)
        if feed is not None:
            feed.show_result(result)

    def _on_source_changed(self, status: SourceStatus) -> None:
        self._states[status.source_id] = status.state
        feed = self.grid.feeds.get(status.source_id)
        if feed is not None:
            feed.set_status(status)
        self.sources_panel.set_state(status.source_id, status.state, status.reason,
                                     status.source_id in self._paused)
        if status.state is SourceState.FAILED:
            self.banner.show_message(f"Camera {status.source_id} failed: {status.reason}")
            self.statusBar().showMessage(f"{status.source_id}: {status.reason}", 10000)

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

    def _update_fps(self) -> None:
        total = sum(feed.fps for feed in self.grid.feeds.values())
        self.fps_label.setText(f"{total:.1f} fps")

    # -- sources -----------------------------------------------------------------------------------

    def _unique_name(self, base: str) -> str:
        name, n = base, 2
        while name in self._specs:
            name, n = f"{base}-{n}", n + 1
        return name

    def add_source(self, uri: str, name: str = "", persist: bool = True, username: str = "",
                   password: str = "", paused: bool = False) -> str:
        """Add a camera to the list, the wall and the running engine; returns its (unique) name.

        Secrets (credentials, secret URL parameters) go to the OS keyring; the settings keep the URL without them.
        """
        full = join_credentials(uri, username, password)
        name = self._unique_name(redact(name) or SourceSpec(full).source_id)
        spec = self._show_source(name, full, paused)
        if not persist:
            self._transient.add(name)
        else:
            secret = has_secrets(full)
            kept = secret and credentials.save_secret_url(name, full)
            if secret and not kept:
                self.banner.show_message(f"No system keyring: the credentials of {name} are used now but not saved; "
                                         "you will be asked to add the camera again next time.")
            self.settings.sources.append(SavedSource(name, strip_secrets(full), "", kept, paused))
            self.save_settings()
        if self.engine.control is not None:
            self._control_call(lambda c: c.add_source(spec), what=f"add {name}")
            if paused:
                self._control_call(lambda c: c.pause_source(name, True))
        return name

    def _add_saved_source(self, saved: SavedSource) -> None:
        full = join_credentials(saved.uri, saved.username, "")
        if saved.has_password:
            full = credentials.load_secret_url(saved.name, saved.uri, saved.username) or full
            if full == saved.uri:
                self.banner.show_message(f"The credentials of {saved.name} are not in the system keyring: remove the "
                                         "camera and add it again.")
        self._show_source(saved.name, full, saved.paused)

    def _show_source(self, name: str, full_uri: str, paused: bool) -> SourceSpec:
        """Register a camera in this window (spec, feed, list entry); the engine is told separately."""
        spec = SourceSpec(full_uri, name)
        self._specs[name] = spec
        if paused:
            self._paused.add(name)
        feed = FeedView(name, name)
        feed.paused = paused
        feed.person_clicked.connect(self._on_person_clicked)
        feed.person_context_requested.connect(self._on_person_context)
        self.grid.add_feed(feed)
        self.sources_panel.add(name, spec.display_uri)
        self.sources_panel.set_state(name, SourceState.CONNECTING, "", paused)
        self.empty_hint.hide()
        return spec

    def add_files(self, paths: list[str]) -> list[str]:
        return [self.add_source(str(Path(p))) for p in paths]

    def add_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add video files", "", VIDEO_FILTER)
        self.add_files(paths)

    def add_stream_dialog(self) -> None:
        dialog = StreamDialog(self, set(self._specs))
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
        if name not in self._specs:
            return
        del self._specs[name]
        self._paused.discard(name)
        self._transient.discard(name)
        self.grid.remove_feed(name)
        self.sources_panel.remove(name)
        self.settings.sources = [s for s in self.settings.sources if s.name != name]
        credentials.forget_secret(name)
        self.save_settings()
        self.empty_hint.setVisible(not self._specs)
        if self.engine.control is not None:
            self._control_call(lambda c: c.remove_source(name), what=f"remove {name}")

    def toggle_pause(self, name: str) -> None:
        self.set_paused(name, name not in self._paused)

    def set_paused(self, name: str, paused: bool) -> None:
        if name not in self._specs:
            return
        (self._paused.add if paused else self._paused.discard)(name)
        feed = self.grid.feeds[name]
        feed.paused = paused
        feed.update()
        self.sources_panel.set_state(name, self._states.get(name, SourceState.CONNECTING), "", paused)
        for saved in self.settings.sources:
            if saved.name == name:
                saved.paused = paused
        self.save_settings()
        self._control_call(lambda c: c.pause_source(name, paused), what=f"pause {name}")

    def _pause_all(self, paused: bool) -> None:
        for name in list(self._specs):
            self.set_paused(name, paused)

    def rename_source_dialog(self, name: str) -> None:
        new, ok = QInputDialog.getText(self, "Rename camera", "New name:", text=name)
        if ok:
            self.rename_source(name, new.strip())

    def rename_source(self, old: str, new: str) -> None:
        """Renaming restarts the camera under its new name (the database files sightings by camera name)."""
        if not new or new == old or old not in self._specs:
            return
        if new in self._specs:
            self.banner.show_message(f"There is already a camera named {new}")
            return
        spec = SourceSpec(self._specs.pop(old).uri, new)
        self._specs[new] = spec
        for group in (self._paused, self._transient):
            if old in group:
                group.discard(old)
                group.add(new)
        self.grid.rename_feed(old, new, new)
        self.sources_panel.rename(old, new)
        for saved in self.settings.sources:
            if saved.name == old:
                saved.name = new
                if saved.has_password:
                    credentials.save_secret_url(new, spec.uri)
                    credentials.forget_secret(old)
        self.save_settings()
        self._control_call(lambda c: c.remove_source(old))
        self._control_call(lambda c: c.add_source(spec), what=f"restart {new}")
        if new in self._paused:
            self._control_call(lambda c: c.pause_source(new, True))

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

    # -- targets -----------------------------------------------------------------------------------

    def _on_person_clicked(self, source_id: str, person: TrackedPerson, crop: np.ndarray | None) -> None:
        if person.identity_id is None:
            self.statusBar().showMessage("This person is not identified yet; try again in a moment.", 4000)
            return
        if person.is_target:
            item = self.targets_panel.item_for(person.identity_id)
            if item is not None:
                self.targets_panel.tree.setCurrentItem(item)
            return
        self.set_target(person.identity_id, True)
        self.statusBar().showMessage(f"Following #{person.identity_id} across all cameras", 4000)

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
            self.set_target(identity, True)
        elif chosen is unfollow and identity is not None:
            self.set_target(identity, False)
        elif chosen is similar and crop is not None:
            label = f"#{identity} in {source_id}" if identity is not None else f"a person in {source_id}"
            self.search(SearchQuery(crop, identity, label))

    def set_target(self, identity_id: int, is_target: bool) -> None:
        verb = "follow" if is_target else "stop following"
        if is_target:
            self._select_after_refresh = identity_id  # a new target is selected, so its timeline shows
        self._control_call(lambda c: c.set_target(identity_id, is_target), lambda _: self.refresh_targets(),
                           what=f"{verb} #{identity_id}")

    def rename_identity(self, identity_id: int, label: str) -> None:
        self._labels[identity_id] = label
        self._submit(lambda p: p.set_label(identity_id, label), lambda _: self.refresh_targets(),
                     what=f"rename #{identity_id}")

    def _confirm_merge(self, keep: int, drop: int) -> None:
        answer = QMessageBox.question(self, "Merge identities",
                                      f"#{drop} and #{keep} are the same person? All sightings of #{drop} become "
                                      f"#{keep}.")
        if answer == QMessageBox.StandardButton.Yes:
            self.merge_identities(keep, drop)

    def merge_identities(self, keep: int, drop: int) -> None:
        self._submit(lambda p: p.merge_identities(keep, drop), lambda _: self._after_edit(keep),
                     what=f"merge #{drop} into #{keep}")

    def _after_edit(self, identity_id: int | None) -> None:
        self.refresh_targets()
        if identity_id is not None and identity_id == self._timeline_identity:
            self.show_timeline(identity_id)

    def refresh_targets(self) -> None:
        """Re-read the targets; at most one read is in flight, asks meanwhile become one more read after it."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True

        def settled() -> None:
            self._refreshing = False
            if self._refresh_again:
                self._refresh_again = False
                self.refresh_targets()

        def read(store: HistoryReader) -> tuple[list[IdentitySummary], dict[int, bytes | None]]:
            targets = store.targets()
            return targets, {t.identity_id: store.thumbnail(t.identity_id) for t in targets}

        def show(result: tuple[list[IdentitySummary], dict[int, bytes | None]] | None) -> None:
            targets, thumbnails = result or ([], {})
            self.targets_panel.set_targets(targets, thumbnails)
            selected = self._select_after_refresh
            item = self.targets_panel.item_for(selected) if selected is not None else None
            if item is not None:
                self._select_after_refresh = None
                self.targets_panel.tree.setCurrentItem(item)
            self._labels = {t.identity_id: t.label for t in targets if t.label}
            for feed in self.grid.feeds.values():
                feed.names = self._labels
            settled()
            self.targets_refreshed.emit()

        def failed(message: str) -> None:
            settled()
            self.banner.show_message(f"Could not read the targets: {message}", key="targets")

        self._read_store(read, show, on_error=failed)

    def show_timeline(self, identity_id: int) -> None:
        self._timeline_identity = identity_id
        self._read_store(lambda store: store.track_segments(identity_id),
                         lambda segments: self.timeline_panel.set_segments(
                             identity_id, self._labels.get(identity_id, ""), segments or []),
                         "read the timeline")

    def _on_segment_activated(self, segment: TrackSegment) -> None:
        spec = self._specs.get(segment.source)
        same_video = spec is not None and spec.display_uri == segment.source_uri  # the name may have been reused
        if spec is not None and same_video and spec.kind is SourceKind.FILE and segment.first_media_time is not None:
            self._control_call(lambda c: c.seek(segment.source, segment.first_media_time),
                               what=f"jump to that moment in {segment.source}")
            if segment.source in self._paused:
                self.set_paused(segment.source, False)
            self.statusBar().showMessage(f"{segment.source}: jumped to {segment.first_media_time:.1f} s", 4000)
            return
        self._show_snapshot(segment)

    def _show_snapshot(self, segment: TrackSegment) -> None:
        box = QMessageBox(self)
        box.setWindowTitle(f"Sighting in {segment.source}")
        box.setText(f"{segment.source}, track {segment.track_id}: the camera is live or no longer in the list, so "
                    "this is the stored snapshot.")
        pixmap = QPixmap()
        if segment.thumbnail and pixmap.loadFromData(segment.thumbnail):
            box.setIconPixmap(pixmap.scaledToHeight(256, Qt.TransformationMode.SmoothTransformation))
        box.setModal(False)
        box.show()

    def _split_segment(self, segment: TrackSegment) -> None:
        self._submit(lambda p: p.split_track(segment.track_row),
                     lambda new_id: self._after_split(segment, new_id), what="split that sighting off")

    def _after_split(self, segment: TrackSegment, new_id: int) -> None:
        self.statusBar().showMessage(f"That sighting in {segment.source} is now #{new_id}", 5000)
        self._after_edit(segment.identity_id)

    # -- appearance search -------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> None:
        self.search_dock.show()
        self.search_dock.raise_()
        self.search_panel.set_query(query)
        k = self.search_panel.top_k.value()
        self.settings.search_top_k = k
        def show(results: list[SearchResult] | None) -> None:
            self.search_panel.set_results(results or [])
            self.search_finished.emit()

        # the engine thread only hands over its model and live index; the search runs in a reader thread
        self._submit(lambda p: p.searcher(),
                     lambda searcher: self._read_store(lambda store: search_results(searcher, store, query.crop, k),
                                                       show, "search"), what="search")

    def _search_target(self, identity_id: int) -> None:
        def read(store: HistoryReader) -> bytes | None:
            return store.thumbnail(identity_id)

        def go(jpeg: bytes | None) -> None:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
            if image is None:
                self.banner.show_message(f"#{identity_id} has no stored picture to search with yet")
                return
            self.search(SearchQuery(image, identity_id, f"#{identity_id}"))

        self._read_store(read, go, "read the target's picture")

    def search_with_image_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Search with an image of a person", "",
                                              "Images (*.jpg *.jpeg *.png *.bmp *.webp)")
        if path:
            self.search_with_image(Path(path))

    def search_with_image(self, path: Path) -> None:
        image = cv2.imread(str(path))
        if image is None:
            self.banner.show_message(f"Cannot read {path.name} as an image")
            return
        self.search(SearchQuery(image, None, path.name))

    def _on_search_confirmed(self, query: SearchQuery, result: SearchResult) -> None:
        match = result.hit.sighting.identity_id
        if match is None:
            return
        if query.identity_id is None:
            self.set_target(match, True)
        elif match != query.identity_id:
            self.merge_identities(query.identity_id, match)
        self.search_panel.drop_result(result)

    def _on_search_rejected(self, query: SearchQuery, result: SearchResult) -> None:
        self.search_panel.drop_result(result)
        sighting = result.hit.sighting
        if query.identity_id is not None and sighting.identity_id == query.identity_id:
            segment_identity = query.identity_id
            self._submit(lambda p: p.split_track(sighting.track_row), lambda _: self._after_edit(segment_identity),
                         what="split that match off")

    # -- export, settings, about -------------------------------------------------------------------

    def _export_identity(self) -> int | None:
        ids = self.targets_panel.selected_ids() or self.targets_panel.identity_ids()[:1]
        if not ids:
            self.banner.show_message("Select a target to export first")
            return None
        return ids[0]

    def export_dialog(self, kind: str) -> None:
        identity_id = self._export_identity()
        if identity_id is None:
            return
        filters = {"csv": "CSV (*.csv)", "json": "JSON (*.json)", "html": "HTML report (*.html)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"target-{identity_id}.{kind}", filters[kind])
        if path:
            self.export(identity_id, Path(path), kind)

    def export(self, identity_id: int, path: Path, kind: str) -> None:
        def write(store: HistoryReader) -> int:
            if kind == "csv":
                return store.export_csv(path, identity_id)
            if kind == "json":
                return store.export_json(path, identity_id)
            return write_html_report(store, identity_id, path)

        self._read_store(write, lambda n: self.statusBar().showMessage(f"Exported {n or 0} rows to {path}", 6000),
                         f"export to {path}")

    def export_training_data_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Empty folder for the training data set")
        if folder:
            self.export_training_data(Path(folder) / "reid-dataset")

    def export_training_data(self, out_dir: Path) -> None:
        """Named or followed identities -> a Market-1501-layout data set, handed to the Trainer tab."""
        from trainer.store_export import export_store_dataset

        database = self.settings.database_path

        def done(summary: Any) -> None:
            self.statusBar().showMessage(f"Exported {summary.identities} people ({summary.train_images} training, "
                                         f"{summary.test_images} test images) to {out_dir}", 8000)
            self.trainer_tab.data_edit.setText(str(out_dir))
            self.trainer_tab.check_dataset()
            self.tabs.setCurrentWidget(self.trainer_tab)

        self.dispatcher.in_background(lambda: export_store_dataset(database, out_dir), done,
                                      lambda m: self.banner.show_message(f"Could not export training data: {m}"))

    def settings_dialog(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() and dialog.result_settings is not None:
            self.apply_settings(dialog.result_settings)

    def apply_settings(self, updated: AppSettings) -> None:
        restart = (updated.pipeline != self.settings.pipeline or updated.database_path != self.settings.database_path)
        self.settings = updated
        self.save_settings()
        if restart:
            self.statusBar().showMessage("Settings changed: restarting processing", 4000)
            self.start_engine()

    def use_reid_model(self, path: str) -> None:
        """Hot-swap the running pipeline's re-id model (the cameras keep running) and remember it."""

        def swap(pipeline: Pipeline) -> PipelineInfo:
            from reid_desktop.core.models import load_embedder

            embedder, warnings = load_embedder(dataclasses.replace(pipeline.config.reid, model=path))
            return pipeline.set_embedder(embedder, warnings)

        def swapped(info: PipelineInfo) -> None:
            self.settings.pipeline["reid.model"] = path
            self.save_settings()
            self._on_info_ready(info)
            self.statusBar().showMessage(f"Re-id model switched to {Path(path).name}", 6000)
            self.reid_model_swapped.emit(info)

        self._submit(swap, swapped, what=f"switch to {Path(path).name}")

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
            self._refresh_timer.stop()
            self._fps_timer.stop()
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
