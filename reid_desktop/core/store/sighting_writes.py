"""How a sighting is written, once for both dialects: its camera's row, its identity's first and last seen, its
track's span, the sighting, its alert, its embedding (each track keeps its best ``embeddings_per_track``) and the
best crop of its track and identity. Statements run a record at a time, inside the transaction of a flush that
its store opened (core/store/sql_history.py); the shared database writes the same rows over arrays
(core/store/pg_batch_writes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reid_desktop.core.store.index_keeper import IndexKeeper
from reid_desktop.core.store.interface import SightingRecord


class SightingWrites:
    """A flush's records written over the connection ``db()`` returns; the embeddings of the vector index's model
    are staged in ``indexed``. ``least`` and ``greatest`` are the dialect's names for the smaller and larger of two
    values, ``all_rows`` its "no limit" before an OFFSET."""

    def __init__(self, db: Callable[[], Any], indexed: IndexKeeper, embeddings_per_track: int, *, least: str,
                 greatest: str, all_rows: str) -> None:
        self._connection = db
        self.indexed = indexed
        self.embeddings_per_track = embeddings_per_track
        self._least, self._greatest, self._all_rows = least, greatest, all_rows
        self._source_rows: dict[tuple[str, str], int] = {}

    def batch(self, records: Sequence[SightingRecord]) -> None:
        """Every record of a flush (a local file's statements cost no round trip)."""
        for record in records:
            self.one(record)

    def each(self, records: Sequence[SightingRecord], refused_data: tuple[type[BaseException], ...],
             ) -> list[tuple[SightingRecord, BaseException]]:
        """Every record in a savepoint of its own: those whose data the database refuses (``refused_data``) are left
        out, and returned with the reason; the others are written."""
        db, refused = self._connection(), []
        for record in records:
            db.execute("SAVEPOINT record")
            staged = self.indexed.mark()
            try:
                self.one(record)
            except refused_data as exc:
                db.execute("ROLLBACK TO record")
                self.indexed.back_to(staged)
                self.forget_sources()  # a camera row made by this record is gone with it
                refused.append((record, exc))
            db.execute("RELEASE record")
        return refused

    def one(self, r: SightingRecord) -> None:
        """One record's rows."""
        track, db = r.track, self._connection()
        source_row = self.source_row(track.source, track.uri, track.kind)
        if r.identity_id is not None:
            db.execute("INSERT INTO identities (id, created, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                       f"ON CONFLICT (id) DO UPDATE SET first_seen = {self._least}(COALESCE(identities.first_seen, "
                       f"excluded.first_seen), excluded.first_seen), last_seen = {self._greatest}(COALESCE("
                       "identities.last_seen, excluded.last_seen), excluded.last_seen)",
                       (r.identity_id, r.timestamp, r.timestamp, r.timestamp))
        track_row = db.execute(
            "INSERT INTO tracks (run_id, source_id, segment, track_id, identity_id, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, source_id, segment, track_id) DO UPDATE SET "
            f"last_seen = {self._greatest}(tracks.last_seen, excluded.last_seen), identity_id = excluded.identity_id "
            "RETURNING id",
            (r.run_id, source_row, track.segment, track.track_id, r.identity_id, r.timestamp, r.timestamp),
        ).fetchone()[0]
        sighting_id = db.execute(
            "INSERT INTO sightings (run_id, source_id, track_row, identity_id, frame_index, timestamp, media_time, "
            "x1, y1, x2, y2, confidence, match_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (r.run_id, source_row, track_row, r.identity_id, r.frame_index, r.timestamp, r.media_time,
             *(float(v) for v in r.box[:4]), float(r.confidence), r.match_score)).fetchone()[0]
        if r.alert is not None:
            db.execute("INSERT INTO alerts (sighting_id, thumbnail) VALUES (?, ?)", (sighting_id, r.alert))
        if r.embedding is not None:
            vector = np.asarray(r.embedding, np.float32)
            embedding_id = db.execute(
                "INSERT INTO embeddings (track_row, identity_id, sighting_id, model_key, quality, vector) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id", (track_row, r.identity_id, sighting_id, r.model_key,
                                                         float(r.quality), vector.tobytes())).fetchone()[0]
            self.indexed.added(int(embedding_id or 0), vector, r.model_key)
            if self.embeddings_per_track:
                weakest = [row[0] for row in db.execute(
                    f"SELECT id FROM embeddings WHERE track_row = ? ORDER BY quality DESC, id DESC {self._all_rows} "
                    "OFFSET ?",
                    (track_row, self.embeddings_per_track))]
                if weakest:
                    db.execute(f"DELETE FROM embeddings WHERE id IN ({','.join('?' * len(weakest))})", weakest)
                    self.indexed.deleted(weakest)
        if r.thumbnail:  # the best crop per track and per identity
            db.execute("UPDATE tracks SET thumbnail = ?, best_quality = ? WHERE id = ? AND best_quality < ?",
                       (r.thumbnail, r.quality, track_row, r.quality))
            if r.identity_id is not None:
                db.execute("UPDATE identities SET thumbnail = ?, best_quality = ? WHERE id = ? AND best_quality < ?",
                           (r.thumbnail, r.quality, r.identity_id, r.quality))

    def source_row(self, name: str, uri: str, kind: str) -> int:
        """The camera's row, made on its first sighting and remembered."""
        key = (name, uri)
        if key not in self._source_rows:
            self._source_rows[key] = int(self._connection().execute(
                "INSERT INTO sources (name, uri, kind) VALUES (?, ?, ?) ON CONFLICT (name, uri) DO UPDATE SET "
                "kind = excluded.kind RETURNING id", (name, uri, kind)).fetchone()[0])
        return self._source_rows[key]

    def forget_sources(self) -> None:
        """The transaction was rolled back: camera rows it made are gone."""
        self._source_rows.clear()
