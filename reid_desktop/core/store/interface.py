"""The history store's interface: what the engine writes and reads while it runs, and what the
operator's views, reports and the training export read.

Everything outside the storage backends speaks to a store through these two protocols and the records below,
never through SQL: :class:`~reid_desktop.core.store.storage.SightingStore` (one SQLite file per machine) and
:class:`~reid_desktop.core.store.pg_store.PgSightingStore` (a PostgreSQL database shared by several machines)
answer the same calls (tests/core/test_store_contract.py holds both to them). The vector index
(:class:`~reid_desktop.core.store.vector_index.VectorIndex`) is part of a store: it is kept in step with what
the store holds, and :class:`StoreDirectory` turns it into the matcher's look-up of people who left the
working set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np

from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.vector_index import VectorIndex, search_with_one_core
from reid_desktop.core.types import CameraMean


class StoreError(RuntimeError):
    """The database file cannot be opened or is not a reid-desktop store."""


class StorageUnavailable(StoreError):
    """A write failed (disk full, locked, damaged); the message says which, in the operator's words."""


@dataclass(frozen=True)
class StorageHealth:
    """Whether sightings are being saved. ``message`` is one line for a banner when they are not."""

    ok: bool
    message: str = ""
    pending: int = 0  # records waiting in memory
    dropped: int = 0  # records given up since the store opened, because the wait buffer was full


@dataclass(frozen=True)
class TrackSample:
    """Where a track was in one frame: ``frame_index`` counts the frames the app decoded (wrong once a file
    looped or was seeked), ``media_time`` is seconds into the file (right after loops and seeks)."""

    frame_index: int
    media_time: float | None
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ConfirmedTrack:
    """A track of an identity the operator vouched for, with sightings spread over its length."""

    identity: int
    track_id: int
    source: str
    uri: str
    kind: str
    thumbnail: bytes | None
    samples: tuple[TrackSample, ...]


@dataclass(frozen=True)
class CameraHealth:
    """A camera of a processing node on a shared database, as a station shows it."""

    node: str
    name: str
    uri: str  # without credentials
    state: str  # the camera's own state, or "down" when its node is
    frames_per_s: float
    node_up: bool


@dataclass(frozen=True)
class Correction:
    """One change of a track's identity: ``actor`` is ``auto`` (better crops) or ``operator`` (merge, split)."""

    timestamp: float
    actor: str
    action: str
    track_row: int | None
    from_identity: int | None
    to_identity: int | None
    score: float | None


@dataclass(frozen=True)
class TrackKey:
    """A per-camera track as stored: ``segment`` counts tracker restarts of the source within a run."""

    source: str
    uri: str
    kind: str
    segment: int
    track_id: int


@dataclass(frozen=True)
class SightingRecord:
    """One person in one frame, as the pipeline hands it to the store.

    ``embedding`` (D float32, L2-normalised, of model ``model_key``) and ``thumbnail`` (JPEG of the best
    crop so far, with its ``quality``) are present only on the frames that produced them.
    """

    run_id: int
    track: TrackKey
    identity_id: int | None
    frame_index: int
    timestamp: float
    media_time: float | None
    box: tuple[float, float, float, float]
    confidence: float
    match_score: float | None
    embedding: np.ndarray | None = None
    model_key: str = ""
    quality: float = 0.0
    thumbnail: bytes | None = None
    alert: bytes | None = None  # a followed person appeared on this track: the picture of that moment

    @property
    def nbytes(self) -> int:
        return (256 + (self.embedding.nbytes if self.embedding is not None else 0) + len(self.thumbnail or b"")
                + len(self.alert or b""))


@dataclass(frozen=True)
class Sighting:
    id: int
    source: str
    identity_id: int | None
    track_id: int
    frame_index: int
    timestamp: float
    media_time: float | None
    box: tuple[float, float, float, float]
    confidence: float
    match_score: float | None
    run_id: int
    track_row: int


@dataclass(frozen=True)
class IdentitySummary:
    identity_id: int
    label: str
    is_target: bool
    first_seen: float | None
    last_seen: float | None
    cameras: tuple[str, ...]
    sightings: int
    first_media_time: float | None
    last_media_time: float | None


@dataclass(frozen=True)
class SearchHit:
    """A stored sighting like the query: ``score`` is their cosine; ``vector`` the sighting's embedding (when the
    search was asked for it, to re-rank)."""

    sighting: Sighting
    score: float
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class TrackSegment:
    """One uninterrupted appearance of an identity on one camera: a row of the target timeline.

    Times come from the track's sightings; media times are None for live sources. ``source_uri`` is the
    video (credentials removed) the track was recorded from: a camera name may have been reused since.
    """

    track_row: int
    run_id: int
    source: str
    track_id: int
    identity_id: int | None
    first_seen: float
    last_seen: float
    first_media_time: float | None
    last_media_time: float | None
    sightings: int
    best_quality: float
    thumbnail: bytes | None
    source_uri: str = ""


@dataclass(frozen=True)
class Alert:
    """A followed person appeared on a camera: the first sighting of a track whose identity is a target.

    The identity is the sighting's as it is now (a merge or split after the alert moves it too).
    """

    id: int
    identity_id: int | None
    source: str
    timestamp: float
    media_time: float | None
    score: float | None
    thumbnail: bytes | None
    track_row: int
    source_uri: str = ""


class SharedHistory(Protocol):
    """A history other processes write too (a PostgreSQL database): what a process needs to hear their changes."""

    @property
    def postgres(self) -> PostgresLocation:
        ...

    @property
    def backend_pid(self) -> int:
        """This store's connection on the server: the changes it announced itself are not news to it."""
        ...

    @property
    def index_horizon(self) -> int | None:
        """The oldest transaction running when the vector index last read the database (catching up starts there)."""
        ...


class HistoryReader(Protocol):
    """What the operator's views, the reports and the training export read. Times are UNIX seconds."""

    @property
    def location(self) -> str:
        """Where this history is kept, as an operator would name it (a file name, a server)."""
        ...

    @property
    def address(self) -> str:
        """Where this history is kept, in full (a SQLite file's path; a database and its server)."""
        ...

    @property
    def backend(self) -> str:
        """The database that keeps it, in the operator's words: ``SQLite`` or ``PostgreSQL``."""
        ...

    @property
    def shared(self) -> SharedHistory | None:
        """What hearing the other processes' changes takes, when other processes write this history too; None for
        one machine's file."""
        ...

    def identities(self, run_id: int | None = None) -> list[IdentitySummary]:
        """Every identity with sightings (of one run), most recently seen first."""
        ...

    def targets(self) -> list[IdentitySummary]:
        ...

    def identity(self, identity_id: int) -> IdentitySummary | None:
        ...

    def track_segments(self, identity_id: int) -> list[TrackSegment]:
        """An identity's appearances, one per track, oldest first: the target timeline."""
        ...

    def sightings(self, identity_id: int | None = None, source: str | None = None) -> list[Sighting]:
        ...

    def thumbnail(self, identity_id: int) -> bytes | None:
        """The JPEG of an identity's best crop."""
        ...

    def track_thumbnail(self, track_row: int) -> bytes | None:
        ...

    def sighting_track_row(self, sighting_id: int) -> int | None:
        ...

    def runs(self) -> list[dict[str, Any]]:
        ...

    def node_cameras(self) -> list[CameraHealth]:
        """Every processing node's cameras with their health (none on a one-machine history)."""
        ...

    def corrections(self, limit: int = 100) -> list[Correction]:
        """The newest changes of a track's identity, automatic and the operator's."""
        ...

    def alerts(self, identity_id: int | None = None, limit: int = 200) -> list[Alert]:
        """The newest alerts (of one identity), newest first."""
        ...

    def confirmed_tracks(self, max_per_track: int) -> tuple[dict[int, str], list[ConfirmedTrack]]:
        """The labels of operator-vouched identities and their tracks (the training export)."""
        ...

    def search(self, embedding: np.ndarray, model_key: str, k: int = 10,
               index: VectorIndex | None = None, vectors: bool = False) -> list[SearchHit]:
        """The ``k`` sightings most like ``embedding``; ``index``: the writer's live index, shared with a reader;
        ``vectors``: each hit carries its embedding."""
        ...

    def identity_gallery(self, identity_id: int, model_key: str, per_identity: int) -> np.ndarray:
        """An identity's best stored embeddings of ``model_key`` (n x D)."""
        ...

    def close(self) -> None:
        ...

    def vector_search(self) -> str:
        """How this history is searched by appearance, in the operator's words (``models list --db``)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class HistoryStore(HistoryReader, Protocol):
    """The engine's store: runs, sightings, identities and their corrections, retention, and the vector
    index of one model's embeddings. Writes wait in a bounded buffer and are committed in batches; a
    failing backend is reported through :attr:`health` and never stops the cameras."""

    @property
    def health(self) -> StorageHealth:
        ...

    @property
    def pending(self) -> int:
        """Records waiting to be committed."""
        ...

    def begin_run(self, *, detector: str, embedder: str, embedder_is_fallback: bool, provider: str,
                  model_key: str, warnings: Sequence[str], config: dict[str, Any]) -> int:
        ...

    def end_run(self, run_id: int, status: str) -> bool:
        """Commit what waits and close the run; False when not everything could be saved."""
        ...

    def allocate_identity_id(self) -> int | None:
        """A new identity id, unique across every process writing to this history; None while it fails."""
        ...

    def record(self, record: SightingRecord) -> None:
        ...

    def maybe_flush(self) -> None:
        """Commit the waiting records when the commit interval has passed (or retry a failed commit)."""
        ...

    def flush(self, force: bool = False) -> bool:
        ...

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        ...

    def set_label(self, identity_id: int, label: str) -> None:
        ...

    def merge_identities(self, keep: int, drop: int) -> None:
        ...

    def correct_track(self, run_id: int, track: TrackKey, identity_id: int, previous: int,
                      score: float | None) -> bool:
        """An automatic correction: the track's rows move from ``previous`` to ``identity_id`` (audited)."""
        ...

    def split_track(self, track_row: int, new_id: int | None = None) -> int:
        """The operator's "not this person": the track gets a new identity (audited); returns it."""
        ...

    def track_identity(self, track_row: int) -> int | None:
        ...

    def track_key(self, track_row: int) -> tuple[int, str, int, int] | None:
        """(run, source, segment, track id) of a stored track."""
        ...

    def purge_older_than(self, cutoff: float) -> int:
        """Remove sightings older than ``cutoff`` (epoch seconds) and what only they kept; returns how many."""
        ...

    def in_commit_thread(self, job: Callable[[], object]) -> Future[None]:
        """Run ``job`` (a retention round) where the store commits, off the caller's thread."""
        ...

    def purge_expired(self, days: int) -> int:
        """One round of retention (``days``: this machine's setting, which a shared database's policy overrides)."""
        ...

    def enforce_size(self, max_bytes: int) -> int:
        """Remove the oldest history until the store takes at most ``max_bytes``; returns sightings removed."""
        ...

    def reclaim(self) -> None:
        """Give the space of removed rows back, a little at a time."""
        ...

    def attach_index(self, model_key: str, dim: int) -> VectorIndex:
        """The vector index of ``model_key``'s embeddings, loaded, caught up or rebuilt as needed."""
        ...

    def index_embeddings(self, model_key: str, ids: np.ndarray, vectors: np.ndarray, known: bool = False) -> None:
        """Embeddings another process committed to this history join this process's vector index (``known``: some
        may be in it already)."""
        ...

    def unindex_embeddings(self, ids: np.ndarray) -> None:
        """Embeddings another process deleted leave this process's vector index."""
        ...

    def identity_galleries(self, model_key: str, per_identity: int,
                           recent: int) -> Iterator[tuple[int, bool, bool, np.ndarray]]:
        """(identity, is target, is named, best embeddings) of the ``recent`` most recently seen identities,
        and of every target and named one."""
        ...

    def embedding_identities(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        """The identity each of these stored embeddings (ids from the vector index) belongs to now."""
        ...

    def camera_means(self, model_key: str) -> dict[str, CameraMean]:
        """Every camera's mean embedding of ``model_key`` as last kept (core/identity/camera_norm.py)."""
        ...

    def save_camera_means(self, model_key: str, means: Mapping[str, CameraMean]) -> None:
        """Keep these cameras' mean embeddings (raises :class:`StorageUnavailable` when it cannot)."""
        ...


class StoreDirectory:
    """The matcher's look-up of identities outside its working set, through a store: the vector index of
    ``model_key`` finds the nearest stored embeddings (from any thread), the store says whose they are now
    (operator edits included) and hands over their galleries (from the store's thread)."""

    def __init__(self, store: HistoryStore, model_key: str, dim: int, per_identity: int) -> None:
        self.store, self.model_key, self.per_identity = store, model_key, per_identity
        self.index = store.attach_index(model_key, dim)

    def __len__(self) -> int:
        return len(self.index)

    def nearest(self, embeddings: np.ndarray, k: int, min_score: float) -> list[list[int]]:
        search_with_one_core()  # the look-up thread's searches run beside the engine
        scores, ids = self.index.search(embeddings, k)
        return [[int(i) for i, s in zip(row, row_scores, strict=True) if i >= 0 and s >= min_score]
                for row, row_scores in zip(ids, scores, strict=True)]

    def owners(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        return self.store.embedding_identities(embedding_ids)

    def gallery(self, identity_id: int) -> np.ndarray:
        return self.store.identity_gallery(identity_id, self.model_key, self.per_identity)
