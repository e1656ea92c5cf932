"""What other processes change on a shared PostgreSQL database, heard as it happens: the listener that takes every
announced change (NOTIFY on :data:`~reid_desktop.core.store.pg_schema.CHANGES_CHANNEL`) back to what the database
records, and catches up on embeddings written while it was away. PostgreSQL only; the engine hands what it hears
to the pipeline (:mod:`~reid_desktop.core.engine.engine_setup`)."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.notifications import NotificationListener
from reid_desktop.core.store.pg_schema import CHANGES_CHANNEL, SERVER_NOW
from reid_desktop.core.store.shared_changes import (
    EmbeddingsAdded,
    EmbeddingsPurged,
    Heard,
    Labelled,
    Merged,
    Purged,
    Regrouped,
    SharedChange,
    SharedEmbeddings,
    Split,
    TargetChanged,
    TargetsNow,
    parse_change,
)

log = logging.getLogger(__name__)

CATCH_UP_BLOCK = 5000  # embeddings read at a time when a listener catches up after a reconnection
MARK_EVERY_S = 5.0  # how often a change listener moves its catch-up horizon forward
HEARD_KEPT = 100_000  # embeddings a change listener remembers having heard above its horizon


class ChangeListener(NotificationListener):
    """Hears what other processes change on the shared database (NOTIFY on
    :data:`~reid_desktop.core.store.pg_schema.CHANGES_CHANNEL`) and hands each change to ``apply`` at once.

    Announced embeddings are read here, so the pipeline only has to add them; the changes ``own_backend``
    (the server process of this node's store) announced are left out: they are in effect already. On every
    (re)connection it first hands over the current targets (:class:`TargetsNow`), so a target set or dropped while
    the server or the network was away is followed or dropped as soon as it is back.

    Notifications are not kept for a listener that is away, so it catches up on embeddings by the transaction
    that wrote them (schema 5), not by their ids: ids are drawn when a row is written, and a writer that drew
    its ids before an outage may commit during it. The listener keeps a *horizon*, a transaction id below which
    every writer had ended and had its notifications heard here. A marker moves it every :data:`MARK_EVERY_S`:
    one statement takes the oldest transaction still running and notifies it on a channel of this connection
    alone; notifications arrive in commit order, so when the marker is heard, so is every change of the
    transactions below it. Back from a lost connection, the listener reads the embeddings of other runs than
    ``own_runs`` written by transactions at or above the horizon that it has not heard of yet, in blocks of
    :data:`CATCH_UP_BLOCK`. Before its first connection the horizon is ``since()``: the oldest transaction
    running when this process's vector index read the database, so nothing committed in between is missed.
    """

    def __init__(self, location: PostgresLocation, apply: Callable[[Heard], None],
                 model_key: Callable[[], str], own_backend: Callable[[], int],
                 own_runs: Callable[[], Collection[int]], since: Callable[[], int | None] = lambda: None) -> None:
        super().__init__(location, CHANGES_CHANNEL, "change-listener")
        self.apply, self.model_key, self.own_backend, self.own_runs = apply, model_key, own_backend, own_runs
        self.since = since
        self.horizon: int | None = None
        self._heard: dict[int, int] = {}  # embedding id -> the transaction that wrote it, at or above the horizon
        self._mark_channel = ""
        self._marked_at = -MARK_EVERY_S
        self._purge_seq: int | None = None  # the newest retention purge taken on
        self.clock_offset = 0.0  # this machine's clock less the server's: other writers' times are read on ours

    def connected(self, conn: Any) -> None:
        self._mark_channel = f"reid_mark_{conn.info.backend_pid}"
        conn.execute(f"LISTEN {self._mark_channel}")
        targets = conn.execute("SELECT id FROM identities WHERE is_target = 1").fetchall()
        self.apply(TargetsNow(frozenset(int(identity_id) for (identity_id,) in targets)))
        self._mark(conn)  # the clock first: caught-up rows are read on it
        if self.horizon is None:
            self.horizon = self.since()
        if self.horizon is not None:
            self._catch_up(conn, self.horizon)
        if self._purge_seq is None:  # the index was read from the database as it is now
            self._purge_seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM purges").fetchone()[0])
        else:
            self._take_purges(conn, "seq > %s", (self._purge_seq,))

    def _take_purges(self, conn: Any, condition: str, params: tuple[Any, ...]) -> None:
        """Retention's purges meeting ``condition`` (announced, or made while this listener was away): the
        embeddings they deleted leave this node's index."""
        for seq, embedding_ids in conn.execute(
                f"SELECT seq, embedding_ids FROM purges WHERE {condition} ORDER BY seq", params).fetchall():
            self._purge_seq = max(int(seq), self._purge_seq or 0)
            self.apply(EmbeddingsPurged(np.array(embedding_ids, np.int64)))

    def polled(self, conn: Any) -> None:
        if time.monotonic() - self._marked_at >= MARK_EVERY_S:
            self._mark(conn)

    def _mark(self, conn: Any) -> None:
        """Also measures this machine's clock against the server's (the middle of the round trip)."""
        sent = time.time()
        server = conn.execute(f"SELECT {SERVER_NOW}, pg_notify(%s, pg_snapshot_xmin(pg_current_snapshot())::text)",
                              (self._mark_channel,)).fetchone()[0]
        self.clock_offset = (sent + time.time()) / 2 - float(server)
        self._marked_at = time.monotonic()

    def _catch_up(self, conn: Any, horizon: int) -> None:
        """The embeddings other runs' transactions at or above ``horizon`` wrote that this listener has not heard of."""
        own, after, caught = list(self.own_runs()), 0, 0
        while True:
            rows = _embedding_rows(
                conn, "e.tx >= %s::text::xid8 AND t.run_id <> ALL(%s) AND e.id > %s ORDER BY e.id LIMIT %s",
                (str(horizon), own, after, CATCH_UP_BLOCK), self.model_key())
            if not rows:
                break
            after = int(rows[-1][0])
            missed = [row for row in rows if int(row[0]) not in self._heard]
            if missed:
                caught += len(missed)
                self._heard_rows(missed)
                self.apply(_shared(missed, self.model_key(), self.clock_offset, caught_up=True))
        if caught:
            log.info("caught up on %d embeddings written while this process was not listening", caught)

    def heard(self, conn: Any, note: Any) -> None:
        """A notification is a hint, never a fact: any role that can connect can NOTIFY anything. Marks count only
        from this connection itself; a change is applied as the database records it, or not at all."""
        if note.channel == self._mark_channel:
            if note.pid == self.backend_pid and note.payload.isdigit():
                self.horizon = max(int(note.payload), self.horizon or 0)
                self._heard = {row: tx for row, tx in self._heard.items() if tx >= self.horizon}
        elif note.pid != self.own_backend():
            self._hand_over(conn, note.payload)

    def _hand_over(self, conn: Any, payload: str) -> None:
        try:
            change = parse_change(payload)
        except ValueError as exc:  # another version's, or someone else's NOTIFY on our channel
            log.warning("%s", exc)
            return
        if isinstance(change, EmbeddingsAdded):
            # A writer's announcement is heard after every mark below its transaction: rows of transactions under
            # the horizon were heard (or caught up) already, and rows heard above it are not taken twice.
            # (this process's own runs are left out: its store commits them on a connection of their own)
            runs = sorted(set(change.run_ids) - set(self.own_runs()))
            rows = _embedding_rows(
                conn, "e.id BETWEEN %s AND %s AND t.run_id = ANY(%s) AND e.tx >= %s::text::xid8 ORDER BY e.id",
                (change.first_id, change.last_id, runs, str(self.horizon or 0)), self.model_key()) if runs else []
            rows = [row for row in rows if int(row[0]) not in self._heard]
            if rows:
                self._heard_rows(rows)
                self.apply(_shared(rows, self.model_key(), self.clock_offset))
            return
        if isinstance(change, Purged):
            self._take_purges(conn, "seq = %s", (change.seq,))
            return
        recorded = recorded_change(conn, change)
        if recorded is None:
            log.warning("ignored an announced change the database does not hold: %s", payload[:80])
            return
        self.apply(recorded)

    def _heard_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Remember what is heard above the horizon (bounded: a transaction left open on the server holds the
        horizon back; past :data:`HEARD_KEPT` the oldest are forgotten and may be read twice)."""
        self._heard.update((int(row[0]), int(row[-1])) for row in rows)
        if len(self._heard) > HEARD_KEPT:
            for row in list(itertools.islice(self._heard, len(self._heard) - HEARD_KEPT)):
                del self._heard[row]


def recorded_change(conn: Any, change: SharedChange) -> SharedChange | None:
    """``change`` as the database holds it now (the flag a target has, where a merged identity went), or None when
    it holds no such change: what a process does is read from the tables its transaction wrote."""
    match change:
        case TargetChanged(identity_id, _):
            row = conn.execute("SELECT is_target FROM identities WHERE id = %s", (identity_id,)).fetchone()
            return None if row is None else TargetChanged(identity_id, bool(row[0]))
        case Labelled(identity_id):
            row = conn.execute("SELECT label FROM identities WHERE id = %s", (identity_id,)).fetchone()
            return change if row is not None and row[0] else None
        case Merged(_, drop):
            row = conn.execute("SELECT kept FROM identity_merges WHERE dropped = %s", (drop,)).fetchone()
            return None if row is None else Merged(int(row[0]), drop)
        case Split(track_row, _, _):
            row = conn.execute("SELECT old, new FROM identity_splits WHERE track_row = %s", (track_row,)).fetchone()
            return None if row is None else Split(track_row, int(row[0]), int(row[1]))
        case Regrouped(old, new):
            found = conn.execute("SELECT count(*) FROM identities WHERE id = ANY(%s)", ([old, new],)).fetchone()[0]
            return change if found == len({old, new}) else None
    return None


def _embedding_rows(conn: Any, condition: str, params: tuple[Any, ...], model_key: str) -> list[tuple[Any, ...]]:
    """Stored embeddings of ``model_key`` with an identity, that meet ``condition`` (on ``e``, the embedding, and
    ``t``, its track): id, identity, quality, vector, camera, time by the server's clock (the writer's own less its
    offset, schema 7), the identity's creation, run, the camera's URI, and the transaction that wrote it."""
    return conn.execute(
        "SELECT e.id, e.identity_id, e.quality, e.vector, src.name, s.timestamp - r.clock_offset, i.created, t.run_id, "
        "src.uri, e.tx::text FROM embeddings e JOIN tracks t ON t.id = e.track_row "
        "JOIN sightings s ON s.id = e.sighting_id JOIN runs r ON r.id = t.run_id "
        "JOIN sources src ON src.id = s.source_id JOIN identities i ON i.id = e.identity_id "
        f"WHERE e.model_key = %s AND {condition}", (model_key, *params)).fetchall()


def _shared(rows: list[tuple[Any, ...]], model_key: str, clock_offset: float, caught_up: bool = False
            ) -> SharedEmbeddings:
    """``rows`` of :func:`_embedding_rows`, their times on this machine's clock (``clock_offset``: its own less
    the server's)."""
    return SharedEmbeddings(
        tuple(sorted({int(r[7]) for r in rows})), model_key, np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float32), np.stack([np.frombuffer(r[3], np.float32) for r in rows]),
        tuple(str(r[4]) for r in rows), np.array([r[5] for r in rows], np.float64) + clock_offset,
        {int(r[1]): float(r[6]) for r in rows}, caught_up, tuple(str(r[8]) for r in rows))

