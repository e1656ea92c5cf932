"""The sightings store on one SQLite file (WAL) per machine: sources, identities, tracks, sightings, best-crop
thumbnails and embeddings. What it shares with the PostgreSQL store is :class:`~reid_desktop.core.store.sql_history.
SqlHistory`; what is the file's is here.

One writer per database: a writing store holds the database's :class:`WriterLock` (a second program gets a clear
refusal naming the first) and hands out identity ids reserved in the database. A write the file refuses (disk full,
locked by another program, damaged) keeps its records waiting and is retried.

Durability: ``synchronous=FULL`` in WAL mode, so every commit is on disk when it returns; a crash, ``kill -9`` or
power loss loses at most the records of the last ``commit_interval_s`` (and, while a fault lasts, the records still
waiting), never the database.

Readers (the GUI's thread pool, the CLI summary) open their own read-only connections. The vector index is saved
beside the database (``<db>.<model>.faiss``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
from pathlib import Path
from typing import Any

from reid_desktop.core.paths import make_private
from reid_desktop.core.store.identity_edits import IdList
from reid_desktop.core.store.interface import CameraHealth, SharedHistory, StorageUnavailable, StoreError
from reid_desktop.core.store.locking import DatabaseInUse, WriterLock
from reid_desktop.core.store.migrations import SCHEMA_VERSION, SchemaError, migrate, schema_version
from reid_desktop.core.store.shared_changes import SharedChange
from reid_desktop.core.store.sighting_writes import SightingWrites
from reid_desktop.core.store.sql_history import SqlHistory, describe_failure
from reid_desktop.core.store.write_buffer import MAX_PENDING_BYTES, MAX_PENDING_RECORDS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 0.25  # the writer never waits long for another program's lock: it buffers and retries

# Errors that come from one record's data, not from the database: retrying the same batch cannot help.
_BAD_DATA = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, ValueError, TypeError,
             OverflowError)

_INCREMENTAL = 2  # PRAGMA auto_vacuum = INCREMENTAL


def _readonly_uri(path: Path) -> str:
    """A ``file:`` URI with the path percent-encoded, so ``#``, ``?`` and ``%xx`` in names open this file."""
    return path.absolute().as_uri() + "?mode=ro"


class SightingStore(SqlHistory):
    """One SQLite file. Writing (the default) takes the database's writer lock, upgrades an older schema, marks runs
    left ``running`` by a dead process as ``crashed`` and makes the files private to the user (0600). ``readonly``
    opens never write and need no lock."""

    _ALL_ROWS = "LIMIT -1"
    _CAMERA_NAMES = "json_group_array(DISTINCT src.name)"
    _BEGIN = "BEGIN IMMEDIATE"  # take the write lock now, not at the first write
    _IDS = IdList("IN (SELECT value FROM json_each(?))", lambda ids: json.dumps([int(i) for i in ids]))
    _ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,)
    _DENIED: tuple[type[BaseException], ...] = ()  # a file has no roles
    _REFUSED_DATA: tuple[type[BaseException], ...] = _BAD_DATA

    def __init__(self, path: Path | str, commit_interval_s: float = 1.0, readonly: bool = False,
                 max_pending_records: int = MAX_PENDING_RECORDS, max_pending_bytes: int = MAX_PENDING_BYTES,
                 embeddings_per_track: int = 0) -> None:
        """``embeddings_per_track``: the most embeddings a track keeps (its best; 0: all)."""
        self.path = Path(path)
        self._lock: WriterLock | None = None
        super().__init__(commit_interval_s, readonly, max_pending_records, max_pending_bytes, embeddings_per_track)

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"database not found: {self.path}")
        try:
            db = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=10.0, isolation_level=None)
            found = schema_version(db, self.path)
        except SchemaError as exc:
            raise StoreError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable reid-desktop database ({exc})") from None
        if found != SCHEMA_VERSION:
            db.close()
            newer = found > SCHEMA_VERSION
            raise StoreError(f"{self.path} has database schema {found}; this version reads {SCHEMA_VERSION}" +
                             (": update reid-desktop" if newer else "; it is upgraded when reid-desktop next "
                              "processes video into it"))
        return db

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._lock = WriterLock(self.path).acquire()
        except DatabaseInUse as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot create the database {self.path}: {exc.strerror or exc}") from None
        try:
            db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                db.execute("PRAGMA foreign_keys = ON")
                found, now = migrate(db, self.path)
                if found and found != now:
                    log.warning("upgraded %s from database schema %d to %d", self.path, found, now)
                if db.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
                    # deleted history gives its pages back to the disk (reclaim()); a file made before needs
                    # one full VACUUM to switch, done once here
                    db.execute(f"PRAGMA auto_vacuum = {_INCREMENTAL}")
                    db.execute("VACUUM")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.execute("UPDATE runs SET status = 'crashed', finished = COALESCE("
                           "(SELECT MAX(timestamp) FROM sightings WHERE run_id = runs.id), started) "
                           "WHERE status = 'running'")  # we hold the writer lock: whoever ran them is gone
            except BaseException:
                db.close()
                raise
        except SchemaError as exc:
            self._lock.release()
            raise StoreError(str(exc)) from None
        except sqlite3.OperationalError as exc:  # locked by a program that is not ours, disk full, I/O
            self._lock.release()
            raise StoreError(f"cannot write to {self.path}: {describe_failure(exc)}") from None
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise StoreError(f"{self.path} is not a usable reid-desktop database ({exc})") from None
        for suffix in ("", "-wal", "-shm"):  # also files made world-readable by older versions
            make_private(Path(f"{self.path}{suffix}"))
        return db

    def _sighting_writes(self) -> SightingWrites:
        return SightingWrites(lambda: self._db, self.indexed, self.embeddings_per_track, least="MIN",
                              greatest="MAX", all_rows=self._ALL_ROWS)

    def _open_committer(self) -> Any:
        """The commit thread's connection (the writer lock is this process's already)."""
        db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = FULL")
        return db

    @property
    def location(self) -> str:
        return self.path.name

    @property
    def address(self) -> str:
        return str(self.path)

    @property
    def backend(self) -> str:
        return "SQLite"

    @property
    def shared(self) -> SharedHistory | None:
        return None  # one machine's file: nobody else writes it (the writer lock sees to that)

    def _announce(self, change: SharedChange) -> None:
        """A file has one writing process (the writer lock sees to that): nobody else to tell."""

    def _purged(self, embedding_ids: list[int]) -> None:
        """Nobody else keeps an index of this file's embeddings."""

    def node_cameras(self) -> list[CameraHealth]:
        """A SQLite file is one machine's history: no processing nodes."""
        return []

    def close(self) -> None:
        """Also releases the writer lock. Never raises."""
        try:
            super().close()
        finally:
            if self._lock is not None:
                self._lock.release()

    @property
    def live_bytes(self) -> int:
        """Bytes the database's rows take (its file less the free pages waiting to be given back)."""
        pages, free, size = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return int((pages - free) * size)

    def reclaim(self) -> None:
        """Give the pages of deleted rows back to the disk (incremental vacuum, no full rewrite)."""
        with self._writing_held():
            try:
                # executescript steps the pragma to the end; execute() would free one page per call
                self._db.executescript("PRAGMA incremental_vacuum;")
            except sqlite3.Error as exc:
                raise StorageUnavailable(describe_failure(exc)) from exc

    def enforce_size(self, max_bytes: int) -> int:
        """Delete the oldest sightings, a tenth at a time, until the rows fit in ``max_bytes``; returns how many."""
        deleted = 0
        while self.live_bytes > max_bytes:
            count = self._db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0]
            if not count:
                break
            cutoff = self._db.execute("SELECT timestamp FROM sightings ORDER BY timestamp LIMIT 1 OFFSET ?",
                                      (count // 10,)).fetchone()[0]
            purged = self.purge_older_than(math.nextafter(cutoff, math.inf))
            if not purged and cutoff >= self._db.execute("SELECT MAX(timestamp) FROM sightings").fetchone()[0]:
                log.warning("%s: over its size limit with only the kept galleries of followed and named people left",
                            self.location)
                break  # what is left is kept on purpose
            deleted += purged
        return deleted

    def vector_search(self) -> str:
        """How this history is searched by appearance, in the operator's words (``models list --db``)."""
        return "a FAISS index saved beside the database file"

    def index_path(self, model_key: str) -> Path:
        digest = hashlib.sha256(model_key.encode()).hexdigest()[:16]
        return self.path.with_name(f"{self.path.name}.{digest}.faiss")
