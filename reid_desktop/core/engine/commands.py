"""What operators and other processes ask of a running pipeline, taken on between its frames: follow a person
(clicked on a camera or picked from the history), name one, merge two identities, split a track off, change the
camera links or the watch list, and the changes other processes made to a shared history. Each edits the store
where it is ours to edit, then brings the pipeline's live state along: the matcher's working set and galleries, the
live tracks and the re-association window. The frame stages never call these; the run loop's control does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.alerts import Alerts
from reid_desktop.core.engine.link_stage import LinkStage
from reid_desktop.core.engine.persistence import SightingWriter
from reid_desktop.core.engine.regrouping import Regrouping
from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.core.identity.matching import IdentityMatcher
from reid_desktop.core.identity.watchlist import WatchList, WatchPictures
from reid_desktop.core.store.interface import HistoryStore, StorageUnavailable
from reid_desktop.core.store.shared_changes import (
    EmbeddingsPurged,
    Heard,
    Labelled,
    Merged,
    Regrouped,
    SharedEmbeddings,
    Split,
    TargetChanged,
    TargetsNow,
)
from reid_desktop.core.topology import parse as parse_camera_links
from reid_desktop.core.vision.embedding import Embedder


class Commanded(Protocol):
    """What the handler needs of the pipeline it stands beside (named here, not imported: the pipeline makes it)."""

    store: HistoryStore | None
    config: PipelineConfig
    embedder: Embedder
    matcher: IdentityMatcher
    tracks: dict[tuple[str, int], TrackState]
    segments: dict[str, int]
    regrouping: Regrouping
    alerts: Alerts
    writer: SightingWriter | None
    linking: LinkStage

    @property
    def run_id(self) -> int | None: ...

    def tracklet_key(self, key: tuple[str, int]) -> tuple[str, int, int]: ...

    def regallery(self, *identity_ids: int | None) -> None: ...

    def stored_gallery(self, identity_id: int) -> np.ndarray: ...


class Commands:
    """The command handler beside a pipeline (``pipeline.commands``); use from the pipeline's thread only."""

    def __init__(self, pipeline: Commanded) -> None:
        self.pipeline = pipeline

    def target_track(self, source_id: str, track_id: int, is_target: bool = True) -> int | None:
        """Mark the identity behind a camera's track (what an operator clicked); returns that identity.
        The operator has decided for this track: its identity is final from now on."""
        state = self.pipeline.tracks.get((source_id, track_id))
        if state is None or state.identity_id is None:
            return None
        self.pipeline.linking.commit(state)
        self._lock((source_id, track_id), state.identity_id)
        self.set_target(state.identity_id, is_target)
        return state.identity_id

    def _lock(self, key: tuple[str, int], identity_id: int) -> None:
        """The operator decided this live track's identity: re-association never changes it."""
        state = self.pipeline.tracks.get(key)
        if state is not None:
            state.locked = True
        self.pipeline.regrouping.lock(self.pipeline.tracklet_key(key), identity_id)

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        if self.pipeline.store is not None:
            self.pipeline.store.set_target(identity_id, is_target)
        self.follow_target(identity_id, is_target)

    def follow_target(self, identity_id: int, is_target: bool = True) -> None:
        """A target set by another process on a shared history: only the matcher needs telling."""
        self.pipeline.matcher.set_target(identity_id, is_target)

    def set_label(self, identity_id: int, label: str) -> None:
        if self.pipeline.store is not None:
            self.pipeline.store.set_label(identity_id, label)
        if label:
            self.pipeline.matcher.pin(identity_id)

    def set_watch_list(self, entries: Sequence[WatchPictures]) -> int:
        """The people to watch for, embedded with the running model (ValueError naming a bad entry)."""
        self.pipeline.alerts.watch_list = WatchList(entries, self.pipeline.embedder)
        return len(self.pipeline.alerts.watch_list)

    def set_camera_links(self, text: str) -> None:
        """New camera topology (``matcher.camera_links``), used from the next frame on; ValueError if wrong."""
        links = parse_camera_links(text, self.pipeline.config.matcher.same_moment_s)
        config = self.pipeline.config
        self.pipeline.config = replace(config, matcher=replace(config.matcher, camera_links=text))
        self.pipeline.matcher.links = links
        self.pipeline.regrouping.set_links(links)

    def link_suggestions(self) -> tuple[LinkSuggestion, ...]:
        """Camera links learned from the footage that the topology does not state yet (for the topology editor)."""
        return self.pipeline.regrouping.suggestions

    def merge_identities(self, keep: int, drop: int) -> None:
        """Two identities are one person: everything of ``drop``, stored and live, becomes ``keep``."""
        if self.pipeline.store is not None:
            self.pipeline.store.merge_identities(keep, drop)
        self._merged(keep, drop)

    def _merged(self, keep: int, drop: int) -> None:
        """The stored identities are merged: the working set and the live tracks follow."""
        self.pipeline.matcher.merge(keep, drop)
        if self.pipeline.store is not None:
            # the store now holds both galleries under ``keep``, also when neither was in the working set
            gallery = self.pipeline.stored_gallery(keep)
            if len(gallery):
                self.pipeline.matcher.replace_gallery(keep, gallery)
        for state in self.pipeline.tracks.values():
            if state.identity_id == drop:
                state.identity_id, state.owns_identity = keep, False
        self.pipeline.regrouping.merged(keep, drop)

    def split_track(self, track_row: int) -> int:
        """"Not this person": the stored track ``track_row`` (and its live continuation) gets a new identity."""
        if self.pipeline.store is None:
            raise ValueError("splitting needs the sightings database")
        old = self.pipeline.store.track_identity(track_row)
        new_id = self.pipeline.matcher.create()
        if new_id is None:
            raise StorageUnavailable(f"{self.pipeline.store.health.message or 'the database is failing'}: not split")
        new = self.pipeline.store.split_track(track_row, new_id)
        self._split(track_row, old, new)
        return new

    def _split(self, track_row: int, old: int | None, new: int) -> None:
        """A stored track was split off ``old`` into ``new``: its live continuation (if this pipeline runs it)
        and both galleries follow."""
        assert self.pipeline.store is not None
        where = self.pipeline.store.track_key(track_row)
        if where is not None:
            run_id, source, segment, track_id = where
            live = self.pipeline.tracks.get((source, track_id))
            ours = run_id == self.pipeline.run_id
            if live is not None and ours and segment == self.pipeline.segments.get(source, 0):
                live.identity_id, live.match_score, live.owns_identity, live.committed = new, 1.0, False, True
                live.locked = True
            if ours:
                self.pipeline.regrouping.lock((source, segment, track_id), new)
        self.pipeline.regallery(old, new)

    def apply_change(self, change: Heard) -> None:
        """What another process did to the shared history (heard by the node's listener, which leaves out this
        process's own changes: they are in effect already), taken on between frames."""
        match change:
            case TargetChanged(identity_id, is_target):
                self.follow_target(identity_id, is_target)
            case TargetsNow(identity_ids):
                for identity_id in self.pipeline.matcher.targets ^ identity_ids:  # dropped or set meanwhile
                    self.follow_target(identity_id, identity_id in identity_ids)
            case Labelled(identity_id):
                self.pipeline.matcher.pin(identity_id)
            case Merged(keep, drop):
                self._merged(keep, drop)
            case Split(track_row, old, new) if self.pipeline.store is not None:
                self._split(track_row, old, new)
            case Regrouped(old, new) if self.pipeline.store is not None:
                self.pipeline.regallery(*(i for i in (old, new) if i in self.pipeline.matcher))
            case SharedEmbeddings() if change.model_key == self.pipeline.embedder.key:
                self._learn(change)
            case EmbeddingsPurged(embedding_ids) if self.pipeline.store is not None:
                self.pipeline.store.unindex_embeddings(embedding_ids)

    def _learn(self, shared: SharedEmbeddings) -> None:
        """Another node's new embeddings: into the vector index, and their identities into the working set with
        where and when they were seen, so a person walking from its cameras into ours keeps their identity."""
        if self.pipeline.store is not None:
            self.pipeline.store.index_embeddings(shared.model_key, shared.embedding_ids, shared.vectors,
                                                 shared.caught_up)
        for identity_id in np.unique(shared.identity_ids):
            rows = np.flatnonzero(shared.identity_ids == identity_id)
            seen: dict[str, float] = {}
            for row in rows:
                camera = self._remote_camera(shared.cameras[row], shared.uris[row] if shared.uris else None)
                seen[camera] = max(float(shared.timestamps[row]), seen.get(camera, -np.inf))
            self.pipeline.matcher.learn(int(identity_id), shared.vectors[rows], shared.qualities[rows],
                                        shared.created.get(int(identity_id)), seen)

    def _remote_camera(self, name: str, uri: str | None) -> str:
        """Another process's camera as this matcher knows it: a camera of another node that has the name of one of
        ours but not its URI is another place (``name@uri``), never "the same camera" where two people cannot be."""
        ours = self.pipeline.writer.uri(name) if self.pipeline.writer is not None else None
        return f"{name}@{uri}" if ours is not None and uri is not None and uri != ours else name
