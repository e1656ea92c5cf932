"""The SQLite file's schema versions: a new file is made from the tables' declaration (core/store/tables.py), and
an older file is brought up to it by forward migrations, each in one transaction with its schema version bump: it
happens completely or not at all. A test (tests/core/test_schema_parity.py) checks that every migration from an
empty file ends where the declaration starts.

Files that are not ours are refused before anything is written: a reid-desktop database has our
``application_id`` (schema 2 on) or, for schema 1 files, a ``meta`` table with a
``schema_version`` row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from reid_desktop.core.store.tables import create_statements

APPLICATION_ID = 0x52454944  # "REID" in the SQLite header, so `file` and other tools can tell what this is

_V1 = """
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
CREATE INDEX IF NOT EXISTS sightings_track ON sightings (track_row);
CREATE INDEX IF NOT EXISTS tracks_identity ON tracks (identity_id);
CREATE INDEX IF NOT EXISTS embeddings_track ON embeddings (track_row);
CREATE INDEX IF NOT EXISTS embeddings_sighting ON embeddings (sighting_id);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""

# Schema 2:
# - sources: one row per (name, uri): reusing a camera name for another video no longer re-points the old
#   sightings at the new file (a name may now have several rows; history stays as it was recorded).
# - tracks: ``segment`` counts tracker restarts (seek, camera removed and added) within a run, whose
#   track ids start again at 1: a stored track is unique per tracker lifetime.
# - sequences: identity ids come from the database (reserved in blocks), never from one process's counter.
_V2 = """
CREATE TABLE sources_v2 (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, uri TEXT NOT NULL, kind TEXT NOT NULL, UNIQUE (name, uri));
INSERT INTO sources_v2 (id, name, uri, kind) SELECT id, name, uri, kind FROM sources;
DROP TABLE sources;
ALTER TABLE sources_v2 RENAME TO sources;
CREATE TABLE tracks_v2 (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    source_id INTEGER NOT NULL REFERENCES sources(id), segment INTEGER NOT NULL DEFAULT 0,
    track_id INTEGER NOT NULL, identity_id INTEGER REFERENCES identities(id), first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, best_quality REAL NOT NULL DEFAULT 0, thumbnail BLOB,
    UNIQUE (run_id, source_id, segment, track_id));
INSERT INTO tracks_v2 (id, run_id, source_id, track_id, identity_id, first_seen, last_seen, best_quality, thumbnail)
    SELECT id, run_id, source_id, track_id, identity_id, first_seen, last_seen, best_quality, thumbnail FROM tracks;
DROP TABLE tracks;
ALTER TABLE tracks_v2 RENAME TO tracks;
CREATE INDEX tracks_identity ON tracks (identity_id);
CREATE TABLE sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
INSERT INTO sequences VALUES ('identity', (SELECT COALESCE(MAX(id), 0) + 1 FROM identities));
CREATE INDEX runs_status ON runs (status);
"""


# Schema 3: retention runs every few minutes while recording, so it finds old sightings by time.
_V3 = """
CREATE INDEX sightings_time ON sightings (timestamp);
"""


# Schema 4: identities are revised while tracks are young; every change of a track's identity, automatic or
# by the operator, leaves an audit row (bounded: sql_history.AUDIT_ROWS, and retention). ``track_row`` is
# no reference: the audit outlives the rows retention deletes.
_V4 = """
CREATE TABLE identity_corrections (
    id INTEGER PRIMARY KEY, timestamp REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    track_row INTEGER, from_identity INTEGER, to_identity INTEGER, score REAL);
CREATE INDEX identity_corrections_time ON identity_corrections (timestamp);
"""


# Schema 5: alerts. A followed person's first sighting on a track is an alert, with the picture of that
# moment; it goes with its sighting (retention, size limit), so it is bounded like the sightings.
_V5 = """
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, sighting_id INTEGER NOT NULL UNIQUE REFERENCES sightings(id) ON DELETE CASCADE,
    thumbnail BLOB);
"""


# Schema 6: each camera's mean embedding per re-id model (identity/camera_norm.py), kept with the camera so a restart
# goes on normalising where it stopped. One row per camera name and model: bounded by the cameras.
_V6 = """
CREATE TABLE camera_means (
    source TEXT NOT NULL, model_key TEXT NOT NULL, vector BLOB NOT NULL, count INTEGER NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (source, model_key));
"""


# Schema 7: embedding ids are never reused (AUTOINCREMENT). Without it a row deleted over a track's cap frees its
# id for the next row of the same commit, and the vector index, told "added 4, removed 4", drops the new row.
_V7 = """
CREATE TABLE embeddings_v7 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, track_row INTEGER NOT NULL REFERENCES tracks(id),
    identity_id INTEGER REFERENCES identities(id), sighting_id INTEGER REFERENCES sightings(id),
    model_key TEXT NOT NULL, quality REAL NOT NULL, vector BLOB NOT NULL);
INSERT INTO embeddings_v7 (id, track_row, identity_id, sighting_id, model_key, quality, vector)
    SELECT id, track_row, identity_id, sighting_id, model_key, quality, vector FROM embeddings;
DROP TABLE embeddings;
ALTER TABLE embeddings_v7 RENAME TO embeddings;
CREATE INDEX embeddings_model ON embeddings (model_key, identity_id);
CREATE INDEX embeddings_track ON embeddings (track_row);
CREATE INDEX embeddings_sighting ON embeddings (sighting_id);
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        for statement in sql.split(";\n"):
            if statement.strip():
                db.execute(statement)
    return apply


# MIGRATIONS[n] takes a database from schema n to schema n + 1 (schema 0: an empty file).
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_script(_V1), _script(_V2), _script(_V3), _script(_V4),
                                                                 _script(_V5), _script(_V6), _script(_V7))
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The file is not a reid-desktop database, or one from a newer version."""


def schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema (0: empty); raises :class:`SchemaError` for a file that is not ours."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return 0
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables else None
    if row is None or application_id not in (0, APPLICATION_ID):
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise SchemaError(f"{path} is not a reid-desktop database (it holds other tables: {shown}); "
                          "refusing to change it: choose another file")
    return int(row[0])


def migrate(db: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """Make a new file's tables, or bring an older file's up to :data:`SCHEMA_VERSION`; returns (version found,
    version now). ``db`` must be in autocommit mode (``isolation_level=None``)."""
    found = schema_version(db, path)
    if found > SCHEMA_VERSION:
        raise SchemaError(f"{path} has database schema {found}, newer than this version understands "
                          f"({SCHEMA_VERSION}): update reid-desktop")
    if not found:
        _create(db)
    elif found < SCHEMA_VERSION:
        _upgrade(db, path, found)
    return found, SCHEMA_VERSION


def _upgrade(db: sqlite3.Connection, path: Path, found: int) -> None:
    """Every migration from schema ``found``, each in its transaction. Foreign keys are off while tables are
    rebuilt (SQLite's documented procedure) and checked before each migration commits."""
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        for version in range(found, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version](db)
                broken = db.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise SchemaError(f"{path}: migration to schema {version + 1} would break references "
                                      f"({len(broken)} rows); the file was left as it was")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version + 1),))
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    finally:
        db.execute("PRAGMA foreign_keys = ON")


def _create(db: sqlite3.Connection) -> None:
    """A new file's tables, at :data:`SCHEMA_VERSION`, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in create_statements("sqlite"):
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.execute("INSERT INTO sequences VALUES ('identity', 1)")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
