"""The history's tables are declared once (store/tables.py) and made in two databases, each in its own types; older
databases reach them by each dialect's migrations (store/migrations.py, store/pg_schema.py).

- Both databases hold the same history: read back from two fresh databases, every shared table has the same columns
  (name, kind of value, whether it may be empty, default), primary key, unique constraints, references and indexes.
  What only a shared database has is listed here by name, with the reason.
- A database made by every migration from empty is the one the declaration makes, in each dialect: an old database
  and a new one are the same database."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from reid_desktop.core.store import migrations, pg_schema
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.storage import SightingStore
from tests.pg_server import PASSWORD

# the processes of a shared database and what they tell each other: nodes and their cameras, the logs of merges,
# splits and purges other processes follow, the one retention policy of the site
SHARED_ONLY_TABLES = {"nodes", "cameras", "identity_merges", "identity_splits", "purges", "retention_policy"}
SHARED_ONLY_COLUMNS = {
    ("embeddings", "tx"),  # the writing transaction: how another process catches up with its vector index
    ("runs", "node"), ("runs", "clock_offset"),  # which machine ran it, and how far its clock is from the server's
}
# a shared database may hold other applications' tables, so the key-value table carries the application's name
SAME_TABLE = {"meta": "reid_meta"}
# SQLite has no sequences: identity id blocks come from this table (PostgreSQL: the ``identity_ids`` sequence)
ONE_MACHINE_ONLY_TABLES = {"sequences"}

KIND = {"integer": "integer", "bigint": "integer", "real": "real", "double precision": "real", "text": "text",
        "blob": "bytes", "bytea": "bytes"}
ON_DELETE = {"a": "NO ACTION", "c": "CASCADE", "n": "SET NULL", "r": "RESTRICT", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class Column:
    kind: str
    not_null: bool
    default: str | None


@dataclass(frozen=True)
class Table:
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    unique: frozenset[tuple[str, ...]]
    references: frozenset[tuple[tuple[str, ...], str, tuple[str, ...], str]]  # columns, table, its columns, on delete
    indexes: frozenset[tuple[str, tuple[str, ...], bool]]  # name, columns, unique (besides keys and constraints)


def _default(text: str | None) -> str | None:
    """A column default as both databases would agree on it: no casts, no quotes (``'[]'::text`` -> ``[]``)."""
    if text is None or text.startswith(("nextval(", "pg_current_xact_id(")):
        return None  # drawn from a sequence or the transaction: the ids' and the writers' business, not a value
    return re.sub(r"::[a-z ]+$", "", text).strip("'")


def sqlite_tables(path: Path) -> dict[str, Table]:
    con = sqlite3.connect(path)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%'")]
        return {name: _sqlite_table(con, name) for name in names}
    finally:
        con.close()


def _sqlite_table(con: sqlite3.Connection, name: str) -> Table:
    info = con.execute(f"PRAGMA table_info({name})").fetchall()  # cid, name, type, notnull, default, pk
    columns = {c[1]: Column(KIND[c[2].lower()], bool(c[3] or c[5]), _default(c[4])) for c in info}
    primary_key = tuple(c[1] for c in sorted((c for c in info if c[5]), key=lambda c: c[5]))
    unique, indexes = set(), set()
    for _, index, is_unique, origin, _ in con.execute(f"PRAGMA index_list({name})").fetchall():
        indexed = tuple(row[2] for row in con.execute(f"PRAGMA index_info({index})"))
        if origin == "u":
            unique.add(indexed)
        elif origin == "c":
            indexes.add((index, indexed, bool(is_unique)))
    groups: dict[int, list[tuple]] = {}
    for row in con.execute(f"PRAGMA foreign_key_list({name})"):  # id, seq, table, from, to, on update, on delete
        groups.setdefault(row[0], []).append(row)
    references = {(tuple(r[3] for r in rows), rows[0][2], tuple(r[4] for r in rows), rows[0][6])
                  for rows in groups.values()}
    return Table(columns, primary_key, frozenset(unique), frozenset(references), frozenset(indexes))


def postgres_tables(url: str) -> dict[str, Table]:
    with psycopg.connect(url) as con:
        names = [n for (n,) in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        return {name: _postgres_table(con, name) for name in names}


def _postgres_table(con: psycopg.Connection, name: str) -> Table:
    described = con.execute("SELECT column_name, data_type, is_nullable, column_default FROM "
                            "information_schema.columns WHERE table_schema = 'public' AND table_name = %s", (name,))
    columns = {column: Column(str(KIND.get(kind, kind)), nullable == "NO", _default(default))
               for column, kind, nullable, default in described}
    keys = con.execute(
        "SELECT c.contype, ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a "
        "ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), f.relname, ARRAY(SELECT a.attname FROM "
        "unnest(c.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = c.confrelid AND "
        "a.attnum = k.n ORDER BY k.i), c.confdeltype FROM pg_constraint c LEFT JOIN pg_class f ON f.oid = c.confrelid "
        "WHERE c.conrelid = %s::regclass", (name,)).fetchall()
    primary_key = next((tuple(cols) for kind, cols, *_ in keys if kind == "p"), ())
    unique = frozenset(tuple(cols) for kind, cols, *_ in keys if kind == "u")
    references = frozenset((tuple(cols), table, tuple(theirs), ON_DELETE[deletes])
                           for kind, cols, table, theirs, deletes in keys if kind == "f")
    indexes = frozenset((index, tuple(cols), is_unique) for index, cols, is_unique in con.execute(
        "SELECT i.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a "
        "ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), x.indisunique FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)", (name,)))
    return Table(columns, primary_key, unique, references, indexes)


@pytest.fixture
def both(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, dict]]:
    """The tables of a fresh SQLite history and a fresh PostgreSQL one, as each database describes them."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with SightingStore(tmp_path / "s.sqlite"):
        pass
    with PgSightingStore(parse_postgres_url(pg_url)):
        pass
    yield sqlite_tables(tmp_path / "s.sqlite"), postgres_tables(pg_url)


def test_both_databases_declare_the_same_history(both: tuple[dict[str, Table], dict[str, Table]]) -> None:
    one_machine, shared = both
    renamed = {SAME_TABLE.get(name, name): table for name, table in one_machine.items()
               if name not in ONE_MACHINE_ONLY_TABLES}
    assert set(shared) - set(renamed) == SHARED_ONLY_TABLES
    assert set(renamed) <= set(shared), f"only in SQLite: {set(renamed) - set(shared)}"
    for name, table in renamed.items():
        other = shared[name]
        shared_only = {column for table_name, column in SHARED_ONLY_COLUMNS if table_name == name}
        assert set(table.columns) == set(other.columns) - shared_only, f"{name}: columns differ"
        for column, declared in table.columns.items():
            assert declared == other.columns[column], f"{name}.{column}: {declared} in SQLite, " \
                                                      f"{other.columns[column]} in PostgreSQL"
        assert table.primary_key == other.primary_key, f"{name}: primary keys differ"
        assert table.unique == other.unique, f"{name}: unique constraints differ"
        assert table.references == other.references, f"{name}: references differ"
        indexes = {index for index in other.indexes if not shared_only & set(index[1])}
        assert table.indexes == indexes, f"{name}: indexes differ"


def test_the_inspection_sees_a_difference(tmp_path: Path) -> None:
    """The comparison is only worth something if it notices: an index, a NOT NULL or a reference dropped."""
    path = tmp_path / "s.sqlite"
    with SightingStore(path):
        pass
    before = sqlite_tables(path)
    con = sqlite3.connect(path)
    con.execute("DROP INDEX sightings_time")
    con.execute("CREATE TABLE alerts_new (id INTEGER PRIMARY KEY, sighting_id INTEGER, thumbnail BLOB)")
    con.execute("DROP TABLE alerts")
    con.execute("ALTER TABLE alerts_new RENAME TO alerts")
    con.commit()
    con.close()
    after = sqlite_tables(path)
    assert before["sightings"].indexes - after["sightings"].indexes == {("sightings_time", ("timestamp",), False)}
    assert before["alerts"].columns["sighting_id"].not_null and not after["alerts"].columns["sighting_id"].not_null
    assert before["alerts"].references and not after["alerts"].references
    assert before["alerts"].unique == {("sighting_id",)} and not after["alerts"].unique


def _sqlite_autoincrement(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {name for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                if "AUTOINCREMENT" in sql.upper()}
    finally:
        con.close()


def test_every_sqlite_migration_ends_where_a_new_file_starts(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "new.sqlite"):
        pass
    con = sqlite3.connect(tmp_path / "migrated.sqlite", isolation_level=None)
    for migration in migrations.MIGRATIONS:
        migration(con)
    con.close()
    new, migrated = sqlite_tables(tmp_path / "new.sqlite"), sqlite_tables(tmp_path / "migrated.sqlite")
    assert set(new) == set(migrated)
    for name, table in new.items():
        assert table == migrated[name], f"{name}: made {table}, migrated {migrated[name]}"
    assert _sqlite_autoincrement(tmp_path / "new.sqlite") == _sqlite_autoincrement(tmp_path / "migrated.sqlite") \
        == {"embeddings"}  # embedding ids are never reused: the vector index keeps them


def _postgres_extras(url: str) -> tuple[set[str], set[tuple[str, str]], list[tuple[str, str]]]:
    """What the table reader leaves out: sequences of our own, check constraints, and the rows a new database has."""
    with psycopg.connect(url) as con:
        sequences = {name for (name,) in con.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' AND NOT EXISTS "
            "(SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))")}  # not a column's own
        checks = {(table, definition) for table, definition in con.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid <> 0")}
        rows = [(str(days), str(last_run)) for days, last_run in con.execute(
            "SELECT days, last_run FROM retention_policy")]
    return sequences, checks, rows


def test_every_postgres_migration_ends_where_a_new_database_starts(pg_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    new_url, migrated_url = (pg_server.create_database(name) for name in ("parity_new", "parity_migrated"))
    with PgSightingStore(parse_postgres_url(new_url)):
        pass
    with psycopg.connect(migrated_url, autocommit=True) as con:
        for migration in pg_schema.MIGRATIONS:
            con.execute(migration)
    new, migrated = postgres_tables(new_url), postgres_tables(migrated_url)
    assert set(new) == set(migrated)
    for name, table in new.items():
        assert table == migrated[name], f"{name}: made {table}, migrated {migrated[name]}"
    assert _postgres_extras(new_url) == _postgres_extras(migrated_url)
    sequences, checks, rows = _postgres_extras(new_url)
    assert sequences == {"identity_ids", "identity_merge_seq"} and len(checks) == 2 and rows == [("0", "0.0")]
