"""Targets and their timelines: following people, naming, merging and splitting identities.

The controller turns the Targets and Timeline panels' requests into engine commands and database
reads (through the :class:`EngineClient`), and shows what comes back. The window only wires it.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QMessageBox, QWidget

from reid_desktop.core.capture.sources import SourceKind
from reid_desktop.core.store.interface import HistoryReader, IdentitySummary, TrackSegment
from reid_desktop.core.types import TrackedPerson
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.targets_panel import TargetsPanel, TimelinePanel

REFRESH_INTERVAL_MS = 2000  # targets seen by the engine meanwhile (new sightings, other stations' edits)

_Targets = tuple[list[IdentitySummary], dict[int, bytes | None]]


class TargetsController(QObject):
    refreshed = Signal()  # after the Targets panel shows the database's current targets
    labels_changed = Signal(object)  # {identity id: name} of the named people, for the feeds
    targets_changed = Signal(object)  # the set of identity ids followed now
    status_message = Signal(str, int)  # a passing line for the status bar, with its time on screen (ms)
    resume_requested = Signal(str)  # a paused camera must play to show a moment of its video

    def __init__(self, client: EngineClient, targets: TargetsPanel, timeline: TimelinePanel, cameras: CameraList,
                 dialog_parent: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client, self.targets, self.timeline, self.cameras = client, targets, timeline, cameras
        self._dialog_parent = dialog_parent
        self.labels: dict[int, str] = {}
        self.target_ids: set[int] = set()
        self._timeline_identity: int | None = None
        self._select_after_refresh: int | None = None
        self.refreshing = False  # a targets read is on the thread pool
        self._refresh_again = False  # and another was asked for meanwhile
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_INTERVAL_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

        targets.renamed.connect(self.rename_identity)
        targets.untarget_requested.connect(lambda i: self.set_target(i, False))
        targets.merge_requested.connect(self.confirm_merge)
        targets.timeline_requested.connect(self.show_timeline)
        timeline.segment_activated.connect(self.activate_segment)
        timeline.split_requested.connect(self.split_segment)

    def follow_clicked(self, person: TrackedPerson) -> None:
        """A click on a person in a feed: follow them, or select them when already followed."""
        if person.identity_id is None:
            self.status_message.emit("This person is not identified yet; try again in a moment.", 4000)
            return
        if person.is_target:
            item = self.targets.item_for(person.identity_id)
            if item is not None:
                self.targets.tree.setCurrentItem(item)
            return
        self.set_target(person.identity_id, True)
        self.status_message.emit(f"Following #{person.identity_id} across all cameras", 4000)

    def set_target(self, identity_id: int, is_target: bool) -> None:
        verb = "follow" if is_target else "stop following"
        if is_target:
            self._select_after_refresh = identity_id  # a new target is selected, so its timeline shows
        self.client.control(lambda c: c.set_target(identity_id, is_target), lambda _: self.refresh(),
                            what=f"{verb} #{identity_id}")

    def rename_identity(self, identity_id: int, label: str) -> None:
        self.labels = {**self.labels, identity_id: label}  # the feeds show the name at once
        self.labels_changed.emit(self.labels)
        self.client.submit(lambda p: p.commands.set_label(identity_id, label), lambda _: self.refresh(),
                           what=f"rename #{identity_id}")

    def confirm_merge(self, keep: int, drop: int) -> None:
        answer = QMessageBox.question(self._dialog_parent, "Merge identities",
                                      f"#{drop} and #{keep} are the same person? All sightings of #{drop} become "
                                      f"#{keep}.")
        if answer == QMessageBox.StandardButton.Yes:
            self.merge_identities(keep, drop)

    def merge_identities(self, keep: int, drop: int) -> None:
        self.client.submit(lambda p: p.commands.merge_identities(keep, drop), lambda _: self.after_edit(keep),
                           what=f"merge #{drop} into #{keep}")

    def split_track(self, track_row: int, identity_id: int | None, what: str = "split that match off") -> None:
        self.client.submit(lambda p: p.commands.split_track(track_row), lambda _: self.after_edit(identity_id),
                           what=what)

    def after_edit(self, identity_id: int | None) -> None:
        """An identity changed: the targets and, when it is the one shown, its timeline are read again."""
        self.refresh()
        if identity_id is not None and identity_id == self._timeline_identity:
            self.show_timeline(identity_id)

    def refresh(self) -> None:
        """Re-read the targets; at most one read is in flight, asks meanwhile become one more read after it."""
        if self.refreshing:
            self._refresh_again = True
            return
        self.refreshing = True

        def settled() -> None:
            self.refreshing = False
            if self._refresh_again:
                self._refresh_again = False
                self.refresh()

        def read(store: HistoryReader) -> _Targets:
            targets = store.targets()
            return targets, {t.identity_id: store.thumbnail(t.identity_id) for t in targets}

        def show(result: _Targets | None) -> None:
            targets, thumbnails = result or ([], {})
            self.targets.set_targets(targets, thumbnails)
            selected = self._select_after_refresh
            item = self.targets.item_for(selected) if selected is not None else None
            if item is not None:
                self._select_after_refresh = None
                self.targets.tree.setCurrentItem(item)
            self.labels = {t.identity_id: t.label for t in targets if t.label}
            self.labels_changed.emit(self.labels)
            self.target_ids = {t.identity_id for t in targets}
            self.targets_changed.emit(self.target_ids)
            settled()
            self.refreshed.emit()

        def failed(message: str) -> None:
            settled()
            self.client.report(f"Could not read the targets: {message}")

        self.client.read(read, show, on_error=failed)

    def show_timeline(self, identity_id: int) -> None:
        self._timeline_identity = identity_id
        self.client.read(lambda store: store.track_segments(identity_id),
                         lambda segments: self.timeline.set_segments(identity_id, self.labels.get(identity_id, ""),
                                                                     segments or []),
                         "read the timeline")

    def activate_segment(self, segment: TrackSegment) -> None:
        """Play a file camera from that moment; for a live camera (or one removed since), show the snapshot."""
        camera = self.cameras.get(segment.source)
        spec = camera.spec if camera is not None else None
        same_video = spec is not None and spec.display_uri == segment.source_uri  # the name may have been reused
        moment = segment.first_media_time
        if camera is not None and same_video and spec is not None and spec.kind is SourceKind.FILE \
                and moment is not None:
            self.client.control(lambda c: c.seek(segment.source, moment),
                                what=f"jump to that moment in {segment.source}")
            if camera.paused:
                self.resume_requested.emit(segment.source)
            self.status_message.emit(f"{segment.source}: jumped to {moment:.1f} s", 4000)
            return
        self._show_snapshot(segment)

    def _show_snapshot(self, segment: TrackSegment) -> None:
        box = QMessageBox(self._dialog_parent)
        box.setWindowTitle(f"Sighting in {segment.source}")
        box.setText(f"{segment.source}, track {segment.track_id}: the camera is live or no longer in the list, so "
                    "this is the stored snapshot.")
        pixmap = QPixmap()
        if segment.thumbnail and pixmap.loadFromData(segment.thumbnail):
            box.setIconPixmap(pixmap.scaledToHeight(256, Qt.TransformationMode.SmoothTransformation))
        box.setModal(False)
        box.show()

    def split_segment(self, segment: TrackSegment) -> None:
        def split_off(new_id: int) -> None:
            self.status_message.emit(f"That sighting in {segment.source} is now #{new_id}", 5000)
            self.after_edit(segment.identity_id)

        self.client.submit(lambda p: p.commands.split_track(segment.track_row), split_off,
                           what="split that sighting off")

    def stop(self) -> None:
        self.timer.stop()
