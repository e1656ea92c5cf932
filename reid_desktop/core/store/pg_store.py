"""The history in a shared PostgreSQL database: the stores' shared logic and SQL (core/store/sql_history.py) over
psycopg.

Several processing nodes and operator stations use one database at once, so what SQLite does with its
one-writer file lock is PostgreSQL's here: transactions isolate the writers, identity ids come from the
database's sequence, and the schema is migrated once under an advisory lock (core/store/pg_schema.py).

The connection is re-opened when the server went away (restart, network): a write that fails keeps its
sightings waiting in the store's bounded buffer and is retried with back-off, exactly as a full disk is for
SQLite, so a server restart costs no committed or waiting sighting.

Every change the other processes must take on (a target, a name, a merge or split, new embeddings: see
core/store/shared_changes.py) is announced by NOTIFY on :data:`~reid_desktop.core.store.pg_schema.CHANGES_CHANNEL`
in the transaction that makes it, so it is heard exactly when it commits; nodes listen (core/store/change_feed.py). The
vector index is node-local: rebuilt or caught up from the database when attached, kept in step with this store's own
writes and with the embeddings other nodes announce.

An identity merged away is remembered (``identity_merges``) and a sighting that still names it is written to
the identity that holds it now: a node that has not yet heard of a merge cannot bring the merged identity
back; a track split off an identity is remembered likewise (``identity_splits``), so a node still writing it
under the old identity writes it under the new one. Identity edits take
:data:`~reid_desktop.core.store.pg_schema.EDIT_LOCK` alone and sighting writes take it shared, so a write either
commits before an edit starts or sees the merge or split it made.

Retention is one policy for the whole database (``retention_policy``, set by its owner), run by one process per
round by the server's clock, a block of sightings per transaction; a followed or named person keeps their newest
tracks. The embeddings it deletes are listed (``purges``) and announced, so every node drops them from its index.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reid_desktop.core.paths import data_dir
from reid_desktop.core.store.database_url import CONNECT_TIMEOUT_S, PostgresLocation
from reid_desktop.core.store.identity_edits import IdList
from reid_desktop.core.store.interface import (
    CameraHealth,
    SharedHistory,
    SightingRecord,
    StorageUnavailable,
    StoreError,
)
from reid_desktop.core.store.pg_batch_writes import PgBatchWrites, TrackRowKey
from reid_desktop.core.store.pg_schema import (
    CHANGES_CHANNEL,
    DOWN_AFTER_S,
    EDIT_LOCK,
    SCHEMA_VERSION,
    SERVER_NOW,
    PgSchemaError,
    connect,
    oldest_running,
    open_database,
    schema_version,
)
from reid_desktop.core.store.shared_changes import Merged, Purged, SharedChange, Split, format_change
from reid_desktop.core.store.sql_history import SqlHistory, describe_failure
from reid_desktop.core.store.vector_index import VectorIndex, manifest_path
from reid_desktop.core.store.write_buffer import ID_BLOCK, MAX_PENDING_BYTES, MAX_PENDING_RECORDS


def _driver_errors() -> tuple[tuple[type[BaseException], ...], ...]:
    """What psycopg raises: any error; data the database refuses; a privilege the role lacks."""
    import psycopg

    refused = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, ValueError, TypeError,
               OverflowError)
    return (psycopg.Error,), refused, (psycopg.errors.InsufficientPrivilege,)


log = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0  # the longest a write waits for a lock (the edit lock another process holds)
STATEMENT_LIMIT_S = 30.0  # the longest one statement of a write may run
INDEXES_KEPT = 8  # node-local vector indexes (databases x models) kept in the data folder
READER_POOL_SIZE = 4  # connections a station keeps per database for its reads (panels, search, exports)
READER_IDLE_S = 60.0  # an idle pooled connection is closed after this
RETENTION_ROUND_S = 300.0  # one process runs the retention policy at most this often (the server's clock)
CHANGES_KEPT_S = 7 * 86400.0  # merges, splits and purge lists are remembered this long
_reader_pools: dict[str, Any] = {}
_reader_pools_lock = threading.Lock()


def _reader_pool(location: PostgresLocation) -> Any:
    """The process's pool of read-only connections to ``location``: a station's many short reads (every panel
    refresh, every search) reuse a few connections instead of opening one each."""
    from psycopg_pool import ConnectionPool

    with _reader_pools_lock:
        pool = _reader_pools.get(location.url)
        if pool is None:
            if not _reader_pools:
                atexit.register(close_reader_pools)
            options = location.connect_options()
            pool = ConnectionPool(str(options.pop("conninfo")), kwargs={**options, "autocommit": True}, min_size=1,
                                  max_size=READER_POOL_SIZE, max_idle=READER_IDLE_S, open=True,
                                  configure=lambda conn: conn.execute("SET default_transaction_read_only = on"),
                                  check=ConnectionPool.check_connection, name=f"readers of {location}")
            _reader_pools[location.url] = pool
        return pool


def close_reader_pools() -> None:
    """Close every reader pool (at exit, or when a station changes database)."""
    with _reader_pools_lock:
        pools = list(_reader_pools.values())
        _reader_pools.clear()
    for pool in pools:
        pool.close()


class _Connection:
    """psycopg behind the calls the store makes of sqlite3: ``?`` placeholders, ``execute`` returning a cursor,
    explicit BEGIN/COMMIT. Re-opened on the next transaction after the server dropped it."""

    def __init__(self, location: PostgresLocation, readonly: bool) -> None:
        self.location, self.readonly = location, readonly
        self._conn: Any = None
        self._pool: Any = None
        self._in_transaction = False  # between our BEGIN and its COMMIT / ROLLBACK
        self.backend_pid = 0  # the server process serving this connection: its notifications carry it
        self.open()

    def open(self) -> None:
        if self.readonly:
            conn = self._borrow()
            found = schema_version(conn, str(self.location))
            if found != SCHEMA_VERSION:
                self.close()
                raise PgSchemaError(f"{self.location} has database schema {found}; this version reads "
                                    f"{SCHEMA_VERSION}")
        else:
            conn = open_database(self.location)
        self._conn = conn
        self.backend_pid = int(conn.info.backend_pid)

    def reopen_if_lost(self) -> None:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._in_transaction = False  # whatever was open went with the connection
            self.close()
            try:
                self.open()
            except PgSchemaError as exc:
                raise StorageUnavailable(str(exc)) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement. A read outside a transaction reconnects to a server that came back (once), so
        look-ups work again without waiting for a write to reopen the connection; one that cannot reach the
        server raises :class:`StorageUnavailable`. Inside a transaction, errors are the transaction's to handle."""
        import psycopg

        words = sql.lstrip()[:8].upper()
        statement, values = sql.replace("?", "%s"), list(params)
        if self._in_transaction or words.startswith("BEGIN"):
            self._in_transaction = not words.startswith(("COMMIT", "ROLLBACK"))  # ended even if this fails
            return self._conn.execute(statement, values)
        self.reopen_if_lost()
        try:
            return self._conn.execute(statement, values)
        except psycopg.OperationalError as exc:
            if not self._conn.broken:
                raise StorageUnavailable(describe_failure(exc)) from exc
        self.reopen_if_lost()  # the server went away since the connection was made: once more, on a new one
        try:
            return self._conn.execute(statement, values)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(describe_failure(exc)) from exc

    def _borrow(self) -> Any:
        """A pooled read-only connection; when none can be had, the server's own reason, in one line."""
        from psycopg_pool import PoolTimeout

        self._pool = _reader_pool(self.location)
        try:
            self._conn = self._pool.getconn(timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            connect(self.location).close()  # raises PgSchemaError saying why (refused, unknown host, password)
            raise PgSchemaError(f"cannot connect to the database {self.location}: no connection free in "
                                f"{CONNECT_TIMEOUT_S} s") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            if self.readonly:
                self._pool.putconn(self._conn)  # a broken one is discarded by the pool
            else:
                self._conn.close()
            self._conn = None


class PgSightingStore(SqlHistory):
    """The history on a PostgreSQL database shared by several processes (see the module's docstring)."""

    _ALL_ROWS = "LIMIT ALL"
    _CAMERA_NAMES = "json_agg(DISTINCT src.name)"
    _BEGIN = "BEGIN"
    _IDS = IdList("= ANY(?::bigint[])", lambda ids: [int(i) for i in ids])

    def __init__(self, location: PostgresLocation, commit_interval_s: float = 1.0, readonly: bool = False,
                 max_pending_records: int = MAX_PENDING_RECORDS, max_pending_bytes: int = MAX_PENDING_BYTES,
                 embeddings_per_track: int = 0, node: str = "") -> None:
        """``node``: the processing node whose runs these are (a station's own runs have none)."""
        self.postgres = location
        self.node = node
        self._redirects: dict[int, tuple[int, float]] = {}  # identity merged away -> (the one holding it now, when)
        # track key -> (old, new) identity, when
        self._splits: dict[tuple[int, int, int, int], tuple[int, int, float]] = {}
        self._told_policy = False  # the local retention setting's warning is given once
        self._open_runs: set[int] = set()  # this store's runs still going (their clock offsets are kept current)
        self._changes_seq = 0  # the newest merge or split read
        self.index_horizon: int | None = None  # see attach_index
        self._ERRORS, self._REFUSED_DATA, self._DENIED = _driver_errors()
        super().__init__(commit_interval_s, readonly, max_pending_records, max_pending_bytes, embeddings_per_track)

    def attach_index(self, model_key: str, dim: int) -> VectorIndex:
        """Also notes :attr:`index_horizon`, the oldest transaction running before the index reads the database:
        a change listener started later catches up on what that one and newer ones wrote (core/store/change_feed.py)."""
        if not self.indexed.holds(model_key):
            self.index_horizon = oldest_running(self._db)
        return super().attach_index(model_key, dim)

    def _open_readonly(self) -> Any:
        return self._connect(readonly=True)

    def _open_writer(self) -> Any:
        return self._connect(readonly=False)

    def _connect(self, readonly: bool) -> _Connection:
        try:
            return _Connection(self.postgres, readonly)
        except PgSchemaError as exc:
            raise StoreError(str(exc)) from None

    def _open_committer(self) -> _Connection:
        return self._connect(readonly=False)

    def begin_run(self, *, detector: str, embedder: str, embedder_is_fallback: bool, provider: str,
                  model_key: str, warnings: Sequence[str], config: dict[str, Any]) -> int:
        run_id = super().begin_run(detector=detector, embedder=embedder, embedder_is_fallback=embedder_is_fallback,
                                   provider=provider, model_key=model_key, warnings=warnings, config=config)
        with self._transaction():
            self._db.execute("UPDATE runs SET node = ?, clock_offset = ? WHERE id = ?",
                             (self.node, self._clock_offset(), run_id))
        self._open_runs.add(run_id)
        return run_id

    def end_run(self, run_id: int, status: str) -> bool:
        self._open_runs.discard(run_id)
        return super().end_run(run_id, status)

    def _clock_offset(self) -> float:
        """This machine's clock less the server's (at the middle of one round trip): written with each open run and
        kept current, so other machines read this one's sighting times on the server's clock (store/change_feed.py)."""
        sent = time.time()
        server = float(self._db.execute(f"SELECT {SERVER_NOW}").fetchone()[0])
        return (sent + time.time()) / 2 - server

    def _announce(self, change: SharedChange) -> None:
        """Every process listening on :data:`CHANGES_CHANNEL` hears it when this transaction commits; a merge is
        also remembered, with the merges into the dropped identity passed on to the kept one, and so is a split."""
        if isinstance(change, Split):
            self._db.execute("INSERT INTO identity_splits (track_row, run_id, source_id, segment, track_id, old, new, "
                             "at) SELECT id, run_id, source_id, segment, track_id, ?, ?, ? FROM tracks WHERE id = ? "
                             "ON CONFLICT (track_row) DO UPDATE SET old = excluded.old, new = excluded.new, "
                             "at = excluded.at, seq = nextval('identity_merge_seq')",
                             (change.old, change.new, time.time(), change.track_row))
        if isinstance(change, Merged):
            self._db.execute("UPDATE identity_merges SET kept = ?, seq = nextval('identity_merge_seq') "
                             "WHERE kept = ?", (change.keep, change.drop))
            self._db.execute("INSERT INTO identity_merges (dropped, kept, at) VALUES (?, ?, ?) ON CONFLICT (dropped) "
                             "DO UPDATE SET kept = excluded.kept, at = excluded.at, "
                             "seq = nextval('identity_merge_seq')", (change.drop, change.keep, time.time()))
        self._db.execute("SELECT pg_notify(?, ?)", (CHANGES_CHANNEL, format_change(change)))

    def _begin(self) -> None:
        """Also takes the edit lock (alone for an edit, shared for writes) and reads the merges and splits made
        since the last transaction: under the lock, none can be made until this one commits."""
        self._db.reopen_if_lost()
        super()._begin()
        # bounded waits: a station's long edit or a stuck server fails this transaction (its records wait in
        # memory, the cameras go on) instead of holding the engine
        self._db.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT_S * 1000:.0f}ms'")
        self._db.execute(f"SET LOCAL statement_timeout = '{STATEMENT_LIMIT_S * 1000:.0f}ms'")
        exclusive = getattr(self._commits.here, "exclusive", False)  # this thread is inside an identity edit
        self._db.execute(f"SELECT pg_advisory_xact_lock{'' if exclusive else '_shared'}(?)", (EDIT_LOCK,))
        for old, new, run, source, segment, track, at, seq in self._db.execute(
                "SELECT dropped, kept, NULL, NULL, NULL, NULL, at, seq FROM identity_merges WHERE seq > ? UNION ALL "
                "SELECT old, new, run_id, source_id, segment, track_id, at, seq FROM identity_splits WHERE seq > ? "
                "ORDER BY 8", (self._changes_seq, self._changes_seq)).fetchall():
            if run is None:
                self._redirects[int(old)] = (int(new), float(at))
            else:
                self._splits[(int(run), int(source), int(segment), int(track))] = (int(old), int(new), float(at))
            self._changes_seq = int(seq)

    @contextlib.contextmanager
    def _edit(self) -> Iterator[None]:
        """An edit's transactions hold EDIT_LOCK alone; the flag is the editing thread's (a retention round in the
        commit thread and an operator's edit on the engine's do not change each other's lock)."""
        self._commits.here.exclusive = True
        try:
            with super()._edit():
                yield
        finally:
            self._commits.here.exclusive = False

    def _redirected(self, r: SightingRecord, key: TrackRowKey) -> SightingRecord:
        """``r`` (of track ``key``) under the identity that holds its person now: its track split off, its identity
        merged away."""
        if r.identity_id is None:
            return r
        identity = r.identity_id
        split = self._splits.get(key)
        if split is not None and split[0] == identity:
            identity = split[1]
        if identity in self._redirects:
            identity = self._redirects[identity][0]
        return r if identity == r.identity_id else replace(r, identity_id=identity)

    def _sighting_writes(self) -> PgBatchWrites:
        return PgBatchWrites(lambda: self._db, self.indexed, self.embeddings_per_track, self._redirected)

    def _purged(self, embedding_ids: list[int]) -> None:
        """Listed and announced in the purge's transaction: every other process drops them from its vector index."""
        if embedding_ids:
            seq = self._db.execute(f"INSERT INTO purges (at, embedding_ids) VALUES ({SERVER_NOW}, ?) RETURNING seq",
                                   (embedding_ids,)).fetchone()[0]
            self._announce(Purged(int(seq)))

    def purge_expired(self, days: int) -> int:
        """Retention on a shared database is the database's policy (``reid-desktop db retention``), never one
        machine's ``days``: one process per round (:data:`RETENTION_ROUND_S`, the server's clock) runs it. The same
        round forgets merges, splits and purge lists older than :data:`CHANGES_KEPT_S`; every process forgets
        those it holds in memory, and notes its clock's offset on its open runs."""
        with self._transaction():
            if self._open_runs:  # clocks drift: the round keeps this machine's offset current
                self._db.execute("UPDATE runs SET clock_offset = ? WHERE id = ANY(?)",
                                 (self._clock_offset(), sorted(self._open_runs)))
            policy = int(self._db.execute("SELECT days FROM retention_policy").fetchone()[0])
            now, claimed = self._db.execute(
                f"UPDATE retention_policy SET last_run = {SERVER_NOW} WHERE last_run <= {SERVER_NOW} - ? "
                f"RETURNING {SERVER_NOW}, TRUE", (RETENTION_ROUND_S,)).fetchone() or (
                self._db.execute(f"SELECT {SERVER_NOW}").fetchone()[0], False)
            if claimed:
                for table in ("identity_merges", "identity_splits", "purges"):
                    self._db.execute(f"DELETE FROM {table} WHERE at < ?", (now - CHANGES_KEPT_S,))
        if days and days != policy and not self._told_policy:
            self._told_policy = True
            log.warning("storage.retention_days (%d) is this machine's setting and is not used on a shared database; "
                        "its retention policy is %s (reid-desktop db retention %s --days N)", days,
                        f"{policy} days" if policy else "to keep everything", self.postgres.url)
        forget = now - CHANGES_KEPT_S
        self._redirects = {d: (k, at) for d, (k, at) in self._redirects.items() if at >= forget}
        self._splits = {key: split for key, split in self._splits.items() if split[2] >= forget}
        return self.purge_older_than(now - policy * 86400.0) if claimed and policy else 0

    @property
    def location(self) -> str:
        return str(self.postgres)

    @property
    def address(self) -> str:
        return str(self.postgres)

    @property
    def backend(self) -> str:
        return "PostgreSQL"

    @property
    def shared(self) -> SharedHistory | None:
        return self

    @property
    def backend_pid(self) -> int:
        """The server process this store writes through (a listener leaves out the changes it announced)."""
        return self._commits.main_db.backend_pid

    def _reserve_ids(self) -> None:
        """A block of ids from the database's sequence: every node draws from the same numbering. Ids that rows
        already have (written by other means: a history brought over, a test) are skipped, never reused."""
        with self._transaction():
            fetched = [int(r[0]) for r in self._db.execute(
                "SELECT drawn.id FROM (SELECT nextval('identity_ids') AS id FROM generate_series(1, ?)) AS drawn "
                "WHERE NOT EXISTS (SELECT 1 FROM identities WHERE identities.id = drawn.id) ORDER BY drawn.id",
                (ID_BLOCK,))]
        self._buffer.ids = [*self._buffer.ids, *fetched]

    def _give_back_ids(self) -> None:
        self._buffer.ids = []  # a sequence does not take values back: a gap in the numbering, nothing more

    @property
    def live_bytes(self) -> int:
        """Bytes the history's tables and indexes take on the server."""
        row = self._db.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return int(row[0])

    def node_cameras(self) -> list[CameraHealth]:
        return camera_health(self._db)

    def vector_search(self) -> str:
        has_pgvector = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')").fetchone()[0]
        where = "the server offers pgvector, not used yet" if has_pgvector else "the server has no pgvector"
        return f"each process's own FAISS index of the database's embeddings ({where})"

    def enforce_size(self, max_bytes: int) -> int:
        """A size limit guards one machine's disk, the SQLite file's. A shared server's disk is its administrator's,
        and deleted rows do not shrink PostgreSQL's files (their space is reused), so a limit on table sizes
        would delete the whole history: here the history is bounded by ``storage.retention_days`` alone."""
        return 0

    def reclaim(self) -> None:
        """PostgreSQL's autovacuum gives deleted rows' space to new ones; nothing to do here."""
        self._writable()

    def index_path(self, model_key: str) -> Path:
        """The node-local vector index of this database and model, in the user's data folder, where only the
        :data:`INDEXES_KEPT` most recently used ones stay (an index is rebuilt from the database if needed)."""
        digest = hashlib.sha256(f"{self.postgres.url}\n{model_key}".encode()).hexdigest()[:16]
        folder = data_dir() / "indexes"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.postgres.database}.{digest}.faiss"
        if path.exists():
            path.touch()  # used now: kept
        others = sorted((p for p in folder.glob("*.faiss") if p != path), key=lambda p: p.stat().st_mtime)
        for old in others[: max(0, len(others) - (INDEXES_KEPT - 1))]:
            for gone in (old, manifest_path(old)):
                gone.unlink(missing_ok=True)
        return path


def camera_health(conn: Any) -> list[CameraHealth]:
    """Every node's cameras as a station shows them: a camera of a node that stopped or went silent is down.
    Heartbeats are aged by the server's clock, which wrote them: a station's own clock may be off."""
    out = []
    for node, name, uri, state, rate, node_state, age in conn.execute(
            f"SELECT c.node, c.name, c.uri, c.state, c.frames_per_s, n.state, {SERVER_NOW} - n.heartbeat "
            "FROM cameras c JOIN nodes n ON n.name = c.node ORDER BY c.node, c.name"):
        up = node_state == "running" and age <= DOWN_AFTER_S
        out.append(CameraHealth(node, name, uri, state if up else "down", float(rate) if up else 0.0, up))
    return out
