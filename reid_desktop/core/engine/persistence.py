"""What a running pipeline writes: its run, sampled sightings with thumbnails, corrections, retention.

The per-frame processing decides; this module decides what of it is kept, at a cost that does not grow
with the frame rate or the length of the run: a track's positions are sampled
(``storage.sightings_per_second``) besides its first and last ones, those with an embedding or a better
picture, every change of identity and every frame of a target; retention runs at the start and every
few minutes. Database faults never reach the cameras: the store buffers and retries, and what cannot be
saved is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import StorageConfig
from reid_desktop.core.store.interface import HistoryStore, SightingRecord, StorageUnavailable, TrackKey
from reid_desktop.core.types import Frame, TrackedPerson
from reid_desktop.core.vision.crops import thumbnail

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 600.0  # a run of weeks keeps its history bounded, not only the next start
# what one frame's embedding step gave a track: (vector, crop quality, the crop when it is the track's best)
FreshEmbedding = tuple[np.ndarray, float, np.ndarray | None]


@dataclass
class _Sampling:
    stored_at: float | None = None  # timestamp of the last sighting written for the track
    stored_identity: int | None = None
    held: SightingRecord | None = None  # the newest sighting not written: the track's last, if it ends now


class SightingWriter:
    """Writes one pipeline's results to its store. Use from the pipeline's thread only (its retention rounds run in
    the store's commit thread)."""

    def __init__(self, store: HistoryStore, config: StorageConfig) -> None:
        self.store = store
        self.config = config
        self.run_id: int | None = None
        self._sources: dict[str, tuple[str, str]] = {}  # source -> (URI without credentials, kind)
        self._tracks: dict[TrackKey, _Sampling] = {}  # live tracks only: ended ones are dropped
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        self._retention: Future[None] | None = None  # the round under way in the store's commit thread

    def begin_run(self, **run: Any) -> int:
        """A new run (at the start, and when the re-id model changes); ``run`` as :meth:`HistoryStore.begin_run`."""
        self.run_id = self.store.begin_run(**run)
        return self.run_id

    def end_run(self, status: str) -> bool:
        """Write what waits and close the run; False (logged) when not everything could be saved."""
        for track in list(self._tracks):
            self.track_ended(track)
        return self.run_id is None or self.store.end_run(self.run_id, status)

    def register_source(self, spec: SourceSpec) -> None:
        """How a source is described in the store: its URI without credentials, its kind."""
        self._sources[spec.source_id] = (spec.display_uri, spec.kind.value)

    def uri(self, source: str) -> str | None:
        """The URI a source of this pipeline is stored under; None for a source it does not run."""
        return self._sources[source][0] if source in self._sources else None

    def track_key(self, source: str, segment: int, track_id: int) -> TrackKey:
        uri, kind = self._sources.get(source, (source, "file"))
        return TrackKey(source, uri, kind, segment, track_id)

    def write(self, frame: Frame, track: TrackKey, person: TrackedPerson, fresh: FreshEmbedding | None,
              model_key: str, alert: bytes | None = None) -> None:
        """One position of a track: written now, or held back by sampling (and written if the track ends).

        ``alert``: a followed person appeared on this track (the picture of that moment): stored as an alert.
        """
        assert self.run_id is not None
        vector, quality, patch = fresh if fresh is not None else (None, 0.0, None)
        box = person.box.tolist()
        record = SightingRecord(
            run_id=self.run_id, track=track, identity_id=person.identity_id, frame_index=frame.index,
            timestamp=frame.timestamp, media_time=frame.media_time, box=(box[0], box[1], box[2], box[3]),
            confidence=person.confidence, match_score=person.match_score, embedding=vector, model_key=model_key,
            quality=quality, thumbnail=self._thumbnail(patch) if patch is not None else None, alert=alert)
        sampling = self._tracks.setdefault(track, _Sampling())
        per_second = self.config.sightings_per_second
        due = (per_second == 0 or person.is_target or alert is not None or sampling.stored_at is None
               or vector is not None or patch is not None or person.identity_id != sampling.stored_identity
               or record.timestamp - sampling.stored_at >= 1 / per_second)
        if due:
            self.store.record(record)
            sampling.stored_at, sampling.stored_identity, sampling.held = record.timestamp, person.identity_id, None
        else:
            sampling.held = record

    def track_ended(self, track: TrackKey) -> None:
        """Its last sighting, if held back by sampling, is written now."""
        sampling = self._tracks.pop(track, None)
        if sampling is not None and sampling.held is not None:
            self.store.record(sampling.held)

    def correct(self, track: TrackKey, identity_id: int, previous: int, score: float | None) -> None:
        """A tentative identity changed: what was written of the track moves to ``identity_id`` (audited)."""
        sampling = self._tracks.get(track)
        if sampling is not None and sampling.held is not None:
            sampling.held = dataclasses.replace(sampling.held, identity_id=identity_id, match_score=score)
        if self.run_id is None:
            return
        try:
            self.store.correct_track(self.run_id, track, identity_id, previous, score)
        except StorageUnavailable as exc:
            log.warning("%s track %d: the correction to identity %d was not saved: %s", track.source,
                        track.track_id, identity_id, exc)

    def after_frames(self) -> None:
        """Commit when due; run retention when due, in the store's commit thread (a failing database: the next
        round tries again)."""
        self.store.maybe_flush()
        if time.monotonic() >= self._next_retention and (self._retention is None or self._retention.done()):
            self._next_retention = time.monotonic() + RETENTION_EVERY_S
            self._retention = self.store.in_commit_thread(self._retention_round)  # a long purge never holds cameras

    def _retention_round(self) -> None:
        try:
            self.apply_retention()
        except StorageUnavailable as exc:
            log.warning("retention skipped: %s", exc)

    def apply_retention(self) -> None:
        """Delete sightings older than ``retention_days`` and, past ``max_database_gb``, the oldest ones; give
        their pages back to the disk."""
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        days, max_gb = self.config.retention_days, self.config.max_database_gb
        purged = self.store.purge_expired(days)
        if purged:
            log.info("retention: deleted %d expired sightings", purged)
        over = self.store.enforce_size(int(max_gb * 1e9)) if max_gb else 0
        if over:
            log.warning("retention: deleted the %d oldest sightings to keep the database under %g GB", over, max_gb)
        if purged or over:
            self.store.reclaim()

    def _thumbnail(self, patch: np.ndarray) -> bytes:
        return thumbnail(patch, self.config.thumbnail_height)
