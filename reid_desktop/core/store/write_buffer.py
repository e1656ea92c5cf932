"""What waits to be written and whether writing works, with no SQL: the part of a store every backend shares.

The engine hands records over and never waits for the database: they wait here, bounded, until a commit writes
them. A commit that fails is retried after :data:`RETRY_INITIAL_S`, doubling up to :data:`RETRY_MAX_S`; the
failure is the store's health until a commit succeeds. Identity ids are reserved in blocks (by the backend, in
its database) and handed out from here, so most new people cost no round trip.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from reid_desktop.core.store.interface import SightingRecord, StorageHealth, StorageUnavailable

log = logging.getLogger(__name__)

# identity ids are reserved in blocks, so new people still get an id while a write fault lasts (a SQLite store gives
# the unused rest of its last block back on close)
ID_BLOCK = 64
ID_LOW_WATER = 16
# While a fault lasts, at most this much waits in memory; beyond it the oldest records are given up.
MAX_PENDING_RECORDS = 50_000
MAX_PENDING_BYTES = 256 * 1024**2
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0


class PendingRecords:
    """Records not yet committed, oldest first, bounded in count and bytes (the oldest go first). The engine adds
    while the commit thread writes a snapshot: each record has a number, and a commit discards what it wrote by
    number, never a record added (or one dropped over the bound) meanwhile."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self._records: collections.deque[tuple[int, SightingRecord]] = collections.deque()
        self._bytes = 0
        self._added = 0
        self._guard = threading.Lock()
        self.max_records, self.max_bytes = max_records, max_bytes
        self.dropped = 0

    def append(self, record: SightingRecord) -> None:
        with self._guard:
            self._added += 1
            self._records.append((self._added, record))
            self._bytes += record.nbytes
            while len(self._records) > self.max_records or (self._bytes > self.max_bytes and len(self._records) > 1):
                self._bytes -= self._records.popleft()[1].nbytes
                self.dropped += 1

    def snapshot(self) -> tuple[list[SightingRecord], int]:
        """What waits now, and the number of the newest (for :meth:`discard_through`)."""
        with self._guard:
            return [record for _, record in self._records], self._added

    def discard_through(self, newest: int) -> None:
        """Forget the records numbered up to ``newest`` (written)."""
        with self._guard:
            while self._records and self._records[0][0] <= newest:
                self._bytes -= self._records.popleft()[1].nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._records)


class WriteBuffer:
    """The records waiting, the reserved identity ids, and the state of writing: the last failure (empty while
    writing works), when to try again, when the last commit was. ``location`` names the database in the log."""

    def __init__(self, location: str, max_records: int = MAX_PENDING_RECORDS,
                 max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.location = location
        self.records = PendingRecords(max_records, max_bytes)
        self.ids: list[int] = []  # identity ids reserved in the database and not handed out yet
        self.failure = ""
        self.last_commit = time.monotonic()
        self._retry_at = 0.0
        self._retry_delay = RETRY_INITIAL_S

    def may_try(self, now: float) -> bool:
        """Whether writing may be tried now: it works, or the failure's retry is due."""
        return not self.failure or now >= self._retry_at

    def commit_due(self, now: float, interval_s: float) -> bool:
        """Whether a commit is due: the interval passed since the last one, or a failed one's retry is due."""
        return now >= self._retry_at if self.failure else now - self.last_commit >= interval_s

    def needs_ids(self) -> bool:
        return len(self.ids) < ID_LOW_WATER

    def take_id(self) -> int | None:
        if not self.ids:
            return None
        identity_id, self.ids = self.ids[0], self.ids[1:]
        return identity_id

    def committed(self, saved: int) -> None:
        """A commit wrote ``saved`` records (0: another write, such as reserving ids, worked)."""
        if saved:
            self.last_commit = time.monotonic()
        if self.failure:
            log.warning("%s: writing again (%d sightings saved)", self.location, saved)
        self.failure, self._retry_delay = "", RETRY_INITIAL_S

    def failed(self, exc: StorageUnavailable) -> None:
        if str(exc) != self.failure:
            log.error("%s: %s; %d sightings wait in memory, retrying", self.location, exc, len(self.records))
        self.failure = str(exc)
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def health(self, commit_waited_s: float, wait_limit_s: float) -> StorageHealth:
        """Whether sightings are being saved; a commit under way for longer than ``wait_limit_s`` counts as a
        database that stopped answering."""
        failure = self.failure or (f"database not answering (a commit has waited {commit_waited_s:.0f} s)"
                                   if commit_waited_s > wait_limit_s else "")
        waiting, dropped = len(self.records), self.records.dropped
        if not failure:
            return StorageHealth(True, "", waiting, dropped)
        lost = f"; {dropped} given up" if dropped else ""
        return StorageHealth(False, f"{failure}: sightings are not being saved ({waiting} waiting{lost}); saving "
                                    "resumes by itself", waiting, dropped)
