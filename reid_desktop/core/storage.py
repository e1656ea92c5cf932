"""The sightings store: one SQLite file (WAL) with sources, identities, tracks, sightings,
best-crop thumbnails and embeddings.

One writer (the pipeline thread) commits at most every ``commit_interval_s``; readers (the GUI,
the CLI summary) open their own connections. WAL with ``synchronous=NORMAL`` means a crash or a
killed process loses at most the last uncommitted interval, never the database.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, status TEXT NOT NULL DEFAULT 'running',
    detector TEXT, embedder TEXT, embedder_is_fallback INTEGER NOT NULL DEFAULT 0, provider TEXT,
    model_key TEXT, warnings TEXT NOT NULL DEFAULT '[]', config TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, uri TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', is_target INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, first_seen REAL, last_seen REAL, best_quality REAL NOT NULL DEFAULT 0,
    thumbnail BLOB);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    source_id INTEGER NOT NULL REFERENCES sources(id), track_id INTEGER NOT NULL,
    identity_id INTEGER REFERENCES identities(id), first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    best_quality REAL NOT NULL DEFAULT 0, thumbnail BLOB, UNIQUE (run_id, source_id, track_id));
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, source_id INTEGER NOT NULL REFERENCES sources(id),
    track_row INTEGER NOT NULL REFERENCES tracks(id), identity_id INTEGER REFERENCES identities(id),
    frame_index INTEGER NOT NULL, timestamp REAL NOT NULL, media_time REAL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    confidence REAL NOT NULL, match_score REAL);
CREATE INDEX IF NOT EXISTS sightings_identity ON sightings (identity_id, timestamp);
CREATE INDEX IF NOT EXISTS sightings_source ON sightings (source_id, frame_index);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY, track_row INTEGER NOT NULL REFERENCES tracks(id),
    identity_id INTEGER REFERENCES identities(id), sighting_id INTEGER REFERENCES sightings(id),
    model_key TEXT NOT NULL, quality REAL NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS embeddings_model ON embeddings (model_key, identity_id);
-- Operator edits and retention look rows up by these columns, and SQLite checks each foreign key on delete
-- by scanning the referencing column: without them, purging N sightings costs N full table scans.
CREATE INDEX IF NOT EXISTS sightings_track ON sightings (track_row);
CREATE INDEX IF NOT EXISTS tracks_identity ON tracks (identity_id);
CREATE INDEX IF NOT EXISTS embeddings_track ON embeddings (track_row);
CREATE INDEX IF NOT EXISTS embeddings_sighting ON embeddings (sighting_id);
"""


class StoreError(RuntimeError):
    """The database file cannot be opened or is not a reid-desktop store."""


@dataclass(frozen=True)
class Sighting:
    id: int
    source: str
    identity_id: int | None
    track_id: int
    frame_index: int
    timestamp: float
    media_time: float | None
    box: tuple[float, float, float, float]
    confidence: float
    match_score: float | None
    run_id: int
    track_row: int


@dataclass(frozen=True)
class IdentitySummary:
    identity_id: int
    label: str
    is_target: bool
    first_seen: float | None
    last_seen: float | None
    cameras: tuple[str, ...]
    sightings: int
    first_media_time: float | None
    last_media_time: float | None


@dataclass(frozen=True)
class SearchHit:
    sighting: Sighting
    score: float


@dataclass(frozen=True)
class TrackSegment:
    """One uninterrupted appearance of an identity on one camera: a row of the target timeline.

    Times come from the track's sightings; media times are None for live sources.
    """

    track_row: int
    run_id: int
    source: str
    track_id: int
    identity_id: int | None
    first_seen: float
    last_seen: float
    first_media_time: float | None
    last_media_time: float | None
    sightings: int
    best_quality: float
    thumbnail: bytes | None


_SIGHTING_COLUMNS = """s.id, src.name, s.identity_id, t.track_id, s.frame_index, s.timestamp, s.media_time,
    s.x1, s.y1, s.x2, s.y2, s.confidence, s.match_score, s.run_id, s.track_row"""

_SUMMARY_COLUMNS = """i.id, i.label, i.is_target, MIN(s.timestamp), MAX(s.timestamp), GROUP_CONCAT(DISTINCT src.name),
    COUNT(s.id), MIN(s.media_time), MAX(s.media_time)"""


def _sighting(row: Sequence[Any]) -> Sighting:
    return Sighting(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                    (row[7], row[8], row[9], row[10]), row[11], row[12], row[13], row[14])


def _summary(row: Sequence[Any]) -> IdentitySummary:
    cameras = tuple(sorted(row[5].split(","))) if row[5] else ()
    return IdentitySummary(row[0], row[1], bool(row[2]), row[3], row[4], cameras, row[6], row[7], row[8])


class SightingStore:
    """Access to one sightings database. Not thread-safe: one instance per thread."""

    def __init__(self, path: Path | str, commit_interval_s: float = 1.0, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise StoreError(f"database not found: {self.path}")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
            self._db = sqlite3.connect(uri, uri=True, timeout=10.0)
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._db.commit()
            version = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable reid-desktop database ({exc})") from None
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has database schema {version and version[0]}, newer than this "
                             f"version understands ({SCHEMA_VERSION})")
        self.commit_interval_s = commit_interval_s
        self._last_commit = time.monotonic()
        self._source_rows: dict[str, int] = {}

    # -- writing ---------------------------------------------------------------------------------

    def begin_run(self, *, detector: str, embedder: str, embedder_is_fallback: bool, provider: str,
                  model_key: str, warnings: Sequence[str], config: dict[str, Any]) -> int:
        cur = self._db.execute(
            "INSERT INTO runs (started, detector, embedder, embedder_is_fallback, provider, model_key, warnings, "
            "config) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), detector, embedder, int(embedder_is_fallback), provider, model_key,
             json.dumps(list(warnings)), json.dumps(config)))
        self._db.commit()
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, status: str) -> None:
        self._db.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))
        self.commit()

    def source_row(self, name: str, uri: str, kind: str) -> int:
        if name not in self._source_rows:
            self._db.execute("INSERT INTO sources (name, uri, kind) VALUES (?, ?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET uri = excluded.uri, kind = excluded.kind",
                             (name, uri, kind))
            row = self._db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
            self._source_rows[name] = int(row[0])
        return self._source_rows[name]

    def ensure_identity(self, identity_id: int, timestamp: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO identities (id, created) VALUES (?, ?)", (identity_id, timestamp))

    def track_row(self, run_id: int, source_row: int, track_id: int, identity_id: int | None,
                  timestamp: float) -> int:
        self._db.execute(
            "INSERT INTO tracks (run_id, source_id, track_id, identity_id, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, source_id, track_id) DO UPDATE SET "
            "last_seen = excluded.last_seen, identity_id = excluded.identity_id",
            (run_id, source_row, track_id, identity_id, timestamp, timestamp))
        row = self._db.execute("SELECT id FROM tracks WHERE run_id = ? AND source_id = ? AND track_id = ?",
                               (run_id, source_row, track_id)).fetchone()
        return int(row[0])

    def touch_track(self, track_row: int, identity_id: int | None, timestamp: float) -> None:
        """Extend a track already stored (cheaper than :meth:`track_row` on every frame)."""
        self._db.execute("UPDATE tracks SET last_seen = ?, identity_id = ? WHERE id = ?",
                         (timestamp, identity_id, track_row))

    def add_sighting(self, *, run_id: int, source_row: int, track_row: int, identity_id: int | None,
                     frame_index: int, timestamp: float, media_time: float | None, box: Sequence[float],
                     confidence: float, match_score: float | None) -> int:
        cur = self._db.execute(
            "INSERT INTO sightings (run_id, source_id, track_row, identity_id, frame_index, timestamp, media_time, "
            "x1, y1, x2, y2, confidence, match_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, source_row, track_row, identity_id, frame_index, timestamp, media_time,
             *(float(v) for v in box[:4]), float(confidence), match_score))
        if identity_id is not None:
            self._db.execute(
                "UPDATE identities SET first_seen = MIN(COALESCE(first_seen, ?), ?), "
                "last_seen = MAX(COALESCE(last_seen, ?), ?) WHERE id = ?",
                (timestamp, timestamp, timestamp, timestamp, identity_id))
        return int(cur.lastrowid or 0)

    def add_embeddings(self, *, track_row: int, identity_id: int | None, sighting_id: int | None,
                       model_key: str, vectors: np.ndarray, qualities: Sequence[float]) -> None:
        self._db.executemany(
            "INSERT INTO embeddings (track_row, identity_id, sighting_id, model_key, quality, vector) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(track_row, identity_id, sighting_id, model_key, float(q), np.asarray(v, np.float32).tobytes())
             for v, q in zip(vectors, qualities, strict=True)])

    def set_thumbnail(self, track_row: int, identity_id: int | None, jpeg: bytes, quality: float) -> None:
        """Keep the best crop per track and per identity."""
        self._db.execute("UPDATE tracks SET thumbnail = ?, best_quality = ? WHERE id = ? AND best_quality < ?",
                         (jpeg, quality, track_row, quality))
        if identity_id is not None:
            self._db.execute("UPDATE identities SET thumbnail = ?, best_quality = ? "
                             "WHERE id = ? AND best_quality < ?", (jpeg, quality, identity_id, quality))

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        self._db.execute("UPDATE identities SET is_target = ? WHERE id = ?", (int(is_target), identity_id))
        self.commit()

    def set_label(self, identity_id: int, label: str) -> None:
        self._db.execute("UPDATE identities SET label = ? WHERE id = ?", (label, identity_id))
        self.commit()

    def commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()

    def maybe_commit(self) -> None:
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()

    def close(self) -> None:
        try:
            self._db.commit()
        finally:
            self._db.close()

    def __enter__(self) -> SightingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operator edits and retention ------------------------------------------------------------

    @contextmanager
    def _edit(self) -> Iterator[None]:
        """Apply an operator edit all or nothing, then commit.

        A savepoint rather than a transaction: on failure only the edit is undone, not rows the pipeline
        wrote on this connection and has not committed yet.
        """
        self._db.execute("SAVEPOINT edit")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO edit")
            self._db.execute("RELEASE edit")
            raise
        self._db.execute("RELEASE edit")
        self.commit()

    def merge_identities(self, keep: int, drop: int) -> None:
        """The operator says ``drop`` is the same person as ``keep``: ``keep`` takes all of ``drop``'s rows."""
        if keep == drop:
            raise ValueError(f"cannot merge identity {keep} with itself")
        rows = {r[0]: r for r in self._db.execute(
            "SELECT id, label, is_target, first_seen, last_seen, best_quality, thumbnail FROM identities "
            "WHERE id IN (?, ?)", (keep, drop))}
        for identity_id in (keep, drop):
            if identity_id not in rows:
                raise ValueError(f"unknown identity {identity_id}")
        k, d = rows[keep], rows[drop]
        seen_first = [t for t in (k[3], d[3]) if t is not None]
        seen_last = [t for t in (k[4], d[4]) if t is not None]
        best = d if d[5] > k[5] else k
        with self._edit():
            for table in ("tracks", "sightings", "embeddings"):
                self._db.execute(f"UPDATE {table} SET identity_id = ? WHERE identity_id = ?", (keep, drop))
            self._db.execute(
                "UPDATE identities SET label = ?, is_target = ?, first_seen = ?, last_seen = ?, best_quality = ?, "
                "thumbnail = ? WHERE id = ?",
                (k[1] or d[1], max(k[2], d[2]), min(seen_first, default=None), max(seen_last, default=None),
                 best[5], best[6], keep))
            self._db.execute("DELETE FROM identities WHERE id = ?", (drop,))

    def split_track(self, track_row: int, new_id: int | None = None) -> int:
        """The operator says a track is not this person: the track becomes a new identity, whose id is returned.

        A running pipeline passes ``new_id`` (an id its matcher reserved), so ids never clash.

        The identities it leaves get their first/last seen and thumbnail from what remains; one left without
        sightings is deleted unless it is a target.
        """
        row = self._db.execute("SELECT identity_id, best_quality, thumbnail FROM tracks WHERE id = ?",
                               (track_row,)).fetchone()
        if row is None:
            raise ValueError(f"unknown track row {track_row}")
        # sightings recorded before the track was identified may carry another identity (or none)
        left = {row[0], *(r[0] for r in self._db.execute(
            "SELECT DISTINCT identity_id FROM sightings WHERE track_row = ?", (track_row,)))} - {None}
        new_id = self.next_identity_id() if new_id is None else new_id
        with self._edit():
            first, last = self._db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM sightings WHERE track_row = ?",
                                           (track_row,)).fetchone()
            self._db.execute("INSERT INTO identities (id, created, first_seen, last_seen, best_quality, thumbnail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (new_id, time.time(), first, last, row[1], row[2]))
            self._db.execute("UPDATE tracks SET identity_id = ? WHERE id = ?", (new_id, track_row))
            for table in ("sightings", "embeddings"):
                self._db.execute(f"UPDATE {table} SET identity_id = ? WHERE track_row = ?", (new_id, track_row))
            for identity_id in left:
                self._refresh_identity(identity_id)
                self._forget_if_unused(identity_id, keep_labelled=False)
        return new_id

    def purge_older_than(self, cutoff: float) -> int:
        """Data retention: delete sightings before ``cutoff`` (epoch seconds) and what only they kept alive.

        Tracks left without sightings go; identities left without sightings go unless they are targets or
        labelled. Returns the number of sightings deleted.
        """
        tracks = [r[0] for r in self._db.execute("SELECT DISTINCT track_row FROM sightings WHERE timestamp < ?",
                                                 (cutoff,))]
        identities = {r[0] for r in self._db.execute(
            "SELECT s.identity_id FROM sightings s WHERE s.timestamp < ? UNION "
            "SELECT t.identity_id FROM tracks t JOIN sightings s ON s.track_row = t.id WHERE s.timestamp < ?",
            (cutoff, cutoff))} - {None}
        with self._edit():
            self._db.execute("DELETE FROM embeddings WHERE sighting_id IN "
                             "(SELECT id FROM sightings WHERE timestamp < ?)", (cutoff,))
            deleted = self._db.execute("DELETE FROM sightings WHERE timestamp < ?", (cutoff,)).rowcount
            for track in tracks:
                remaining = self._db.execute("SELECT MIN(timestamp) FROM sightings WHERE track_row = ?",
                                             (track,)).fetchone()[0]
                if remaining is not None:
                    self._db.execute("UPDATE tracks SET first_seen = ? WHERE id = ?", (remaining, track))
                else:
                    self._db.execute("DELETE FROM embeddings WHERE track_row = ?", (track,))
                    self._db.execute("DELETE FROM tracks WHERE id = ?", (track,))
            for identity_id in identities:
                self._refresh_identity(identity_id)
                self._forget_if_unused(identity_id, keep_labelled=True)
        return deleted

    def _refresh_identity(self, identity_id: int) -> None:
        """Recompute first/last seen and the best thumbnail from the rows an identity still has."""
        self._db.execute(
            "UPDATE identities SET "
            "first_seen = (SELECT MIN(timestamp) FROM sightings WHERE identity_id = identities.id), "
            "last_seen = (SELECT MAX(timestamp) FROM sightings WHERE identity_id = identities.id), "
            "best_quality = COALESCE((SELECT MAX(best_quality) FROM tracks "
            "WHERE identity_id = identities.id AND thumbnail IS NOT NULL), 0), "
            "thumbnail = (SELECT thumbnail FROM tracks WHERE identity_id = identities.id AND thumbnail IS NOT NULL "
            "ORDER BY best_quality DESC, id LIMIT 1) WHERE id = ?", (identity_id,))

    def _forget_if_unused(self, identity_id: int, *, keep_labelled: bool) -> None:
        """Delete an identity that no row refers to any more; targets (and named ones, if asked) stay."""
        self._db.execute(
            "DELETE FROM identities WHERE id = ? AND is_target = 0 AND (? = 0 OR label = '') "
            "AND NOT EXISTS (SELECT 1 FROM sightings WHERE identity_id = identities.id) "
            "AND NOT EXISTS (SELECT 1 FROM tracks WHERE identity_id = identities.id) "
            "AND NOT EXISTS (SELECT 1 FROM embeddings WHERE identity_id = identities.id)",
            (identity_id, int(keep_labelled)))

    # -- reading ---------------------------------------------------------------------------------

    def next_identity_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM identities").fetchone()
        return int(row[0]) + 1

    def identity_galleries(self, model_key: str, per_identity: int) -> Iterator[tuple[int, bool, np.ndarray]]:
        """The best stored embeddings of each identity for one model, to restore the matcher."""
        rows = self._db.execute(
            "SELECT i.id, i.is_target, e.vector FROM identities i JOIN embeddings e ON e.identity_id = i.id "
            "WHERE e.model_key = ? ORDER BY i.id, e.quality DESC, e.id DESC", (model_key,)).fetchall()
        current: int | None = None
        target = False
        vectors: list[np.ndarray] = []
        for identity_id, is_target, blob in [*rows, (None, 0, b"")]:
            if identity_id != current:
                if current is not None and vectors:
                    yield current, target, np.stack(vectors)
                current, target, vectors = identity_id, bool(is_target), []
            if identity_id is not None and len(vectors) < per_identity:
                vectors.append(np.frombuffer(blob, dtype=np.float32))

    def identity_gallery(self, identity_id: int, model_key: str, per_identity: int) -> np.ndarray:
        """The best stored embeddings (n×d float32) of one identity, to rebuild its gallery after an edit."""
        rows = self._db.execute("SELECT vector FROM embeddings WHERE identity_id = ? AND model_key = ? "
                                "ORDER BY quality DESC, id DESC LIMIT ?", (identity_id, model_key, per_identity))
        vectors = [np.frombuffer(r[0], dtype=np.float32) for r in rows]
        return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def track_identity(self, track_row: int) -> int | None:
        row = self._db.execute("SELECT identity_id FROM tracks WHERE id = ?", (track_row,)).fetchone()
        return row[0] if row else None

    def identities(self, run_id: int | None = None) -> list[IdentitySummary]:
        """Identities with at least one sighting (in run ``run_id`` when given), first seen first."""
        run_filter = "WHERE s.run_id = ?" if run_id is not None else ""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM identities i JOIN sightings s ON s.identity_id = i.id "
            f"JOIN sources src ON src.id = s.source_id {run_filter} GROUP BY i.id ORDER BY MIN(s.timestamp), i.id",
            () if run_id is None else (run_id,)).fetchall()
        return [_summary(r) for r in rows]

    def targets(self) -> list[IdentitySummary]:
        """Every target, also those not seen yet (listed last), first seen first."""
        return [_summary(r) for r in self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM identities i LEFT JOIN sightings s ON s.identity_id = i.id "
            "LEFT JOIN sources src ON src.id = s.source_id WHERE i.is_target = 1 GROUP BY i.id "
            "ORDER BY MIN(s.timestamp) IS NULL, MIN(s.timestamp), i.id")]

    def identity(self, identity_id: int) -> IdentitySummary | None:
        """One identity, with or without sightings; None when there is no such identity."""
        row = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM identities i LEFT JOIN sightings s ON s.identity_id = i.id "
            "LEFT JOIN sources src ON src.id = s.source_id WHERE i.id = ? GROUP BY i.id", (identity_id,)).fetchone()
        return _summary(row) if row else None

    def track_segments(self, identity_id: int) -> list[TrackSegment]:
        """The target timeline: one segment per track of the identity, across cameras, in time order."""
        return [TrackSegment(*r) for r in self._db.execute(
            "SELECT t.id, t.run_id, src.name, t.track_id, t.identity_id, MIN(s.timestamp), MAX(s.timestamp), "
            "MIN(s.media_time), MAX(s.media_time), COUNT(s.id), t.best_quality, t.thumbnail "
            "FROM tracks t JOIN sources src ON src.id = t.source_id JOIN sightings s ON s.track_row = t.id "
            "WHERE t.identity_id = ? GROUP BY t.id ORDER BY MIN(s.timestamp), t.id", (identity_id,))]

    def sightings(self, identity_id: int | None = None, source: str | None = None) -> list[Sighting]:
        """Sightings in time order, optionally of one identity or one source."""
        where: list[str] = []
        args: list[int | str] = []
        if identity_id is not None:
            where.append("s.identity_id = ?")
            args.append(identity_id)
        if source is not None:
            where.append("src.name = ?")
            args.append(source)
        sql = (f"SELECT {_SIGHTING_COLUMNS} FROM sightings s JOIN sources src ON src.id = s.source_id "
               f"JOIN tracks t ON t.id = s.track_row {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY s.timestamp, s.id")
        return [_sighting(r) for r in self._db.execute(sql, args)]

    def thumbnail(self, identity_id: int) -> bytes | None:
        row = self._db.execute("SELECT thumbnail FROM identities WHERE id = ?", (identity_id,)).fetchone()
        return row[0] if row else None

    def track_thumbnail(self, track_row: int) -> bytes | None:
        """The best crop of one track: a search hit shows the track it came from, not the whole identity."""
        row = self._db.execute("SELECT thumbnail FROM tracks WHERE id = ?", (track_row,)).fetchone()
        return row[0] if row else None

    def sighting_track_row(self, sighting_id: int) -> int | None:
        row = self._db.execute("SELECT track_row FROM sightings WHERE id = ?", (sighting_id,)).fetchone()
        return int(row[0]) if row else None

    def runs(self) -> list[dict[str, Any]]:
        cols = ["id", "started", "finished", "status", "detector", "embedder", "embedder_is_fallback",
                "provider", "model_key", "warnings"]
        rows = self._db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id").fetchall()
        out = []
        for row in rows:
            item = dict(zip(cols, row, strict=True))
            item["warnings"] = json.loads(item["warnings"])
            item["embedder_is_fallback"] = bool(item["embedder_is_fallback"])
            out.append(item)
        return out

    def search(self, embedding: np.ndarray, model_key: str, k: int = 10) -> list[SearchHit]:
        """The ``k`` stored sightings whose embeddings are most similar (cosine) to ``embedding``."""
        rows = self._db.execute(
            "SELECT e.sighting_id, e.vector FROM embeddings e WHERE e.model_key = ? AND e.sighting_id IS NOT NULL",
            (model_key,)).fetchall()
        if not rows:
            return []
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        if matrix.shape[1] != embedding.shape[-1]:
            raise ValueError(f"query has {embedding.shape[-1]} dimensions, stored embeddings {matrix.shape[1]}")
        scores = matrix @ np.asarray(embedding, np.float32).ravel()
        best: dict[int, float] = {}
        for sighting_id, score in zip(ids.tolist(), scores.tolist(), strict=True):
            best[sighting_id] = max(score, best.get(sighting_id, -1.0))
        top = sorted(best.items(), key=lambda item: -item[1])[:k]
        placeholders = ",".join("?" * len(top))
        by_id = {r[0]: _sighting(r) for r in self._db.execute(
            f"SELECT {_SIGHTING_COLUMNS} FROM sightings s JOIN sources src ON src.id = s.source_id "
            f"JOIN tracks t ON t.id = s.track_row WHERE s.id IN ({placeholders})", [i for i, _ in top])}
        return [SearchHit(by_id[i], score) for i, score in top]

    # -- export ----------------------------------------------------------------------------------

    def export_csv(self, path: Path, identity_id: int | None = None) -> int:
        sightings = self.sightings(identity_id)
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["sighting_id", "source", "identity_id", "track_id", "frame_index", "timestamp",
                             "media_time", "x1", "y1", "x2", "y2", "confidence", "match_score", "run_id"])
            for s in sightings:
                writer.writerow([s.id, s.source, s.identity_id, s.track_id, s.frame_index, f"{s.timestamp:.3f}",
                                 "" if s.media_time is None else f"{s.media_time:.3f}",
                                 *(f"{v:.1f}" for v in s.box), f"{s.confidence:.3f}",
                                 "" if s.match_score is None else f"{s.match_score:.3f}", s.run_id])
        return len(sightings)

    def export_json(self, path: Path, identity_id: int | None = None) -> int:
        sightings = self.sightings(identity_id)
        payload = {
            "identities": [asdict(i) for i in self.identities()
                           if identity_id is None or i.identity_id == identity_id],
            "sightings": [asdict(s) for s in sightings],
            "runs": self.runs(),
        }
        Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        return len(sightings)
