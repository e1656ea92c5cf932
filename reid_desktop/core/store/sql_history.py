"""What the SQLite and PostgreSQL stores share: the write buffer committed in a commit thread, operator edits
(their SQL and audit in core/store/identity_edits.py) and retention (core/store/retention.py) committed at once, and
the vector index's lifecycle, over the reads of core/store/history_reads.py (core/store/storage.py is the SQLite
file, core/store/pg_store.py the shared PostgreSQL database).

The engine never waits for the database: sightings wait in a bounded buffer and are written in one transaction every
``commit_interval_s``, in the store's commit thread on a connection of its own (the engine's own writes wait for a
commit under way at most :data:`COMMIT_WAIT_S`). A write that fails is rolled back whole and retried with back-off
while the records keep waiting; :attr:`SqlHistory.health` says so, so the cameras keep running and the operator is
told. Nothing committed is ever touched by a failed write. Operator edits commit at once.

Appearance search and the matcher's look-up of people not seen for a while go through a
:class:`~reid_desktop.core.store.vector_index.VectorIndex` of one model's embeddings (:meth:`SqlHistory.attach_index`):
kept in step with every commit and deletion, saved on close (where the backend says: :meth:`SqlHistory.index_path`),
caught up from the database when it is behind and rebuilt when it is missing, damaged, or rows were deleted after it
was saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from reid_desktop.core.store.commit_thread import COMMIT_WAIT_S, CommitThread
from reid_desktop.core.store.history_reads import HistoryReads
from reid_desktop.core.store.identity_edits import IdentityEdits, IdList
from reid_desktop.core.store.index_keeper import IndexKeeper
from reid_desktop.core.store.interface import (
    SightingRecord,
    StorageHealth,
    StorageUnavailable,
    StoreError,
    TrackKey,
)
from reid_desktop.core.store.retention import Retention
from reid_desktop.core.store.shared_changes import EmbeddingsAdded, SharedChange
from reid_desktop.core.store.sighting_writes import SightingWrites
from reid_desktop.core.store.vector_index import VectorIndex
from reid_desktop.core.store.write_buffer import ID_BLOCK, MAX_PENDING_BYTES, MAX_PENDING_RECORDS, WriteBuffer
from reid_desktop.core.types import CameraMean

log = logging.getLogger(__name__)



def describe_failure(exc: BaseException) -> str:
    """What went wrong with a write, as an operator would put it."""
    text = str(exc).lower()
    if "full" in text:
        return "database full (no space left on its disk)"
    if "locked" in text or "busy" in text:
        return "database locked by another program"
    if "lock timeout" in text:
        return "database busy: another process's edit held it too long"
    if "statement timeout" in text:
        return "database too slow: a write took too long"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "database damaged"
    if "readonly" in text or "read-only" in text:
        return "database is read-only"
    if "i/o" in text:
        return "disk error on the database"
    if any(words in text for words in ("connection refused", "server closed the connection", "terminating connection",
                                       "connection failed", "connection is lost", "connection timeout")):
        return "database server unreachable"
    return f"database error ({exc})"


class SqlHistory(HistoryReads):
    """The history's logic, written once for SQLite and PostgreSQL and composed of parts: the commit thread, the write
    buffer, the vector index's keeper, the writes, the identity edits and retention. Each backend is a subclass: what
    differs is named below and in the abstract methods. Not thread-safe: one instance per thread.

    A writing store keeps a bounded buffer of sightings and commits it in its commit thread, keeps the vector index
    of one model in step with its commits and deletions, applies operator edits at once with an audit row, and runs
    retention a block at a time; a store opened ``readonly`` only reads.
    """

    _BEGIN: str  # the statement that opens a write transaction
    _IDS: IdList  # a list of ids as one parameter
    _DENIED: tuple[type[BaseException], ...]  # a missing privilege
    _REFUSED_DATA: tuple[type[BaseException], ...]  # one record's data refused: retrying the same batch cannot help

    def __init__(self, commit_interval_s: float = 1.0, readonly: bool = False,
                 max_pending_records: int = MAX_PENDING_RECORDS, max_pending_bytes: int = MAX_PENDING_BYTES,
                 embeddings_per_track: int = 0) -> None:
        """``embeddings_per_track``: the most embeddings a track keeps (its best; 0: all)."""
        self.readonly = readonly
        self.commit_interval_s = commit_interval_s
        self.embeddings_per_track = embeddings_per_track
        self._buffer = WriteBuffer(self.location, max_pending_records, max_pending_bytes)
        self._commits = CommitThread(self._open_readonly() if readonly else self._open_writer(),
                                     self._open_committer, self._unreachable, self._ERRORS)
        self.indexed = IndexKeeper(self.location)
        self._writes = self._sighting_writes()
        self._edits = IdentityEdits(lambda: self._db, self._IDS, self._announce)
        self._retention = Retention(lambda: self._db, self._IDS, self._edits, self._purged)

    # -- what each backend says for itself -------------------------------------------------------

    @abstractmethod
    def _open_readonly(self) -> Any:
        """The connection of a store that only reads."""

    @abstractmethod
    def _open_writer(self) -> Any:
        """The writing store's connection, the schema brought up to date."""

    @abstractmethod
    def _open_committer(self) -> Any:
        """The commit thread's connection."""

    @abstractmethod
    def _sighting_writes(self) -> SightingWrites:
        """How this dialect writes a flush's records."""

    @abstractmethod
    def index_path(self, model_key: str) -> Path:
        """Where this process keeps its vector index of ``model_key``'s embeddings."""

    @abstractmethod
    def _announce(self, change: SharedChange) -> None:
        """Tell the other processes on this history, inside the transaction making the change."""

    @abstractmethod
    def _purged(self, embedding_ids: list[int]) -> None:
        """Embeddings retention deleted, in the transaction that deleted them (for the other processes)."""

    # -- writing ---------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.location} is open read-only")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; any failure rolls all of it back and becomes :class:`StorageUnavailable`. Waits at
        most :data:`COMMIT_WAIT_S` for a commit running in the commit thread."""
        with self._writing_held(), self._transaction_held():
            yield

    @contextmanager
    def _writing_held(self) -> Iterator[None]:
        """The right to write (core/store/commit_thread.py), or :class:`StorageUnavailable` saying why not."""
        self._writable()
        if not self._commits.take():  # the caller keeps what it wanted to write, or says it was not saved
            failure = self._buffer.failure or "database not answering"
            raise StorageUnavailable(f"{failure}: the last commit has not ended")
        try:
            yield
        finally:
            self._commits.release()

    @contextmanager
    def _transaction_held(self) -> Iterator[None]:
        try:
            self._begin()
        except self._ERRORS as exc:  # BEGIN may have gone through (a lock not had in time): end what it began
            with contextlib.suppress(*self._ERRORS):
                self._db.execute("ROLLBACK")
            raise StorageUnavailable(describe_failure(exc)) from exc
        try:
            yield
            self._db.execute("COMMIT")
            self._commits.answered()
        except BaseException as exc:
            with contextlib.suppress(*self._ERRORS):  # the database may have rolled back by itself (disk full, I/O)
                self._db.execute("ROLLBACK")
            self._writes.forget_sources()  # rows made in the rolled-back transaction are gone
            if isinstance(exc, self._DENIED):  # the role may not write: wait for the grant, never drop the records
                raise StorageUnavailable(f"{describe_failure(exc)}: this database role may not write here (the "
                                         "database's owner grants it with 'reid-desktop db roles')") from exc
            if isinstance(exc, self._ERRORS) and not isinstance(exc, self._REFUSED_DATA):
                raise StorageUnavailable(describe_failure(exc)) from exc
            raise

    def _begin(self) -> None:
        self._db.execute(self._BEGIN)

    def begin_run(self, *, detector: str, embedder: str, embedder_is_fallback: bool, provider: str,
                  model_key: str, warnings: Sequence[str], config: dict[str, Any]) -> int:
        with self._transaction():
            row = self._db.execute(
                "INSERT INTO runs (started, detector, embedder, embedder_is_fallback, provider, model_key, warnings, "
                "config) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (time.time(), detector, embedder, int(embedder_is_fallback), provider, model_key,
                 json.dumps(list(warnings)), json.dumps(config))).fetchone()
        return int(row[0])

    def end_run(self, run_id: int, status: str) -> bool:
        """Write what waits and close the run; False (and a log line) when the database refuses."""
        saved = self.flush(force=True)
        try:
            with self._transaction():
                self._db.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))
        except StorageUnavailable as exc:
            log.error("could not close run %d in %s: %s", run_id, self.location, exc)
            return False
        return saved

    def allocate_identity_id(self) -> int | None:
        """A new identity id from the database; None while the database cannot be written and none are left."""
        committing = self._commits.busy
        buffer = self._buffer
        if (buffer.needs_ids() and buffer.may_try(time.monotonic())
                and not (buffer.ids and committing)):  # ids left: a refill waits until the commit under way ends
            try:
                self._reserve_ids()
                buffer.committed(0)
            except StorageUnavailable as exc:
                buffer.failed(exc)
        return buffer.take_id()

    def _reserve_ids(self) -> None:
        with self._transaction():
            start = self._db.execute(
                "UPDATE sequences SET next = MAX(next, (SELECT COALESCE(MAX(id), 0) + 1 FROM identities)) + ? "
                "WHERE name = 'identity' RETURNING next - ?", (ID_BLOCK, ID_BLOCK)).fetchone()[0]
        self._buffer.ids = [*self._buffer.ids, *range(start, start + ID_BLOCK)]

    def _give_back_ids(self) -> None:
        ids = self._buffer.ids
        # under the writer lock nobody else reserves: a contiguous rest that ends where the sequence stands goes back
        if ids and ids[-1] - ids[0] + 1 == len(ids):
            try:
                with self._transaction():
                    self._db.execute("UPDATE sequences SET next = ? WHERE name = 'identity' AND next = ?",
                                     (ids[0], ids[-1] + 1))
            except StorageUnavailable:
                pass  # the ids stay unused: a gap in the numbering, nothing more
        self._buffer.ids = []

    def record(self, record: SightingRecord) -> None:
        """Queue one sighting for the next commit (bounded: see :class:`StorageHealth`)."""
        self._writable()
        self._buffer.records.append(record)

    @property
    def pending(self) -> int:
        return len(self._buffer.records)

    @property
    def health(self) -> StorageHealth:
        return self._buffer.health(self._commits.waiting(), COMMIT_WAIT_S)

    def maybe_flush(self) -> None:
        """When the commit interval has passed (or a retry is due), commit what waits in the store's commit thread,
        on a connection of its own: the caller (the engine) never waits for the database, however slow it is."""
        due = self._buffer.commit_due(time.monotonic(), self.commit_interval_s)
        if due and not self._commits.busy:
            self.in_commit_thread(self.flush)

    def in_commit_thread(self, job: Callable[[], object]) -> Future[None]:
        """Run ``job`` (a commit, a retention round) in the store's commit thread, on its connection: the caller
        does not wait for it. Jobs run one at a time, in order."""
        return self._commits.submit(job)

    def _unreachable(self, exc: BaseException) -> None:
        """The commit thread could not open its connection: the commit waits for the next round."""
        self._buffer.failed(StorageUnavailable(describe_failure(exc)))

    @property
    def _db(self) -> Any:
        """The connection of this thread: the commit thread's own, or the store's."""
        return self._commits.db

    def flush(self, force: bool = False) -> bool:
        """Write every waiting record in one transaction; False when the database refused (they keep waiting), or
        when a commit still running in the commit thread did not end within :data:`COMMIT_WAIT_S`.

        ``force`` tries even before the next retry is due (an operator edit, closing).
        """
        if not self._commits.take():
            return False
        try:
            return self._flush(force)
        finally:
            self._commits.release()

    def _flush(self, force: bool) -> bool:
        if not force and not self._buffer.may_try(time.monotonic()):
            return False
        records, newest = self._buffer.records.snapshot()
        if not records:
            return not self._buffer.failure
        try:
            try:
                self.indexed.discard()
                with self._transaction():
                    self._writes.batch(records)
                    self._announce_embeddings(records)
            except self._REFUSED_DATA:  # a record the database refuses (NaN in a NOT NULL column...): find it, skip it
                self.indexed.discard()
                self._write_each(records)
        except StorageUnavailable as exc:
            self._buffer.failed(exc)
            return False
        self.indexed.committed()
        self._buffer.records.discard_through(newest)
        self._buffer.committed(len(records))
        return True

    def _write_each(self, records: Sequence[SightingRecord]) -> None:
        """Write records one savepoint each; those the database refuses are logged and given up."""
        with self._transaction():
            refused = self._writes.each(records, self._REFUSED_DATA)
            self._announce_embeddings(records)
        if refused:
            record, exc = refused[0]
            log.error("%s: refused %d sightings, the first of %s frame %d (%s: %s)", self.location, len(refused),
                      record.track.source, record.frame_index, type(exc).__name__, exc)
        self._buffer.records.dropped += len(refused)

    def _announce_embeddings(self, records: Sequence[SightingRecord]) -> None:
        """The embeddings of the index's model this transaction wrote, for the other processes on the history."""
        ids = self.indexed.staged_ids()
        if ids:
            self._announce(EmbeddingsAdded(min(ids), max(ids), tuple(sorted({r.run_id for r in records}))))

    def close(self) -> None:
        """Write what waits, give back unused ids, save the vector index, close the connections. Never raises."""
        try:
            self._commits.finish()  # a commit under way ends first
            if not self.readonly:
                if not self.flush(force=True):
                    log.error("%s: %d sightings could not be saved (%s)", self.location, len(self._buffer.records),
                              self._buffer.failure)
                self._give_back_ids()
                self._save_index()
        finally:
            self._commits.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operator edits and retention ------------------------------------------------------------

    @contextmanager
    def _edit(self) -> Iterator[None]:
        """Apply an operator edit all or nothing, committed at once.

        The sightings waiting to be written go first, so an edit always sees (and changes) every row it
        names; when the database refuses them the edit is refused too, with the reason.
        """
        if not self.flush(force=True):
            failure = self._buffer.failure or "database busy: the last commit has not ended"
            raise StorageUnavailable(f"{failure}: the change was not saved")
        with self._transaction():
            yield

    def merge_identities(self, keep: int, drop: int) -> None:
        """The operator says ``drop`` is the same person as ``keep``: ``keep`` takes all of ``drop``'s rows."""
        if keep == drop:  # bad input, said as such before the database is asked
            raise ValueError(f"cannot merge identity {keep} with itself")
        with self._edit():  # read inside: the sightings waiting to be written are in by then
            self._edits.merge(keep, drop)

    def correct_track(self, run_id: int, track: TrackKey, identity_id: int, previous: int, score: float | None) -> bool:
        """An automatic correction: the track's stored rows move from ``previous`` to ``identity_id``, with an
        audit row. False when nothing of the track is stored. Raises :class:`StorageUnavailable` (not saved)."""
        with self._edit():
            track_row = self.track_row(run_id, track.source, track.segment, track.track_id)
            if track_row is None:
                return False
            self._edits.reassign(track_row, identity_id, previous, score)
        return True

    def split_track(self, track_row: int, new_id: int | None = None) -> int:
        """The operator says a track is not this person: the track becomes a new identity, whose id is returned.

        A running pipeline passes ``new_id`` (an id its matcher took from :meth:`allocate_identity_id`).
        """
        new_id = self.allocate_identity_id() if new_id is None else new_id
        if new_id is None:
            raise StorageUnavailable(f"{self._buffer.failure}: the change was not saved")
        with self._edit():
            self._edits.split(track_row, new_id)
        return new_id

    def ensure_identity(self, identity_id: int, timestamp: float) -> None:
        """An identity row without sightings yet (a target named before it was seen)."""
        with self._edit():
            self._edits.ensure(identity_id, timestamp)

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        with self._edit():
            self._edits.set_target(identity_id, is_target)

    def set_label(self, identity_id: int, label: str) -> None:
        with self._edit():
            self._edits.set_label(identity_id, label)

    def purge_expired(self, days: int) -> int:
        """Retention's round: sightings older than ``days`` (0: all kept) go, as :meth:`purge_older_than` says."""
        return self.purge_older_than(time.time() - days * 86400.0) if days else 0

    def purge_older_than(self, cutoff: float) -> int:
        """Data retention: delete sightings before ``cutoff`` (epoch seconds) and what only they kept alive, except
        a followed or named person's newest tracks (core/store/retention.py). A block of sightings per transaction:
        the edit lock is held for one block at a time, never for the whole purge. Returns the sightings deleted."""
        deleted = 0
        while True:
            with self._edit():
                count, gone, finished = self._retention.purge_block(cutoff)
            deleted += count
            self.indexed.leave(gone)
            if finished:
                return deleted

    # -- the vector index --------------------------------------------------------------------------

    @property
    def index(self) -> VectorIndex | None:
        """The vector index attached last (None before the first :meth:`attach_index`)."""
        return self.indexed.index

    @property
    def index_model(self) -> str:
        return self.indexed.model

    def attach_index(self, model_key: str, dim: int) -> VectorIndex:
        """The vector index of ``model_key``'s embeddings, loaded and caught up, or rebuilt from the database.

        A writing store keeps it in step from now on and saves it on close (the previous model's first).
        """
        if self.indexed.index is not None and self.indexed.holds(model_key):
            return self.indexed.index
        self._save_index()
        self.flush(force=True)
        index = self.indexed.attach(model_key, dim, self.index_path(model_key), self.embedding_stamp(model_key),
                                    self.iter_embeddings)
        if not self.readonly:
            self._save_index()
        return index

    def index_embeddings(self, model_key: str, ids: np.ndarray, vectors: np.ndarray, known: bool = False) -> None:
        """Embeddings another process committed to this history join this process's vector index; ``known``: the
        index may hold some of them already (read again after a lost connection), and they are not doubled."""
        self.indexed.join(model_key, ids, vectors, known)

    def unindex_embeddings(self, ids: np.ndarray) -> None:
        """Embeddings another process's retention deleted leave this process's vector index."""
        self.indexed.leave(ids)

    def _save_index(self) -> None:
        """Save the index when everything it holds is committed (otherwise the next open catches up)."""
        if self.index is None or self.readonly:
            return
        try:
            self.index.save(self.index_path(self.index_model), self.embedding_stamp(self.index_model))
        except (OSError, RuntimeError, *self._ERRORS) as exc:  # type: ignore[misc]  # a tuple of exception classes
            log.warning("%s: could not save the vector index (%s); it is rebuilt next time", self.location, exc)

    def save_camera_means(self, model_key: str, means: Mapping[str, CameraMean]) -> None:
        """Keep these cameras' mean embeddings of ``model_key`` (one row per camera and model: bounded)."""
        if not means:
            return
        with self._transaction():
            for source, mean in means.items():
                self._db.execute(
                    "INSERT INTO camera_means (source, model_key, vector, count, updated) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (source, model_key) DO UPDATE SET vector = excluded.vector, count = excluded.count, "
                    "updated = excluded.updated",
                    (source, model_key, np.asarray(mean.vector, np.float32).tobytes(), int(mean.count), time.time()))
