"""The history in a shared PostgreSQL database: the SQLite store's logic and SQL (core/storage.py) over psycopg.

Several processing nodes and operator stations use one database at once, so what SQLite does with its
one-writer file lock is PostgreSQL's here: transactions isolate the writers, identity ids come from the
database's sequence, and the schema is migrated once under an advisory lock (core/pg_schema.py).

The connection is re-opened when the server went away (restart, network): a write that fails keeps its
sightings waiting in the store's bounded buffer and is retried with back-off, exactly as a full disk is for
SQLite, so a server restart costs no committed or waiting sighting.

A target set anywhere is announced (NOTIFY on :data:`~reid_desktop.core.pg_schema.TARGETS_CHANNEL`) when its
transaction commits; nodes listen (core/node.py) and follow it at once.

Not yet: the vector index is node-local (rebuilt or caught up from the database when attached, kept in step
with this store's own writes); other nodes' embeddings reach it at the next attach.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid_desktop.core.database_url import PostgresLocation
from reid_desktop.core.paths import data_dir
from reid_desktop.core.pg_schema import (
    SCHEMA_VERSION,
    TARGETS_CHANNEL,
    PgSchemaError,
    connect,
    open_database,
    schema_version,
)
from reid_desktop.core.storage import ID_BLOCK, MAX_PENDING_BYTES, MAX_PENDING_RECORDS, SightingStore
from reid_desktop.core.store import StorageUnavailable, StoreError


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    import psycopg

    refused = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, ValueError, TypeError,
               OverflowError)
    return (psycopg.Error,), refused


class _Connection:
    """psycopg behind the calls the store makes of sqlite3: ``?`` placeholders, ``execute`` returning a cursor,
    explicit BEGIN/COMMIT. Re-opened on the next transaction after the server dropped it."""

    def __init__(self, location: PostgresLocation, readonly: bool) -> None:
        self.location, self.readonly = location, readonly
        self._conn: Any = None
        self.open()

    def open(self) -> None:
        if self.readonly:
            conn = connect(self.location)
            found = schema_version(conn, str(self.location))
            if found != SCHEMA_VERSION:
                conn.close()
                raise PgSchemaError(f"{self.location} has database schema {found}; this version reads "
                                    f"{SCHEMA_VERSION}")
            conn.execute("SET default_transaction_read_only = on")
        else:
            conn = open_database(self.location)
        self._conn = conn

    def reopen_if_lost(self) -> None:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            try:
                self.open()
            except PgSchemaError as exc:
                raise StorageUnavailable(str(exc)) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), list(params))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PgSightingStore(SightingStore):
    """:class:`~reid_desktop.core.storage.SightingStore` on a PostgreSQL database (see the module's docstring)."""

    _LEAST, _GREATEST = "LEAST", "GREATEST"
    _ALL_ROWS = "LIMIT ALL"
    _CAMERA_NAMES = "STRING_AGG(DISTINCT src.name, ',')"
    _BEGIN = "BEGIN"

    def __init__(self, location: PostgresLocation, commit_interval_s: float = 1.0, readonly: bool = False,
                 max_pending_records: int = MAX_PENDING_RECORDS, max_pending_bytes: int = MAX_PENDING_BYTES,
                 embeddings_per_track: int = 0, node: str = "") -> None:
        """``node``: the processing node whose runs these are (a station's own runs have none)."""
        self.postgres = location
        self.node = node
        self._ERRORS, self._REFUSED_DATA = _driver_errors()
        super().__init__(Path(location.database), commit_interval_s, readonly, max_pending_records,
                         max_pending_bytes, embeddings_per_track)

    def _open_readonly(self) -> Any:
        return self._connect(readonly=True)

    def _open_writer(self) -> Any:
        return self._connect(readonly=False)

    def _connect(self, readonly: bool) -> _Connection:
        try:
            self._link = _Connection(self.postgres, readonly)
        except PgSchemaError as exc:
            raise StoreError(str(exc)) from None
        return self._link

    def begin_run(self, *, detector: str, embedder: str, embedder_is_fallback: bool, provider: str,
                  model_key: str, warnings: Sequence[str], config: dict[str, Any]) -> int:
        run_id = super().begin_run(detector=detector, embedder=embedder, embedder_is_fallback=embedder_is_fallback,
                                   provider=provider, model_key=model_key, warnings=warnings, config=config)
        with self._transaction():
            self._db.execute("UPDATE runs SET node = ? WHERE id = ?", (self.node, run_id))
        return run_id

    def _announce_target(self, identity_id: int, is_target: bool) -> None:
        """Every node listening on :data:`TARGETS_CHANNEL` hears it when this transaction commits."""
        self._db.execute("SELECT pg_notify(?, ?)", (TARGETS_CHANNEL, f"{identity_id}:{int(is_target)}"))

    def _begin(self) -> None:
        self._link.reopen_if_lost()
        super()._begin()

    @property
    def location(self) -> str:
        return str(self.postgres)

    def _reserve_ids(self) -> None:
        """A block of ids from the database's sequence: every node draws from the same numbering. Ids that rows
        already have (written by other means: a history brought over, a test) are skipped, never reused."""
        with self._transaction():
            fetched = [int(r[0]) for r in self._db.execute(
                "SELECT drawn.id FROM (SELECT nextval('identity_ids') AS id FROM generate_series(1, ?)) AS drawn "
                "WHERE NOT EXISTS (SELECT 1 FROM identities WHERE identities.id = drawn.id) ORDER BY drawn.id",
                (ID_BLOCK,))]
        self._ids = [*self._ids, *fetched]

    def _give_back_ids(self) -> None:
        self._ids = []  # a sequence does not take values back: a gap in the numbering, nothing more

    @property
    def live_bytes(self) -> int:
        """Bytes the history's tables and indexes take on the server."""
        row = self._db.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return int(row[0])

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
        """The node-local vector index of this database and model, in the user's data folder."""
        digest = hashlib.sha256(f"{self.postgres.url}\n{model_key}".encode()).hexdigest()[:16]
        folder = data_dir() / "indexes"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{self.postgres.database}.{digest}.faiss"

