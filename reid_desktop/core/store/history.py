"""Opening the history an operator names: a SQLite file (the default) or a shared PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

from reid_desktop.core.paths import default_database
from reid_desktop.core.store.database_url import DatabaseUrlError, PostgresLocation, parse_database
from reid_desktop.core.store.interface import HistoryStore, StoreError
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.storage import SightingStore

History = Path | PostgresLocation  # a SQLite file, or a shared PostgreSQL database


def history_of(value: str | Path | None) -> History:
    """What a ``--db`` value or the Settings' database field names (empty: the per-user SQLite file);
    :class:`~reid_desktop.core.store.database_url.DatabaseUrlError` with one line for a value that names nothing
    usable."""
    return parse_database(value) if value else default_database()


def open_store(database: str | History | None, commit_interval_s: float = 1.0, readonly: bool = False,
               embeddings_per_track: int = 0, node: str = "") -> HistoryStore:
    """The store behind ``--db`` (None: the per-user SQLite file); :class:`StoreError` with one line when it
    cannot be opened or the value names nothing usable. ``node``: the processing node whose runs these are, on a
    shared database (where else would a node's history go?)."""
    try:
        where = database if isinstance(database, PostgresLocation) else history_of(database)
    except DatabaseUrlError as exc:
        raise StoreError(str(exc)) from None
    if isinstance(where, PostgresLocation):
        return PgSightingStore(where, commit_interval_s, readonly, embeddings_per_track=embeddings_per_track,
                               node=node)
    if node:
        raise StoreError(f"node {node} writes to a shared PostgreSQL database, not to the file {where}")
    return SightingStore(where, commit_interval_s, readonly, embeddings_per_track=embeddings_per_track)
