"""Cross-camera identity matching: per-camera tracks -> global identities, at a cost that does not grow
with history.

The matcher holds a bounded *working set*: the identities seen most recently (up to
``active_limit``), plus every target and named person (pinned). Each keeps a gallery of its
``gallery_size`` best embeddings in one preallocated bank, so a frame's tracks are compared with the
whole working set in one matrix product. A track that matches nobody there is looked up in the
*directory* (the store's vector index over every stored embedding): identities found there are
brought back into the working set and compared exactly, so a person who returns after days is still
recognised while memory stays that of the working set. The look-up runs in a background thread and
its answer is taken when the track asks again (the next frame, for a track without an identity), so
the engine's cost per frame does not depend on how much history the index holds; a track that is
waiting for its look-up gets no decision yet.

Similarity to an identity is the mean of the three best cosines against its gallery. Within one
camera and frame the assignment is solved jointly with the Hungarian algorithm, so two people visible
at the same time in the same camera never share an identity; an identity seen in another camera a
moment ago is not offered either, unless the cameras overlap (:mod:`~reid_desktop.core.topology`).
Below the threshold a new identity is created, with an id from ``allocate_id`` (the database's, so two
processes never hand out the same one).

A decision is not final: the caller asks again while a track is tentative (see the pipeline), and
a request that ``holds`` an identity created for it keeps that one when nothing else matches.

On a shared database other processes' identities come into the working set as they see them
(:meth:`IdentityMatcher.learn`). Two nodes that see one new person at the same moment each make an identity
and each then finds the other's: of two such new identities the one created first (then the lower id) is
kept, and only a track holding the later one moves, so both nodes settle on the same identity instead of
trading places.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from reid_desktop.core.identity.camera_transitions import LinkEvidence
from reid_desktop.core.topology import CameraLinks

log = logging.getLogger(__name__)
_FORBIDDEN = -1.0e3
_EMPTY = -np.inf
TOP_COSINES = 3
DIRECTORY_CANDIDATES = 10  # nearest stored embeddings looked up per unmatched track
RECALL_MARGIN = 0.05  # the index's 8-bit codes approximate cosines; this much below the threshold still counts
LOOKUPS_KEPT = 1024  # answers waiting for their track to ask again (a track that ended leaves one behind)
LINK_EVIDENCE_CAP = 2.0  # the learned camera links move a score by at most link_prior times this


class IdentityDirectory(Protocol):
    """Where identities that left the working set are found again (the store and its vector index)."""

    def nearest(self, embeddings: np.ndarray, k: int, min_score: float) -> list[list[int]]:
        """Per embedding, the ids of its ``k`` nearest stored embeddings that score at least ``min_score``,
        nearest first. Called from the look-up thread."""
        ...

    def owners(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        """The identity each stored embedding belongs to now (operator edits included)."""
        ...

    def __len__(self) -> int:
        """Stored embeddings it searches (none: nothing to look up, no track waits)."""
        ...

    def gallery(self, identity_id: int) -> np.ndarray:
        """An identity's best stored embeddings (n x D); empty when it has none for this model."""
        ...


@dataclass(frozen=True)
class Identity:
    """A person in the working set: ``gallery`` rows are L2-normalised embeddings (a view of the bank)."""

    identity_id: int
    gallery: np.ndarray
    qualities: np.ndarray
    is_target: bool


@dataclass(frozen=True)
class MatchRequest:
    """A track asking for an identity; ``embedding`` is its L2-normalised mean descriptor (D,).

    ``holds``: the identity created for this track when it was first asked about. Its gallery is the track's
    own crops, so it is not a candidate when the track asks again with better crops; it is kept (rather
    than another new one made) when the track still matches nobody else.
    """

    key: Hashable
    embedding: np.ndarray
    holds: int | None = None


@dataclass(frozen=True)
class MatchDecision:
    key: Hashable
    identity_id: int
    score: float
    is_new: bool


IdAllocator = Callable[[], int | None]


@dataclass
class _Member:
    slot: int
    is_target: bool = False
    seen_at: dict[str, float] = field(default_factory=dict)  # camera -> last time a sure track showed it
    last: tuple[str, float] | None = None  # the camera and moment a sure track showed it last
    created: float | None = None  # when it was made (by this matcher or, for a remote one, another process)
    remote: bool = False  # made by another process on the shared history


class _Bank:
    """Galleries of the working set: ``slots`` x ``gallery_size`` x ``dim`` float32, grown on demand
    (the working set's limit bounds it), with each row's crop quality and age for replacement."""

    def __init__(self, gallery_size: int) -> None:
        self.gallery_size = gallery_size
        self.vectors = np.zeros((0, gallery_size, 0), np.float32)
        self.quality = np.full((0, gallery_size), _EMPTY, np.float32)
        self.age = np.zeros((0, gallery_size), np.int64)
        self._clock = 0
        self.free: list[int] = []

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[2])

    def take(self) -> int:
        if not self.free:
            grown = max(8, 2 * len(self.vectors))
            old = len(self.vectors)
            self.vectors = np.concatenate([self.vectors, np.zeros((grown - old, self.gallery_size, self.dim),
                                                                  np.float32)])
            self.quality = np.concatenate([self.quality, np.full((grown - old, self.gallery_size), _EMPTY,
                                                                 np.float32)])
            self.age = np.concatenate([self.age, np.zeros((grown - old, self.gallery_size), np.int64)])
            self.free = list(range(grown - 1, old - 1, -1))
        return self.free.pop()

    def release(self, slot: int) -> None:
        self.quality[slot] = _EMPTY
        self.vectors[slot] = 0.0
        self.free.append(slot)

    def add(self, slot: int, embeddings: np.ndarray, qualities: np.ndarray) -> None:
        """Keep the best ``gallery_size`` rows by quality; a new row replaces the worst (the oldest among
        equals) when at least as good, so the gallery follows gradual changes (light, pose)."""
        if self.dim == 0:
            self.vectors = np.zeros((len(self.vectors), self.gallery_size, embeddings.shape[1]), np.float32)
        elif embeddings.shape[1] != self.dim:
            raise ValueError(f"embedding has {embeddings.shape[1]} dimensions; the gallery holds {self.dim}")
        for vector, quality in zip(embeddings, qualities, strict=True):
            row = self.quality[slot]
            worst = int(np.lexsort((self.age[slot], row))[0])
            if quality >= row[worst]:
                self._clock += 1
                self.vectors[slot, worst], row[worst], self.age[slot, worst] = vector, quality, self._clock

    def filled(self, slot: int) -> np.ndarray:
        return np.flatnonzero(self.quality[slot] > _EMPTY)


class IdentityMatcher:
    """``allocate_id`` hands out new identity ids (None: none available now, the track waits); without it
    ids count on from the highest one known, for use without a database. Without a ``directory``, an
    identity that leaves the working set is not recognised again (no database: nothing to look it up in)."""

    def __init__(self, threshold: float, gallery_size: int = 8, allocate_id: IdAllocator | None = None,
                 active_limit: int = 256, directory: IdentityDirectory | None = None,
                 links: CameraLinks | None = None, link_prior: float = 0.0) -> None:
        self.threshold = threshold
        self.links = links or CameraLinks()
        self.link_prior = link_prior
        self.evidence: LinkEvidence | None = None  # learned camera links (identity/camera_transitions.py), if known
        self.gallery_size = gallery_size
        self.active_limit = active_limit
        self.directory = directory
        self._members: OrderedDict[int, _Member] = OrderedDict()  # least recently seen first
        self._pinned: set[int] = set()  # members that never leave: targets and named people
        self._bank = _Bank(gallery_size)
        self._highest_id = 0
        self._allocate_id: IdAllocator = allocate_id or self._count_up
        self.recalled = 0  # identities brought back from the directory (a person returning after a while)
        self.directory_failing = False  # the last recall could not reach the history (said once per outage)
        self._lookups: OrderedDict[Hashable, tuple[Future[list[list[int]]], int]] = OrderedDict()
        self._lookup_thread: ThreadPoolExecutor | None = None

    def withdraw(self, key: Hashable) -> None:
        """The track ended: an answer still waiting for it is dropped."""
        self._drop_answer(key)

    def _drop_answer(self, key: Hashable) -> None:
        """Forget the answer waiting for ``key``; a search that no track waits for any more is not run."""
        pending = self._lookups.pop(key, None)
        if pending is not None and all(future is not pending[0] for future, _ in self._lookups.values()):
            pending[0].cancel()  # only takes effect while it is still queued

    def close(self) -> None:
        """Stop the look-up thread (look-ups not yet taken are dropped)."""
        if self._lookup_thread is not None:
            self._lookup_thread.shutdown(wait=True, cancel_futures=True)
            self._lookup_thread = None
        self._lookups.clear()

    def _count_up(self) -> int:
        return self._highest_id + 1

    # -- the working set ---------------------------------------------------------------------------

    @property
    def identities(self) -> Mapping[int, Identity]:
        """The working set (a snapshot): each identity's filled gallery rows."""
        out = {}
        for identity_id, member in self._members.items():
            rows = self._bank.filled(member.slot)
            out[identity_id] = Identity(identity_id, self._bank.vectors[member.slot, rows],
                                        self._bank.quality[member.slot, rows], member.is_target)
        return out

    def __contains__(self, identity_id: int) -> bool:
        return identity_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    @property
    def memory_bytes(self) -> int:
        """What the working set's galleries take (it is the matcher's memory; the directory is the store's)."""
        return int(self._bank.vectors.nbytes + self._bank.quality.nbytes + self._bank.age.nbytes)

    def _enter(self, identity_id: int, is_target: bool = False, pinned: bool = False) -> _Member:
        member = self._members.get(identity_id)
        if member is None:
            self._evict(room_for=0 if pinned or is_target else 1)  # first, so the bank never outgrows the limit
            member = self._members[identity_id] = _Member(self._bank.take(), is_target)
            if pinned or is_target:
                self._pinned.add(identity_id)
        self._members.move_to_end(identity_id)
        self._highest_id = max(self._highest_id, identity_id)
        return member

    def _evict(self, room_for: int) -> None:
        """Drop the least recently seen identities so ``room_for`` more fit in ``active_limit``; pinned ones stay."""
        excess = len(self._members) - len(self._pinned) + room_for - self.active_limit
        if excess > 0:
            for identity_id in list(islice((i for i in self._members if i not in self._pinned), excess)):
                self._bank.release(self._members.pop(identity_id).slot)

    def forget(self, identity_id: int) -> None:
        member = self._members.pop(identity_id, None)
        self._pinned.discard(identity_id)
        if member is not None:
            self._bank.release(member.slot)

    # -- gallery maintenance ---------------------------------------------------------------------

    def create(self, created: float | None = None) -> int | None:
        """A new, empty identity made at ``created`` (the frame's time); None when no id can be had (the
        database is failing)."""
        identity_id = self._allocate_id()
        if identity_id is not None:
            self._enter(identity_id).created = created
        return identity_id

    def learn(self, identity_id: int, embeddings: np.ndarray, qualities: np.ndarray, created: float | None,
              seen: Mapping[str, float]) -> None:
        """Another process on the shared history saw this identity: its new embeddings join the gallery (the
        identity enters the working set as just seen), with the cameras and times it was seen at and, for one
        not known here yet, when it was made there."""
        known = identity_id in self._members
        self.add(identity_id, embeddings, qualities)
        member = self._members[identity_id]
        if not known:
            member.created, member.remote = created, True
        for camera, at in seen.items():
            self.seen(identity_id, camera, at)

    def _yields_to(self, held: int, candidate: int) -> bool:
        """May a track holding its new identity ``held`` move to ``candidate``? Not to a remote identity made
        after it: that one's track moves here instead (see the module's docstring)."""
        mine, other = self._members.get(held), self._members[candidate]
        if mine is None or not other.remote or mine.created is None or other.created is None:
            return True
        return (other.created, candidate) < (mine.created, held)

    def restore(self, identity_id: int, embeddings: np.ndarray, is_target: bool = False, pinned: bool = False) -> None:
        """Bring back an identity from storage (its best embeddings) into the working set."""
        self.forget(identity_id)
        self._enter(identity_id, is_target, pinned)
        self.add(identity_id, embeddings, np.zeros(len(embeddings), np.float32))

    def add(self, identity_id: int, embeddings: np.ndarray, qualities: np.ndarray) -> None:
        """Add embeddings to an identity's gallery (it counts as just seen)."""
        member = self._enter(identity_id)
        if len(embeddings):
            self._bank.add(member.slot, np.asarray(embeddings, np.float32), np.asarray(qualities, np.float32))

    def merge(self, keep: int, drop: int) -> None:
        """The operator says ``drop`` is ``keep``: one identity with both galleries from now on."""
        dropped = self._members.get(drop)
        if dropped is None:
            return
        rows = self._bank.filled(dropped.slot)
        vectors = self._bank.vectors[dropped.slot, rows].copy()
        qualities = self._bank.quality[dropped.slot, rows].copy()
        was_pinned = drop in self._pinned
        self.forget(drop)
        kept = self._enter(keep)
        kept.is_target = kept.is_target or dropped.is_target
        if was_pinned:
            self._pinned.add(keep)
        for camera, at in dropped.seen_at.items():
            kept.seen_at[camera] = max(at, kept.seen_at.get(camera, at))
        if len(vectors):
            self._bank.add(kept.slot, vectors, qualities)

    def replace_gallery(self, identity_id: int, embeddings: np.ndarray) -> None:
        """Rebuild one identity's gallery (after a wrong track was split off it); empty removes it."""
        member = self._members.get(identity_id)
        if len(embeddings) == 0:
            self.forget(identity_id)
            return
        self.restore(identity_id, embeddings, member is not None and member.is_target,
                     identity_id in self._pinned)

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        member = self._members.get(identity_id)
        if member is None and is_target and self.directory is not None:
            self.restore(identity_id, self.directory.gallery(identity_id), is_target=True)
            return
        if member is not None:
            member.is_target = is_target
            if is_target:
                self._pinned.add(identity_id)
            else:
                self._pinned.discard(identity_id)

    def pin(self, identity_id: int) -> None:
        """Keep an operator-named person in the working set for good."""
        if identity_id in self._members:
            self._pinned.add(identity_id)

    def seen(self, identity_id: int, camera: str, timestamp: float) -> None:
        """A track that surely is this person (committed, or the one it was made for) shows them in ``camera``."""
        member = self._members.get(identity_id)
        if member is not None:
            member.seen_at[camera] = max(timestamp, member.seen_at.get(camera, timestamp))
            if member.last is None or timestamp >= member.last[1]:
                member.last = (camera, timestamp)

    def _link_bonus(self, identity_ids: Sequence[int], camera: str, timestamp: float) -> np.ndarray:
        """What the learned camera links say of each identity appearing in ``camera`` at ``timestamp``, given where
        and when it was last seen (a prior: it moves the score, it never forbids)."""
        evidence = self.evidence
        bonus = np.zeros(len(identity_ids), np.float32)
        if evidence is None or not self.link_prior:
            return bonus
        for col, identity_id in enumerate(identity_ids):
            last = self._members[identity_id].last
            if last is not None:
                found = evidence.evidence(last[0], camera, max(timestamp - last[1], 0.0))
                bonus[col] = self.link_prior * float(np.clip(found, -LINK_EVIDENCE_CAP, LINK_EVIDENCE_CAP))
        return bonus

    def _impossible(self, identity_ids: Sequence[int], camera: str, timestamp: float) -> np.ndarray:
        """Which of these identities cannot be in ``camera`` at ``timestamp`` (seen elsewhere just now)."""
        possible = self.links.possible
        return np.fromiter((any(not possible(seen_in, at, camera, timestamp)
                                for seen_in, at in self._members[i].seen_at.items() if seen_in != camera)
                            for i in identity_ids), bool, len(identity_ids))

    @property
    def targets(self) -> set[int]:
        return {i for i, m in self._members.items() if m.is_target}

    # -- matching --------------------------------------------------------------------------------

    def similarities(self, embeddings: np.ndarray, identity_ids: Sequence[int]) -> np.ndarray:
        """M x K similarity of M descriptors to K working-set identities: mean of each gallery's best cosines."""
        if not identity_ids or self._bank.dim == 0:
            return np.full((len(embeddings), len(identity_ids)), _FORBIDDEN, np.float32)
        slots = np.fromiter((self._members[i].slot for i in identity_ids), np.int64, len(identity_ids))
        bank, queries = self._bank, np.asarray(embeddings, np.float32)
        if 4 * len(slots) < len(bank.vectors):  # a few (just recalled): copy their galleries out
            cos = (queries @ bank.vectors[slots].reshape(-1, bank.dim).T).reshape(
                len(queries), len(slots), bank.gallery_size)
        else:  # most of the working set: one product with the whole bank, then its slots
            cos = (queries @ bank.vectors.reshape(-1, bank.dim).T).reshape(
                len(queries), len(bank.vectors), bank.gallery_size)[:, slots]
        cos = np.where(bank.quality[slots] > _EMPTY, cos, -np.inf)  # empty rows never count
        top = -np.sort(-cos, axis=2)[:, :, :TOP_COSINES]
        valid = np.isfinite(top)
        counts = valid.sum(axis=2)
        out = np.where(valid, top, 0.0).sum(axis=2) / np.maximum(counts, 1)
        return np.where(counts > 0, out, _FORBIDDEN).astype(np.float32)

    def _look_up(self, keys: Sequence[Hashable], embeddings: np.ndarray) -> None:
        """Ask the directory, in the look-up thread, for the stored embeddings nearest these descriptors."""
        assert self.directory is not None
        if self._lookup_thread is None:
            self._lookup_thread = ThreadPoolExecutor(1, thread_name_prefix="identity-lookup")
        # the mean of an identity's best cosines never beats its best one: weaker hits cannot match
        future = self._lookup_thread.submit(self.directory.nearest, embeddings.copy(), DIRECTORY_CANDIDATES,
                                            self.threshold - RECALL_MARGIN)
        for row, key in enumerate(keys):
            self._drop_answer(key)
            self._lookups[key] = (future, row)
        while len(self._lookups) > LOOKUPS_KEPT:
            self._drop_answer(next(iter(self._lookups)))

    def _answers(self, keys: Sequence[Hashable]) -> tuple[list[int], list[Hashable]]:
        """Embedding ids found for those of ``keys`` that were looked up before (waiting for an answer still
        running: the engine asks again a frame later, so this is rare and short), and the keys never looked up."""
        found: list[int] = []
        new: list[Hashable] = []
        for key in keys:
            pending = self._lookups.pop(key, None)
            if pending is None:
                new.append(key)
                continue
            future, row = pending
            try:
                found.extend(future.result()[row])
            except Exception:  # the directory failed (a damaged index): the track is decided without it
                log.exception("identity look-up failed")
        return found, new

    def _recall(self, embedding_ids: list[int], exclude: set[int], dim: int) -> list[int]:
        """Bring the identities owning these stored embeddings into the working set; returns them."""
        assert self.directory is not None
        recalled: list[int] = []
        try:
            owners = self.directory.owners(embedding_ids) if embedding_ids else {}
            wanted: list[int] = []
            for embedding_id in embedding_ids:
                owner = owners.get(embedding_id)
                if owner is not None and owner not in self._members and owner not in exclude and owner not in wanted:
                    wanted.append(owner)
            for identity_id in wanted[: self.active_limit // 2]:
                gallery = self.directory.gallery(identity_id)
                if len(gallery) and gallery.shape[1] == dim:
                    self.restore(identity_id, gallery)
                    recalled.append(identity_id)
        except Exception as exc:  # the history is out of reach (a database outage): decide with the working set
            if not self.directory_failing:
                log.warning("stored identities cannot be recalled (%s: %s); deciding with those in memory until "
                            "the history is back", type(exc).__name__, exc)
            self.directory_failing = True
        else:
            if self.directory_failing:
                log.warning("stored identities can be recalled again")
            self.directory_failing = False
        self.recalled += len(recalled)
        return recalled

    def assign(self, requests: Sequence[MatchRequest], busy: Iterable[int] = (), camera: str | None = None,
               timestamp: float = 0.0) -> list[MatchDecision]:
        """Identities for tracks of one camera and frame; ``busy`` identities are held by other tracks there.
        With ``camera``, identities seen in other cameras too recently to be here at ``timestamp`` are left out.

        A request gets no decision (it asks again later) while its directory look-up is under way, and when
        it needs a new identity and no id can be had.
        """
        if not requests:
            return []
        busy = set(busy) | {r.holds for r in requests if r.holds is not None}
        embeddings = np.stack([r.embedding for r in requests]).astype(np.float32)
        identity_ids = [i for i in self._members if i not in busy]
        sims = self.similarities(embeddings, identity_ids)
        if camera is not None and identity_ids:
            sims += self._link_bonus(identity_ids, camera, timestamp)[None, :]
            sims[:, self._impossible(identity_ids, camera, timestamp)] = _FORBIDDEN
        remote = [col for col, i in enumerate(identity_ids) if self._members[i].remote]
        for row, request in enumerate(requests):
            held = request.holds
            if held is not None and remote:
                sims[row, [c for c in remote if not self._yields_to(held, identity_ids[c])]] = _FORBIDDEN
        unmatched = sims.max(axis=1, initial=_FORBIDDEN) < self.threshold
        waiting: set[Hashable] = set()
        if self.directory is not None and len(self.directory) and unmatched.any():
            found, new = self._answers([r.key for r, u in zip(requests, unmatched, strict=True) if u])
            if new:
                waiting = set(new)
                self._look_up(new, embeddings[[r.key in waiting for r in requests]])
            recalled = self._recall(found, busy, embeddings.shape[1])
            if recalled:  # those evicted to make room are no longer offered
                kept = [c for c, i in enumerate(identity_ids) if i in self._members]
                identity_ids = [identity_ids[c] for c in kept] + recalled
                sims = np.hstack([sims[:, kept], self.similarities(embeddings, recalled)])
        decisions: dict[Hashable, MatchDecision] = {}
        if identity_ids:
            rows, cols = linear_sum_assignment(-sims)
            for row, col in zip(rows, cols, strict=True):
                score = float(sims[row, col])
                if score >= self.threshold:
                    key = requests[row].key
                    decisions[key] = MatchDecision(key, identity_ids[col], score, is_new=False)
        out = []
        for request in requests:
            decision = decisions.get(request.key)
            if decision is None and request.key in waiting:
                continue
            if decision is None and request.holds is not None:
                decision = MatchDecision(request.key, request.holds, 1.0, is_new=False)
                self._enter(request.holds)
            elif decision is None:
                new_id = self.create(timestamp)
                if new_id is None:
                    continue
                decision = MatchDecision(request.key, new_id, 1.0, is_new=True)
            else:
                self._members.move_to_end(decision.identity_id)
            out.append(decision)
        return out
