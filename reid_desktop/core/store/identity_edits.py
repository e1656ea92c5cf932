"""The SQL of identity edits and their audit, written once for both dialects: the operator merges two identities,
splits a track off one, names or follows one; the matcher moves a young track to another identity. Every change
of a track's identity leaves an audit row (the newest :data:`AUDIT_ROWS`; retention ages them out too) and is
announced to the other processes on the history.

Each method runs inside a write transaction its store opened (core/store/sql_history.py: the sightings waiting
to be written go first, so an edit sees every row it names) on the connection the store hands over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reid_desktop.core.store.shared_changes import Labelled, Merged, Regrouped, SharedChange, Split, TargetChanged

AUDIT_ROWS = 100_000  # identity changes kept in the audit (the newest); retention also ages them out


@dataclass(frozen=True)
class IdList:
    """How a dialect passes a list of ids as one parameter: ``f"id {clause}"`` with ``bind(ids)`` as its value."""

    clause: str
    bind: Callable[[Sequence[int]], Any]


class IdentityEdits:
    """Identity edits over the connection ``db()`` returns (the calling thread's), telling ``announce`` each change
    inside the transaction that makes it."""

    def __init__(self, db: Callable[[], Any], ids: IdList, announce: Callable[[SharedChange], None]) -> None:
        self._connection = db
        self._ids = ids
        self._announce = announce

    def merge(self, keep: int, drop: int) -> None:
        """``drop`` is the same person as ``keep``: ``keep`` takes all of ``drop``'s rows, its name and its best
        thumbnail where it has none better; ``drop`` is deleted. ``keep`` and ``drop`` differ (the store checks)."""
        db = self._connection()
        rows = {r[0]: r for r in db.execute(
            "SELECT id, label, is_target, first_seen, last_seen, best_quality, thumbnail FROM identities "
            "WHERE id IN (?, ?)", (keep, drop))}
        for identity_id in (keep, drop):
            if identity_id not in rows:
                raise ValueError(f"unknown identity {identity_id}")
        k, d = rows[keep], rows[drop]
        seen_first = [t for t in (k[3], d[3]) if t is not None]
        seen_last = [t for t in (k[4], d[4]) if t is not None]
        best = d if d[5] > k[5] else k
        for table in ("tracks", "sightings", "embeddings"):
            db.execute(f"UPDATE {table} SET identity_id = ? WHERE identity_id = ?", (keep, drop))
        db.execute(
            "UPDATE identities SET label = ?, is_target = ?, first_seen = ?, last_seen = ?, best_quality = ?, "
            "thumbnail = ? WHERE id = ?",
            (k[1] or d[1], max(k[2], d[2]), min(seen_first, default=None), max(seen_last, default=None),
             best[5], best[6], keep))
        db.execute("DELETE FROM identities WHERE id = ?", (drop,))
        self._audit("operator", "merge", None, drop, keep)

    def reassign(self, track_row: int, identity_id: int, previous: int, score: float | None) -> None:
        """An automatic correction: the track's rows move from ``previous`` to ``identity_id`` (made if new)."""
        self._connection().execute("INSERT INTO identities (id, created) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                                   (identity_id, time.time()))
        self._relabel_track(track_row, identity_id)
        self.refresh([identity_id, previous])
        self.forget_if_unused([previous], keep_labelled=True)
        self._audit("auto", "reassign", track_row, previous, identity_id, score)

    def split(self, track_row: int, new_id: int) -> None:
        """The track is not this person: it becomes identity ``new_id``. The identities it leaves get their first and
        last seen and thumbnail from what remains; one left without sightings is deleted unless it is a target."""
        db = self._connection()
        row = db.execute("SELECT identity_id, best_quality, thumbnail FROM tracks WHERE id = ?",
                         (track_row,)).fetchone()
        if row is None:
            raise ValueError(f"unknown track row {track_row}")
        # sightings recorded before the track was identified may carry another identity (or none)
        left = {row[0], *(r[0] for r in db.execute(
            "SELECT DISTINCT identity_id FROM sightings WHERE track_row = ?", (track_row,)))} - {None}
        first, last = db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM sightings WHERE track_row = ?",
                                 (track_row,)).fetchone()
        db.execute("INSERT INTO identities (id, created, first_seen, last_seen, best_quality, thumbnail) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (new_id, time.time(), first, last, row[1], row[2]))
        self._relabel_track(track_row, new_id)
        self.refresh(sorted(left))
        self.forget_if_unused(sorted(left), keep_labelled=False)
        self._audit("operator", "split", track_row, row[0], new_id)

    def ensure(self, identity_id: int, timestamp: float) -> None:
        """An identity row without sightings yet (a target named before it was seen)."""
        self._connection().execute("INSERT INTO identities (id, created) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                                   (identity_id, timestamp))

    def set_target(self, identity_id: int, is_target: bool) -> None:
        self._connection().execute("UPDATE identities SET is_target = ? WHERE id = ?", (int(is_target), identity_id))
        self._announce(TargetChanged(identity_id, is_target))

    def set_label(self, identity_id: int, label: str) -> None:
        self._connection().execute("UPDATE identities SET label = ? WHERE id = ?", (label, identity_id))
        if label:
            self._announce(Labelled(identity_id))

    def refresh(self, identity_ids: Sequence[int]) -> None:
        """Recompute first/last seen and the best thumbnail from the rows these identities still have."""
        self._connection().execute(
            "UPDATE identities SET "
            "first_seen = (SELECT MIN(timestamp) FROM sightings WHERE identity_id = identities.id), "
            "last_seen = (SELECT MAX(timestamp) FROM sightings WHERE identity_id = identities.id), "
            "best_quality = COALESCE((SELECT MAX(best_quality) FROM tracks "
            "WHERE identity_id = identities.id AND thumbnail IS NOT NULL), 0), "
            "thumbnail = (SELECT thumbnail FROM tracks WHERE identity_id = identities.id AND thumbnail IS NOT NULL "
            f"ORDER BY best_quality DESC, id LIMIT 1) WHERE id {self._ids.clause}", (self._ids.bind(identity_ids),))

    def forget_if_unused(self, identity_ids: Sequence[int], *, keep_labelled: bool) -> None:
        """Delete those of these identities that no row refers to any more; targets (and named ones, if asked) stay."""
        self._connection().execute(
            f"DELETE FROM identities WHERE id {self._ids.clause} AND is_target = 0 AND (? = 0 OR label = '') "
            "AND NOT EXISTS (SELECT 1 FROM sightings WHERE identity_id = identities.id) "
            "AND NOT EXISTS (SELECT 1 FROM tracks WHERE identity_id = identities.id) "
            "AND NOT EXISTS (SELECT 1 FROM embeddings WHERE identity_id = identities.id)",
            (self._ids.bind(identity_ids), int(keep_labelled)))

    def _relabel_track(self, track_row: int, identity_id: int) -> None:
        """Every row of one track now belongs to ``identity_id``."""
        db = self._connection()
        db.execute("UPDATE tracks SET identity_id = ? WHERE id = ?", (identity_id, track_row))
        for table in ("sightings", "embeddings"):
            db.execute(f"UPDATE {table} SET identity_id = ? WHERE track_row = ?", (identity_id, track_row))

    def _audit(self, actor: str, action: str, track_row: int | None, before: int | None, after: int | None,
               score: float | None = None) -> None:
        """One row of the identity audit; the oldest go past AUDIT_ROWS. The change is announced as what it did."""
        db = self._connection()
        row = db.execute(
            "INSERT INTO identity_corrections (timestamp, actor, action, track_row, from_identity, to_identity, "
            "score) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (time.time(), actor, action, track_row, before, after, score)).fetchone()
        db.execute("DELETE FROM identity_corrections WHERE id <= ?", (row[0] - AUDIT_ROWS,))
        if before is None or after is None:
            return
        if action == "split" and track_row is not None:
            self._announce(Split(track_row, before, after))
        elif action == "merge" or db.execute("SELECT 1 FROM identities WHERE id = ?", (before,)).fetchone() \
                is None:  # a reassignment that left ``before`` without sightings: it is ``after`` now
            self._announce(Merged(after, before))
        else:
            self._announce(Regrouped(before, after))
