"""The shared database's fast path for a flush: the rows core/store/sighting_writes.py makes a record at a time,
written in about ten statements over arrays (``unnest``) whatever the flush's size, each record under the identity
that holds its person now (merges and splits made by other processes: core/store/pg_store.py keeps them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reid_desktop.core.store.index_keeper import IndexKeeper
from reid_desktop.core.store.interface import SightingRecord
from reid_desktop.core.store.sighting_writes import SightingWrites

TrackRowKey = tuple[int, int, int, int]  # run, source row, segment, track id


class PgBatchWrites(SightingWrites):
    """Sightings written over arrays. ``redirect`` gives a record (of a track key) under the identity that holds its
    person now. The ids of each pending record are drawn on its first flush and kept until it is committed: a
    flush whose COMMIT answer was lost is written again with the same ids, and rows already there are left as they
    are (idempotent flushes)."""

    def __init__(self, db: Callable[[], Any], indexed: IndexKeeper, embeddings_per_track: int,
                 redirect: Callable[[SightingRecord, TrackRowKey], SightingRecord]) -> None:
        super().__init__(db, indexed, embeddings_per_track, least="LEAST", greatest="GREATEST", all_rows="LIMIT ALL")
        self._redirect = redirect
        self._drawn: dict[int, tuple[SightingRecord, int, int | None]] = {}

    def _track_key(self, r: SightingRecord) -> TrackRowKey:
        """The track's row key: run, source row, segment, track id."""
        return r.run_id, self.source_row(r.track.source, r.track.uri, r.track.kind), r.track.segment, r.track.track_id

    def one(self, r: SightingRecord) -> None:
        """One record's rows, under the identity that holds its person now (the savepoint fallback)."""
        super().one(self._redirect(r, self._track_key(r)))

    def _drawn_ids(self, records: Sequence[SightingRecord]) -> tuple[list[int], list[int | None]]:
        """Each record's sighting id and embedding id: drawn on its first flush, the same on every later try."""
        pending = {id(r): r for r in records}  # what is not pending any more was committed or dropped: forgotten
        self._drawn = {key: drawn for key, drawn in self._drawn.items() if pending.get(key) is drawn[0]}
        fresh = [r for r in records if id(r) not in self._drawn]
        if fresh:
            sightings = self._next_ids("sightings", len(fresh))
            embeddings = iter(self._next_ids("embeddings", sum(r.embedding is not None for r in fresh)))
            for r, sighting in zip(fresh, sightings, strict=True):
                self._drawn[id(r)] = (r, sighting, next(embeddings) if r.embedding is not None else None)
        drawn = [self._drawn[id(r)] for r in records]
        return [d[1] for d in drawn], [d[2] for d in drawn]

    def batch(self, records: Sequence[SightingRecord]) -> None:
        """A flush in about ten statements whatever its size, each over arrays (``unnest``): record by record
        costs four to six round trips a sighting, which a database across a network turns into a node's limit.
        The rows are those :meth:`one` makes one record at a time (which the savepoint fallback still does).
        Identities, which nodes share, are written in id order, so two nodes never wait on each other in a
        cycle. Written again after a lost answer, the batch adds nothing twice: its ids were drawn once."""
        sighting_ids, embedding_ids = self._drawn_ids(records)
        track_keys = [self._track_key(r) for r in records]
        records = [self._redirect(r, key) for r, key in zip(records, track_keys, strict=True)]
        db = self._connection()
        seen: dict[int, tuple[float, float]] = {}  # identity -> first, last
        spans: dict[tuple[int, int, int, int], tuple[float, float, int | None]] = {}  # track -> first, last, identity
        for r, key in zip(records, track_keys, strict=True):
            if r.identity_id is not None:
                first, last = seen.get(r.identity_id, (r.timestamp, r.timestamp))
                seen[r.identity_id] = (min(first, r.timestamp), max(last, r.timestamp))
            first, last, _ = spans.get(key, (r.timestamp, r.timestamp, None))
            spans[key] = (min(first, r.timestamp), max(last, r.timestamp), r.identity_id)  # the last record's identity
        if seen:
            ids = sorted(seen)
            db.execute("INSERT INTO identities (id, created, first_seen, last_seen) SELECT i, f, f, l "
                       f"FROM {_unnest('bigint', 'float8', 'float8')} AS v(i, f, l) ON CONFLICT (id) DO UPDATE "
                       "SET first_seen = LEAST(COALESCE(identities.first_seen, excluded.first_seen), "
                       "excluded.first_seen), last_seen = GREATEST(COALESCE(identities.last_seen, excluded.last_seen), "
                       "excluded.last_seen)", (ids, [seen[i][0] for i in ids], [seen[i][1] for i in ids]))
        keys = list(spans)  # first seen first, as record by record (a run's tracks are only this node's)
        runs, sources, segments, tracks = (list(column) for column in zip(*keys, strict=True))
        returned = db.execute(
            "INSERT INTO tracks (run_id, source_id, segment, track_id, identity_id, first_seen, last_seen) "
            f"SELECT * FROM {_unnest('bigint', 'bigint', 'int', 'int', 'bigint', 'float8', 'float8')} "
            "ON CONFLICT (run_id, source_id, segment, track_id) DO UPDATE SET "
            "last_seen = GREATEST(tracks.last_seen, excluded.last_seen), identity_id = excluded.identity_id "
            "RETURNING id, run_id, source_id, segment, track_id",
            (runs, sources, segments, tracks, [spans[k][2] for k in keys], [spans[k][0] for k in keys],
             [spans[k][1] for k in keys])).fetchall()
        track_rows = {(int(run), int(source), int(segment), int(track)): int(row)
                      for row, run, source, segment, track in returned}
        rows = [track_rows[key] for key in track_keys]
        db.execute("INSERT INTO sightings (id, run_id, source_id, track_row, identity_id, frame_index, timestamp, "
                   "media_time, x1, y1, x2, y2, confidence, match_score) SELECT * FROM "
                   + _unnest(*["bigint"] * 6, "float8", "float8", *["real"] * 6) + " ON CONFLICT (id) DO NOTHING",
                   _columns(
                       sighting_ids, [k[0] for k in track_keys], [k[1] for k in track_keys], rows,
                       [r.identity_id for r in records], [r.frame_index for r in records],
                       [r.timestamp for r in records], [r.media_time for r in records],
                       *([float(r.box[i]) for r in records] for i in range(4)),
                       [float(r.confidence) for r in records], [r.match_score for r in records]))
        alerts = [(sighting, r.alert) for sighting, r in zip(sighting_ids, records, strict=True) if r.alert is not None]
        if alerts:
            db.execute(f"INSERT INTO alerts (sighting_id, thumbnail) SELECT * FROM {_unnest('bigint', 'bytea')} "
                       "ON CONFLICT (sighting_id) DO NOTHING", _columns(*zip(*alerts, strict=True)))
        self._write_embeddings([(r, row, sighting, embedding)
                                for r, row, sighting, embedding in zip(records, rows, sighting_ids, embedding_ids,
                                                                       strict=True) if embedding is not None])
        self._write_thumbnails(records, rows)

    def _next_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids of ``table``'s identity column, drawn in one statement (rows get them in this order)."""
        return sorted(int(i) for (i,) in self._connection().execute(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, ?)", (count,)))

    def _write_embeddings(self, written: list[tuple[SightingRecord, int, int, int]]) -> None:
        """The embeddings of a batch (record, track row, sighting id, embedding id), then each touched track's
        weakest beyond ``embeddings_per_track``: the same best ones stay as when each insert is followed by its
        pruning."""
        if not written:
            return
        vectors = [np.asarray(r.embedding, np.float32) for r, _, _, _ in written]
        ids = [embedding for _, _, _, embedding in written]
        self._connection().execute(
            "INSERT INTO embeddings (id, track_row, identity_id, sighting_id, model_key, quality, vector) "
            f"SELECT * FROM {_unnest('bigint', 'bigint', 'bigint', 'bigint', 'text', 'real', 'bytea')} "
            "ON CONFLICT (id) DO NOTHING",
            _columns(ids, [row for _, row, _, _ in written], [r.identity_id for r, _, _, _ in written],
                     [sighting for _, _, sighting, _ in written], [r.model_key for r, _, _, _ in written],
                     [float(r.quality) for r, _, _, _ in written], [v.tobytes() for v in vectors]))
        for embedding_id, vector, (r, _, _, _) in zip(ids, vectors, written, strict=True):
            self.indexed.added(embedding_id, vector, r.model_key)
        if self.embeddings_per_track:
            self.indexed.deleted(int(i) for (i,) in self._connection().execute(
                "DELETE FROM embeddings WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY "
                "track_row ORDER BY quality DESC, id DESC) AS place FROM embeddings "
                "WHERE track_row = ANY(?::bigint[])) AS ranked WHERE place > ?) RETURNING id",
                (sorted({row for _, row, _, _ in written}), self.embeddings_per_track)).fetchall())

    def _write_thumbnails(self, records: list[SightingRecord], rows: list[int]) -> None:
        """The best crop of each track and identity in the batch, where it beats the stored one."""
        best_tracks: dict[int, tuple[float, bytes]] = {}
        best_identities: dict[int, tuple[float, bytes]] = {}
        for r, row in zip(records, rows, strict=True):
            if not r.thumbnail:
                continue
            for best, key in ((best_tracks, row), (best_identities, r.identity_id)):
                if key is not None and (key not in best or r.quality > best[key][0]):
                    best[key] = (float(r.quality), r.thumbnail)
        for table, best in (("tracks", best_tracks), ("identities", best_identities)):
            if best:
                keys = sorted(best)
                self._connection().execute(
                    f"UPDATE {table} AS t SET thumbnail = v.thumbnail, best_quality = v.quality FROM "
                    f"{_unnest('bigint', 'bytea', 'float8')} AS v(id, thumbnail, quality) "
                    "WHERE t.id = v.id AND t.best_quality < v.quality",
                    (keys, [best[k][1] for k in keys], [best[k][0] for k in keys]))


def _columns(*columns: Sequence[Any]) -> tuple[list[Any], ...]:
    """Lists for ``unnest``'s arrays (rows given as columns)."""
    return tuple(list(column) for column in columns)


def _unnest(*types: str) -> str:
    """``unnest`` of one array parameter per column, of these PostgreSQL types."""
    return "unnest(" + ", ".join(f"?::{t}[]" for t in types) + ")"
