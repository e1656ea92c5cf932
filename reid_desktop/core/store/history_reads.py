"""The history's reads, written once for SQLite and PostgreSQL over the store's connection: the views, reports,
exports and the training export read through these (``HistoryReader``), and the engine's matcher asks them for
galleries and camera means. They need a connection and the dialect's few fragments, nothing of the writing side
(core/store/sql_history.py builds on them)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from reid_desktop.core.store.interface import (
    Alert,
    ConfirmedTrack,
    Correction,
    IdentitySummary,
    SearchHit,
    Sighting,
    StoreError,
    TrackSample,
    TrackSegment,
)
from reid_desktop.core.store.vector_index import VectorIndex
from reid_desktop.core.types import CameraMean

_SIGHTING_COLUMNS = """s.id, src.name, s.identity_id, t.track_id, s.frame_index, s.timestamp, s.media_time,
    s.x1, s.y1, s.x2, s.y2, s.confidence, s.match_score, s.run_id, s.track_row"""

_SUMMARY_COLUMNS = """i.id, i.label, i.is_target, MIN(s.timestamp), MAX(s.timestamp), {names},
    COUNT(s.id), MIN(s.media_time), MAX(s.media_time)"""


def _sighting(row: Sequence[Any]) -> Sighting:
    return Sighting(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                    (row[7], row[8], row[9], row[10]), row[11], row[12], row[13], row[14])


def _summary(row: Sequence[Any]) -> IdentitySummary:
    names = json.loads(row[5]) if isinstance(row[5], str) else row[5]  # SQLite: JSON text; PostgreSQL: a list
    cameras = tuple(sorted(name for name in names or () if name is not None))  # None: no sighting (LEFT JOIN)
    return IdentitySummary(row[0], row[1], bool(row[2]), row[3], row[4], cameras, row[6], row[7], row[8])


class HistoryReads(ABC):
    """Reads over :attr:`_db`, the connection of the calling thread."""

    _ALL_ROWS: str  # no limit, before an OFFSET
    _CAMERA_NAMES: str  # an identity's cameras, as one aggregate (a JSON array or a list: names hold commas)
    _ERRORS: tuple[type[BaseException], ...]  # what the database driver raises

    @property
    @abstractmethod
    def _db(self) -> Any:
        """The connection of this thread."""

    @property
    @abstractmethod
    def location(self) -> str:
        """The history in a few words, for log lines and messages."""

    @abstractmethod
    def attach_index(self, model_key: str, dim: int) -> VectorIndex:
        """The vector index of ``model_key``'s embeddings (search ranks with it)."""

    def corrections(self, limit: int = 100) -> list[Correction]:
        """The newest changes of identity, automatic and by the operator, newest first."""
        return [Correction(*row) for row in self._db.execute(
            "SELECT timestamp, actor, action, track_row, from_identity, to_identity, score "
            "FROM identity_corrections ORDER BY id DESC LIMIT ?", (limit,))]

    def alerts(self, identity_id: int | None = None, limit: int = 200) -> list[Alert]:
        """The newest alerts (of one identity), newest first; all of them when ``limit`` is negative."""
        where = "WHERE s.identity_id = ?" if identity_id is not None else ""
        limit_clause = "LIMIT ?" if limit >= 0 else self._ALL_ROWS
        return [Alert(*row) for row in self._db.execute(
            "SELECT a.id, s.identity_id, src.name, s.timestamp, s.media_time, s.match_score, a.thumbnail, "
            f"s.track_row, src.uri FROM alerts a JOIN sightings s ON s.id = a.sighting_id JOIN sources src "
            f"ON src.id = s.source_id {where} ORDER BY s.timestamp DESC, a.id DESC {limit_clause}",
            (*([identity_id] if identity_id is not None else []), *([limit] if limit >= 0 else [])))]

    def embedding_stamp(self, model_key: str) -> dict[str, int]:
        """What an up-to-date index of this model holds: how many embeddings, and the newest one's id."""
        count, newest = self._db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM embeddings WHERE model_key = ?",
                                         (model_key,)).fetchone()
        return {"count": int(count), "max_id": int(newest)}

    def iter_embeddings(self, model_key: str, after_id: int = 0,
                        chunk: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stored embeddings of one model with id > ``after_id``, as (ids, vectors) chunks in id order."""
        while True:
            rows = self._db.execute("SELECT id, vector FROM embeddings WHERE model_key = ? AND id > ? ORDER BY id "
                                    "LIMIT ?", (model_key, after_id, chunk)).fetchall()
            if not rows:
                return
            yield (np.array([r[0] for r in rows], np.int64),
                   np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))
            after_id = rows[-1][0]

    @property
    def _summary_columns(self) -> str:
        return _SUMMARY_COLUMNS.format(names=self._CAMERA_NAMES)

    def identity_galleries(self, model_key: str, per_identity: int,
                           recent: int) -> Iterator[tuple[int, bool, bool, np.ndarray]]:
        """The matcher's working set at start: every target and named identity, and the ``recent`` ones seen
        last, as (id, is target, is named, best embeddings of ``model_key``); identities without any are left out."""
        rows = self._db.execute(
            "SELECT id, is_target, label != '' FROM identities WHERE is_target = 1 OR label != '' UNION "
            "SELECT * FROM (SELECT id, is_target, label != '' FROM identities ORDER BY last_seen DESC NULLS LAST "
            "LIMIT ?) AS recent",
            (recent,)).fetchall()
        for identity_id, is_target, named in rows:
            gallery = self.identity_gallery(identity_id, model_key, per_identity)
            if len(gallery):
                yield int(identity_id), bool(is_target), bool(named), gallery

    def camera_means(self, model_key: str) -> dict[str, CameraMean]:
        """Every camera's mean embedding of ``model_key`` as last kept (core/identity/camera_norm.py)."""
        rows = self._db.execute("SELECT source, vector, count FROM camera_means WHERE model_key = ?", (model_key,))
        return {source: CameraMean(np.frombuffer(bytes(vector), dtype=np.float32).copy(), int(count))
                for source, vector, count in rows}

    def identity_gallery(self, identity_id: int, model_key: str, per_identity: int) -> np.ndarray:
        """The best stored embeddings (n×d float32) of one identity, to rebuild its gallery after an edit."""
        rows = self._db.execute("SELECT vector FROM embeddings WHERE identity_id = ? AND model_key = ? "
                                "ORDER BY quality DESC, id DESC LIMIT ?", (identity_id, model_key, per_identity))
        vectors = [np.frombuffer(r[0], dtype=np.float32) for r in rows]
        return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def confirmed_tracks(self, max_per_track: int) -> tuple[dict[int, str], list[ConfirmedTrack]]:
        """Identities the operator vouched for (named, or targets: id -> label) and their tracks, each with up
        to ``max_per_track`` sightings spread over its length, its ends avoided (for training data)."""
        try:
            labels = {row[0]: row[1] for row in self._db.execute(
                "SELECT id, label FROM identities WHERE label != '' OR is_target = 1 ORDER BY id")}
            tracks = []
            for row, identity, track_id, thumbnail, source, uri, kind in self._db.execute(
                    "SELECT t.id, t.identity_id, t.track_id, t.thumbnail, src.name, src.uri, src.kind FROM tracks t "
                    "JOIN sources src ON src.id = t.source_id JOIN identities i ON i.id = t.identity_id "
                    "WHERE i.label != '' OR i.is_target = 1 ORDER BY t.id").fetchall():
                rows = self._db.execute("SELECT frame_index, media_time, x1, y1, x2, y2 FROM sightings "
                                        "WHERE track_row = ? ORDER BY timestamp, id", (row,)).fetchall()
                count = min(len(rows), max_per_track)
                chosen = [rows[int((k + 0.5) * len(rows) / count)] for k in range(count)]
                tracks.append(ConfirmedTrack(identity, track_id, source, uri, kind, thumbnail,
                                             tuple(TrackSample(r[0], r[1], (r[2], r[3], r[4], r[5])) for r in chosen)))
        except self._ERRORS as exc:
            raise StoreError(f"{self.location} is not a usable reid-desktop database ({exc})") from None
        return labels, tracks

    def track_identity(self, track_row: int) -> int | None:
        row = self._db.execute("SELECT identity_id FROM tracks WHERE id = ?", (track_row,)).fetchone()
        return row[0] if row else None

    def track_row(self, run_id: int, source: str, segment: int, track_id: int) -> int | None:
        """The stored row of a per-camera track (as committed), or None."""
        row = self._db.execute(
            "SELECT t.id FROM tracks t JOIN sources src ON src.id = t.source_id WHERE t.run_id = ? AND src.name = ? "
            "AND t.segment = ? AND t.track_id = ?", (run_id, source, segment, track_id)).fetchone()
        return int(row[0]) if row else None

    def track_key(self, track_row: int) -> tuple[int, str, int, int] | None:
        """``(run_id, source name, segment, track id)`` of a stored track: how the pipeline knows it live."""
        row = self._db.execute("SELECT t.run_id, src.name, t.segment, t.track_id FROM tracks t "
                               "JOIN sources src ON src.id = t.source_id WHERE t.id = ?", (track_row,)).fetchone()
        return (int(row[0]), str(row[1]), int(row[2]), int(row[3])) if row else None

    def identities(self, run_id: int | None = None) -> list[IdentitySummary]:
        """Identities with at least one sighting (in run ``run_id`` when given), first seen first."""
        run_filter = "WHERE s.run_id = ?" if run_id is not None else ""
        rows = self._db.execute(
            f"SELECT {self._summary_columns} FROM identities i JOIN sightings s ON s.identity_id = i.id "
            f"JOIN sources src ON src.id = s.source_id {run_filter} GROUP BY i.id ORDER BY MIN(s.timestamp), i.id",
            () if run_id is None else (run_id,)).fetchall()
        return [_summary(r) for r in rows]

    def targets(self) -> list[IdentitySummary]:
        """Every target, also those not seen yet (listed last), first seen first."""
        return [_summary(r) for r in self._db.execute(
            f"SELECT {self._summary_columns} FROM identities i LEFT JOIN sightings s ON s.identity_id = i.id "
            "LEFT JOIN sources src ON src.id = s.source_id WHERE i.is_target = 1 GROUP BY i.id "
            "ORDER BY MIN(s.timestamp) IS NULL, MIN(s.timestamp), i.id")]

    def identity(self, identity_id: int) -> IdentitySummary | None:
        """One identity, with or without sightings; None when there is no such identity."""
        row = self._db.execute(
            f"SELECT {self._summary_columns} FROM identities i LEFT JOIN sightings s ON s.identity_id = i.id "
            "LEFT JOIN sources src ON src.id = s.source_id WHERE i.id = ? GROUP BY i.id", (identity_id,)).fetchone()
        return _summary(row) if row else None

    def track_segments(self, identity_id: int) -> list[TrackSegment]:
        """The target timeline: one segment per track of the identity, across cameras, in time order."""
        return [TrackSegment(*r) for r in self._db.execute(
            "SELECT t.id, t.run_id, src.name, t.track_id, t.identity_id, MIN(s.timestamp), MAX(s.timestamp), "
            "MIN(s.media_time), MAX(s.media_time), COUNT(s.id), t.best_quality, t.thumbnail, src.uri "
            "FROM tracks t JOIN sources src ON src.id = t.source_id JOIN sightings s ON s.track_row = t.id "
            "WHERE t.identity_id = ? GROUP BY t.id, src.id ORDER BY MIN(s.timestamp), t.id", (identity_id,))]

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

    def search(self, embedding: np.ndarray, model_key: str, k: int = 10,
               index: VectorIndex | None = None, vectors: bool = False) -> list[SearchHit]:
        """The ``k`` stored sightings whose embeddings are most similar (cosine) to ``embedding``.

        ``index``: the writer's index of ``model_key`` (a reader thread searching while the cameras run);
        without it this store's own, attached on first use. ``vectors``: each hit carries its embedding.
        """
        query = np.asarray(embedding, np.float32).reshape(1, -1)
        index = index or self.attach_index(model_key, query.shape[1])
        if query.shape[1] != index.dim:
            raise ValueError(f"query has {query.shape[1]} dimensions, stored embeddings {index.dim}")
        scores, ids = index.search(query, k)
        ranked = [(int(i), float(score)) for i, score in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not ranked:
            return []
        placeholders = ",".join("?" * len(ranked))
        found = {r[0]: (_sighting(r[2:]), np.frombuffer(bytes(r[1]), np.float32) if vectors else None)
                 for r in self._db.execute(
                     f"SELECT e.id, e.vector, {_SIGHTING_COLUMNS} FROM embeddings e JOIN sightings s ON s.id = "
                     f"e.sighting_id JOIN sources src ON src.id = s.source_id JOIN tracks t ON t.id = s.track_row "
                     f"WHERE e.id IN ({placeholders})", [i for i, _ in ranked])}
        return [SearchHit(found[i][0], score, found[i][1]) for i, score in ranked if i in found]  # deleted: left out

    def embedding_identities(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        """The identity each of these embeddings belongs to now (operator edits included)."""
        if not embedding_ids:
            return {}
        placeholders = ",".join("?" * len(embedding_ids))
        return {int(r[0]): int(r[1]) for r in self._db.execute(
            f"SELECT id, identity_id FROM embeddings WHERE id IN ({placeholders}) AND identity_id IS NOT NULL",
            [int(i) for i in embedding_ids])}
