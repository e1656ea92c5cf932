"""Retention's SQL, written once for both dialects: one block of sightings older than a cutoff deleted, with what
only they kept alive (their embeddings, tracks left empty, identities left without rows), in the transaction
its store opened (core/store/sql_history.py runs the blocks, one transaction each).

A followed or named person keeps the sightings of their :data:`KEPT_TRACKS` newest tracks whatever their age,
so their gallery is never emptied without the operator's say (stop following them and clear their name, and
retention takes those too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reid_desktop.core.store.identity_edits import IdentityEdits, IdList

PURGE_BLOCK = 2000  # sightings retention deletes per transaction (the edit lock is held for one block)
KEPT_TRACKS = 5  # a followed or named person's newest tracks, kept by retention whatever their age
# the tracks retention keeps: each followed or named identity's KEPT_TRACKS newest (one parameter: KEPT_TRACKS)
_KEPT_TRACKS_SQL = ("SELECT id FROM (SELECT t.id, row_number() OVER (PARTITION BY t.identity_id ORDER BY "
                    "t.last_seen DESC, t.id DESC) AS place FROM tracks t JOIN identities i ON i.id = t.identity_id "
                    "WHERE i.is_target = 1 OR i.label <> '') AS ranked WHERE place <= ?")


class Retention:
    """Blocks of old sightings deleted over the connection ``db()`` returns; ``purged`` is told the embedding ids
    each block deleted, inside its transaction (the other processes drop them from their vector indexes)."""

    def __init__(self, db: Callable[[], Any], ids: IdList, identities: IdentityEdits,
                 purged: Callable[[list[int]], None]) -> None:
        self._connection = db
        self._ids = ids
        self._identities = identities
        self._purged = purged

    def purge_block(self, cutoff: float) -> tuple[int, list[int], bool]:
        """Up to :data:`PURGE_BLOCK` sightings before ``cutoff``, oldest first, and the audit rows before it:
        (sightings deleted, embedding ids gone, whether none older is left)."""
        db, in_list, bind = self._connection(), self._ids.clause, self._ids.bind
        ids = [int(r[0]) for r in db.execute(
            f"SELECT id FROM sightings WHERE timestamp < ? AND track_row NOT IN ({_KEPT_TRACKS_SQL}) "
            "ORDER BY timestamp LIMIT ?", (cutoff, KEPT_TRACKS, PURGE_BLOCK))]
        db.execute("DELETE FROM identity_corrections WHERE timestamp < ?", (cutoff,))
        if not ids:
            return 0, [], True
        listed = bind(ids)
        tracks = [int(r[0]) for r in db.execute(f"SELECT DISTINCT track_row FROM sightings WHERE id {in_list}",
                                                (listed,))]
        track_list = bind(tracks)
        identities = sorted({int(r[0]) for r in db.execute(
            f"SELECT identity_id FROM sightings WHERE id {in_list} AND identity_id IS NOT NULL UNION "
            f"SELECT identity_id FROM tracks WHERE id {in_list} AND identity_id IS NOT NULL",
            (listed, track_list))})
        gone = [int(r[0]) for r in db.execute(f"DELETE FROM embeddings WHERE sighting_id {in_list} RETURNING id",
                                              (listed,))]
        db.execute(f"DELETE FROM sightings WHERE id {in_list}", (listed,))
        emptied = f"id {in_list} AND NOT EXISTS (SELECT 1 FROM sightings WHERE track_row = tracks.id)"
        gone += [int(r[0]) for r in db.execute(
            f"DELETE FROM embeddings WHERE track_row IN (SELECT id FROM tracks WHERE {emptied}) RETURNING id",
            (track_list,))]
        db.execute(f"DELETE FROM tracks WHERE {emptied}", (track_list,))
        db.execute(f"UPDATE tracks SET first_seen = (SELECT MIN(timestamp) FROM sightings "
                   f"WHERE track_row = tracks.id) WHERE id {in_list}", (track_list,))
        self._identities.refresh(identities)
        self._identities.forget_if_unused(identities, keep_labelled=True)
        self._purged(gone)
        return len(ids), gone, len(ids) < PURGE_BLOCK
