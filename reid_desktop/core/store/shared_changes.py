"""Changes one process makes to a shared history that the others running on it must take on at once.

On a shared PostgreSQL database every processing node keeps its own working set of identities and its own
vector index. What another process does reaches them as these changes: the writer announces them in the
transaction that makes them (PostgreSQL's NOTIFY, delivered when it commits), a listener on each node hears
them (core/store/change_feed.py) and the node's pipeline applies them between frames. One line of text each, so that
they fit a notification's payload and read well in a log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TargetChanged:
    """An operator followed (or stopped following) an identity."""

    identity_id: int
    is_target: bool


@dataclass(frozen=True)
class Labelled:
    """An operator named an identity: it stays in every working set."""

    identity_id: int


@dataclass(frozen=True)
class Merged:
    """``drop`` is ``keep`` from now on (an operator's merge, or a tentative identity given up for another)."""

    keep: int
    drop: int


@dataclass(frozen=True)
class Split:
    """An operator split stored track ``track_row`` off ``old`` into the new identity ``new``."""

    track_row: int
    old: int
    new: int


@dataclass(frozen=True)
class Regrouped:
    """A track moved from ``old`` to ``new`` with better crops; both identities' galleries changed."""

    old: int
    new: int


@dataclass(frozen=True)
class EmbeddingsAdded:
    """A writer committed embeddings ``first_id`` to ``last_id`` of its runs ``run_ids`` (other writers' rows
    may lie between them: the runs say which are these)."""

    first_id: int
    last_id: int
    run_ids: tuple[int, ...]


@dataclass(frozen=True)
class Purged:
    """Retention deleted embeddings; the ids are in the database's ``purges`` row ``seq`` (too many for a payload)."""

    seq: int


SharedChange = TargetChanged | Labelled | Merged | Split | Regrouped | EmbeddingsAdded | Purged


@dataclass(frozen=True)
class TargetsNow:
    """Every identity followed now, as the database holds it: what a listener reads on each (re)connection, so a
    target dropped while it was away is dropped here too (notifications are not kept for a listener that is away)."""

    identity_ids: frozenset[int]


@dataclass(frozen=True)
class SharedEmbeddings:
    """The rows behind an :class:`EmbeddingsAdded`, as a listener read them: per row its identity, quality,
    camera and time (on the receiver's clock); ``created`` holds each identity's creation time (for reconciling two
    new identities). ``caught_up``: read after a lost connection, so the receiver may hold some of them already."""

    run_ids: tuple[int, ...]
    model_key: str
    embedding_ids: np.ndarray  # (n,) int64
    identity_ids: np.ndarray  # (n,) int64
    qualities: np.ndarray  # (n,) float32
    vectors: np.ndarray  # (n, d) float32
    cameras: tuple[str, ...]
    timestamps: np.ndarray  # (n,) float64
    created: dict[int, float]
    caught_up: bool = False
    uris: tuple[str, ...] = ()  # each row's camera's URI (two nodes may give two cameras one name)


@dataclass(frozen=True)
class EmbeddingsPurged:
    """The rows behind a :class:`Purged`, as a listener read them: drop them from the vector index."""

    embedding_ids: np.ndarray  # (n,) int64


Heard = SharedChange | SharedEmbeddings | TargetsNow | EmbeddingsPurged  # what a listener hands on to the pipeline


def format_change(change: SharedChange) -> str:
    """The one-line payload of ``change`` (read back by :func:`parse_change`)."""
    match change:
        case TargetChanged(identity_id, is_target):
            return f"target {identity_id} {int(is_target)}"
        case Labelled(identity_id):
            return f"label {identity_id}"
        case Merged(keep, drop):
            return f"merged {keep} {drop}"
        case Split(track_row, old, new):
            return f"split {track_row} {old} {new}"
        case Regrouped(old, new):
            return f"regrouped {old} {new}"
        case EmbeddingsAdded(first_id, last_id, run_ids):
            return f"embeddings {first_id} {last_id} {','.join(str(r) for r in run_ids)}"
        case Purged(seq):
            return f"purged {seq}"
    raise TypeError(f"not a shared change: {change!r}")


_ARITY = {"target": 2, "label": 1, "merged": 2, "split": 3, "regrouped": 2, "embeddings": 3, "purged": 1}


def parse_change(payload: str) -> SharedChange:
    """A payload back into its change; ValueError naming what is wrong with one that is not ours."""
    kind, *fields = payload.split(" ")
    if _ARITY.get(kind) != len(fields):
        raise ValueError(f"not a shared change: {payload[:80]!r}")
    try:
        if kind == "embeddings":
            runs = tuple(int(r) for r in fields[2].split(","))
            return EmbeddingsAdded(int(fields[0]), int(fields[1]), runs)
        numbers = [int(f) for f in fields]
    except ValueError:
        raise ValueError(f"not a shared change: {payload[:80]!r}") from None
    if kind == "target":
        if numbers[1] not in (0, 1):
            raise ValueError(f"not a shared change: {payload[:80]!r}")
        return TargetChanged(numbers[0], bool(numbers[1]))
    if kind == "label":
        return Labelled(numbers[0])
    if kind == "merged":
        return Merged(*numbers)
    if kind == "split":
        return Split(*numbers)
    if kind == "purged":
        return Purged(numbers[0])
    return Regrouped(*numbers)
