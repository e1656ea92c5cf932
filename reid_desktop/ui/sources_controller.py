"""This machine's cameras in the window: added, paused, renamed, removed, paced, and their state as it changes.

Each change goes to the camera list (:class:`CameraList`, which the settings file keeps), to the wall and the
sources panel, and to the running engine through its control; a change that the engine can only take by opening
the camera again (a new name, another pace) restarts that camera alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QWidget

from reid_desktop.core.capture.sources import SourceKind, SourceSpec
from reid_desktop.core.types import SourceState, SourceStatus
from reid_desktop.ui.banner import MessageBanner
from reid_desktop.ui.cameras import Added, CameraError, CameraList, parse_rate, rate_choices, rate_text
from reid_desktop.ui.dialogs import StreamDialog
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.feeds import FeedGrid, FeedView
from reid_desktop.ui.settings import AppSettings, SavedSource
from reid_desktop.ui.sources_panel import SourcesPanel

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.m4v *.mpg *.mpeg *.ts *.webm *.wmv);;All files (*)"
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv", ".h264"}


class SourcesController(QObject):
    """The sources panel, its actions and every change to this machine's cameras."""

    status_message = Signal(str, int)
    camera_gone = Signal(str)  # removed or renamed: what was known under this name no longer applies

    def __init__(self, window: QWidget, cameras: CameraList, grid: FeedGrid, client: EngineClient,
                 banner: MessageBanner, add_feed: Callable[[str, str], FeedView], remove_feed: Callable[[str], None],
                 settings: Callable[[], AppSettings], save: Callable[[], None]) -> None:
        super().__init__(window)
        self.window, self.cameras, self.grid, self.client = window, cameras, grid, client
        self.banner, self._add_feed, self._remove_feed = banner, add_feed, remove_feed
        self._settings, self._save = settings, save
        self._build_actions()
        self.panel = SourcesPanel([self.act_add_file, self.act_add_stream, self.act_add_webcam])
        self.panel.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.panel.list.addActions(self.camera_actions())
        self.panel.list.currentItemChanged.connect(lambda *_: self._show_camera_options())
        client.engine.source_changed.connect(self._on_source_changed)

    def _build_actions(self) -> None:
        window = self.window
        self.act_add_file = QAction("Add video file…", window, shortcut=QKeySequence(QKeySequence.StandardKey.Open))
        self.act_add_stream = QAction("Add stream camera…", window, shortcut=QKeySequence("Ctrl+Shift+O"))
        self.act_add_webcam = QAction("Add webcam…", window, shortcut=QKeySequence("Ctrl+Shift+K"))
        self.act_pause = QAction("Pause / resume", window, shortcut=QKeySequence("Ctrl+P"))
        self.act_rename_source = QAction("Rename…", window, shortcut=QKeySequence("F2"))
        self.act_remove_source = QAction("Remove", window)
        self.act_remove_source.setShortcut(QKeySequence.StandardKey.Delete)
        self.act_remove_source.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.act_every_frame = QAction("Analyse every frame", window, checkable=True)
        self.act_every_frame.setToolTip("For a video file: analyse all its frames, slower than its own pace, "
                                        "instead of playing it in real time")
        self.act_analysis_rate = QAction("Analysis rate…", window)
        self.act_analysis_rate.setToolTip("At most this many frames of the camera analysed a second; the others are "
                                          "shown with the last boxes (spares the machine for other cameras)")
        for action, short in ((self.act_add_file, "+ File"), (self.act_add_stream, "+ Stream"),
                              (self.act_add_webcam, "+ Webcam")):
            action.setIconText(short)
            action.setToolTip(f"{action.text()} ({action.shortcut().toString()})")
        self.act_add_file.triggered.connect(self.add_file_dialog)
        self.act_add_stream.triggered.connect(self.add_stream_dialog)
        self.act_add_webcam.triggered.connect(self.add_webcam_dialog)
        self.act_pause.triggered.connect(lambda: self._with_current_source(self.toggle_pause))
        self.act_rename_source.triggered.connect(lambda: self._with_current_source(self.rename_source_dialog))
        self.act_remove_source.triggered.connect(lambda: self._with_current_source(self.remove_source))
        self.act_every_frame.triggered.connect(
            lambda checked: self._with_current_source(lambda name: self.set_every_frame(name, checked)))
        self.act_analysis_rate.triggered.connect(lambda: self._with_current_source(self.analysis_rate_dialog))

    def add_actions(self) -> list[QAction]:
        return [self.act_add_file, self.act_add_stream, self.act_add_webcam]

    def camera_actions(self) -> list[QAction]:
        """What can be done to the camera chosen in the list (its context menu and the Sources menu)."""
        return [self.act_pause, self.act_rename_source, self.act_remove_source, self.act_every_frame,
                self.act_analysis_rate]

    def restore(self, saved: Iterable[SavedSource], session: Iterable[SourceSpec]) -> None:
        """The cameras of the settings file and this session's (the command line's, the demo's), before the engine
        starts: it reads the list when it does."""
        for entry in saved:
            self._show_camera(self.cameras.restore(entry))
        for spec in session:
            self._show_camera(self.cameras.add_session(spec))

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
        if self.client.engine.control is not None:
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
        feed = self._add_feed(camera.name, camera.name)
        feed.paused = camera.paused
        feed.in_step = self._settings().pictures_in_step
        self.panel.add(camera.name, camera.spec.display_uri)
        self.panel.set_state(camera.name, SourceState.CONNECTING, "", camera.paused)

    def _save_cameras(self) -> None:
        self._settings().sources = self.cameras.saved()
        self._save()

    def add_files(self, paths: list[str], every_frame: bool = False) -> list[str]:
        """Video files as cameras; played in real time unless ``every_frame`` (all frames analysed)."""
        return [self.add_source(str(Path(p)), every_frame=every_frame) for p in paths]

    def add_dropped(self, paths: list[str]) -> None:
        """Files dropped on the window: the videos among them (or what may be one: the reader says if not)."""
        self.add_files([p for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES or Path(p).is_file()])

    def add_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self.window, "Add video files", "", VIDEO_FILTER)
        self.add_files(paths)

    def add_stream_dialog(self) -> None:
        dialog = StreamDialog(self.window, set(self.cameras.names()))
        if dialog.exec():
            name, url, user, password = dialog.values()
            self.add_source(url, name, username=user, password=password)

    def add_webcam_dialog(self) -> None:
        index, ok = QInputDialog.getInt(self.window, "Add webcam", "Webcam number (0 is the first camera):", 0, 0,
                                        63)
        if ok:
            self.add_source(str(index))

    def _with_current_source(self, fn: Callable[[str], Any]) -> None:
        name = self.panel.current()
        if name is not None:
            fn(name)

    def remove_source(self, name: str) -> None:
        if self.cameras.remove(name) is None:
            return
        self._remove_feed(name)
        self.panel.remove(name)
        self.camera_gone.emit(name)
        self._save_cameras()
        if self.client.engine.control is not None:
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
        self.panel.set_state(name, camera.state, "", paused)
        self._save_cameras()
        self.client.control(lambda c: c.pause_source(name, paused), what=f"pause {name}")

    def pause_all(self, paused: bool) -> None:
        for name in self.cameras.names():
            self.set_paused(name, paused)

    def rename_source_dialog(self, name: str) -> None:
        new, ok = QInputDialog.getText(self.window, "Rename camera", "New name:", text=name)
        if ok:
            self.rename_source(name, new.strip())

    def _show_camera_options(self) -> None:
        camera = self.cameras.get(self.panel.current() or "")
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
        everyone = self._settings().pipeline_config().sources.analysis_fps
        choices = rate_choices(everyone)
        current = choices[0] if camera.spec.analysis_fps is None else rate_text(camera.spec.analysis_fps)
        if current not in choices:
            choices.append(current)
        text, ok = QInputDialog.getItem(self.window, "Analysis rate", f"Frames of {name} analysed a second:",
                                        choices, choices.index(current), editable=True)
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
        self.panel.rename(old, new)
        self.camera_gone.emit(old)
        self._save_cameras()
        self._restart_camera(old, camera.spec, camera.paused)

    def _on_source_changed(self, status: SourceStatus) -> None:
        camera = self.cameras.update(status)
        if camera is None:  # removed meanwhile
            return
        feed = self.grid.feeds.get(status.source_id)
        if feed is not None:
            feed.set_status(status)
        self.panel.set_state(camera.name, camera.state, camera.reason, camera.paused)
        if status.state is SourceState.FAILED:
            self.banner.show_message(f"Camera {status.source_id} failed: {status.reason}")
            self.status_message.emit(f"{status.source_id}: {status.reason}", 10000)
