"""Cross-camera identity matching: per-camera tracks -> global identities.

Every identity keeps a gallery of its best embeddings. A track that needs an identity is compared
with all galleries (cosine similarity, mean of the best three gallery matches); within one camera
and frame the assignment is solved jointly with the Hungarian algorithm, so two people visible at
the same time in the same camera never share an identity. Below the threshold a new identity is
created, with an id from ``allocate_id`` (the database's, so two processes never hand out the same one).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_FORBIDDEN = -1.0e3


@dataclass
class Identity:
    """A person known to the system. ``gallery`` rows are L2-normalised embeddings (G x D)."""

    identity_id: int
    gallery: np.ndarray
    qualities: np.ndarray
    cameras: set[str] = field(default_factory=set)
    is_target: bool = False


@dataclass(frozen=True)
class MatchRequest:
    """A track asking for an identity; ``embedding`` is its L2-normalised mean descriptor (D,)."""

    key: Hashable
    embedding: np.ndarray


@dataclass(frozen=True)
class MatchDecision:
    key: Hashable
    identity_id: int
    score: float
    is_new: bool


IdAllocator = Callable[[], int | None]


class IdentityMatcher:
    """``allocate_id`` hands out new identity ids (None: none available now, the track waits); without it
    ids count on from the highest one known, for use without a database."""

    def __init__(self, threshold: float, gallery_size: int = 30, allocate_id: IdAllocator | None = None) -> None:
        self.threshold = threshold
        self.gallery_size = gallery_size
        self.identities: dict[int, Identity] = {}
        self._highest_id = 0
        self._allocate_id: IdAllocator = allocate_id or self._count_up

    def _count_up(self) -> int:
        return self._highest_id + 1

    # -- gallery maintenance ---------------------------------------------------------------------

    def create(self) -> int | None:
        """A new, empty identity; None when no id can be had (the database is failing)."""
        identity_id = self._allocate_id()
        if identity_id is not None:
            self._highest_id = max(self._highest_id, identity_id)
            self.identities[identity_id] = Identity(identity_id, np.zeros((0, 0), np.float32),
                                                    np.zeros(0, np.float32))
        return identity_id

    def restore(self, identity_id: int, embeddings: np.ndarray, is_target: bool = False) -> None:
        """Bring back an identity from storage (its best embeddings) so identities persist over runs."""
        self.identities[identity_id] = Identity(identity_id, np.zeros((0, 0), np.float32), np.zeros(0, np.float32),
                                                is_target=is_target)
        self.add(identity_id, embeddings, np.zeros(len(embeddings), np.float32))
        self._highest_id = max(self._highest_id, identity_id)

    def add(self, identity_id: int, embeddings: np.ndarray, qualities: np.ndarray, camera: str | None = None) -> None:
        """Add embeddings to an identity's gallery, keeping the highest-quality ``gallery_size`` rows."""
        identity = self.identities[identity_id]
        if camera is not None:
            identity.cameras.add(camera)
        if len(embeddings) == 0:
            return
        gallery = embeddings if identity.gallery.size == 0 else np.vstack([identity.gallery, embeddings])
        qualities = np.concatenate([identity.qualities, np.asarray(qualities, np.float32)])
        if len(gallery) > self.gallery_size:
            # the newest rows win ties, so the gallery follows gradual changes (light, pose)
            order = np.lexsort((np.arange(len(qualities)), qualities))[::-1][: self.gallery_size]
            gallery, qualities = gallery[np.sort(order)], qualities[np.sort(order)]
        identity.gallery, identity.qualities = gallery.astype(np.float32), qualities.astype(np.float32)

    def merge(self, keep: int, drop: int) -> None:
        """The operator says ``drop`` is ``keep``: one identity with both galleries from now on."""
        dropped = self.identities.pop(drop, None)
        if dropped is None:
            return
        if keep not in self.identities:
            self.identities[keep] = Identity(keep, np.zeros((0, 0), np.float32), np.zeros(0, np.float32))
        kept = self.identities[keep]
        kept.is_target = kept.is_target or dropped.is_target
        kept.cameras |= dropped.cameras
        if dropped.gallery.size:
            self.add(keep, dropped.gallery, dropped.qualities)

    def replace_gallery(self, identity_id: int, embeddings: np.ndarray) -> None:
        """Rebuild one identity's gallery (after a wrong track was split off it); empty removes it."""
        if len(embeddings) == 0:
            self.identities.pop(identity_id, None)
            return
        is_target = identity_id in self.identities and self.identities[identity_id].is_target
        self.restore(identity_id, embeddings, is_target)

    def set_target(self, identity_id: int, is_target: bool = True) -> None:
        self.identities[identity_id].is_target = is_target

    @property
    def targets(self) -> set[int]:
        return {i for i, identity in self.identities.items() if identity.is_target}

    # -- matching --------------------------------------------------------------------------------

    def similarities(self, embeddings: np.ndarray, identity_ids: Sequence[int]) -> np.ndarray:
        """M x K similarity of M descriptors to K identities: mean of each gallery's 3 best cosines."""
        out = np.full((len(embeddings), len(identity_ids)), _FORBIDDEN, dtype=np.float32)
        for col, identity_id in enumerate(identity_ids):
            gallery = self.identities[identity_id].gallery
            if gallery.size == 0:
                continue
            cos = embeddings @ gallery.T
            top = min(3, cos.shape[1])
            out[:, col] = np.sort(cos, axis=1)[:, -top:].mean(axis=1)
        return out

    def assign(self, requests: Sequence[MatchRequest], busy: Iterable[int] = ()) -> list[MatchDecision]:
        """Identities for tracks of one camera and frame; ``busy`` identities are held by other tracks there.

        A request that needs a new identity when no id can be had gets no decision (it asks again later).
        """
        if not requests:
            return []
        busy = set(busy)
        identity_ids = [i for i in self.identities if i not in busy and self.identities[i].gallery.size]
        decisions: dict[Hashable, MatchDecision] = {}
        if identity_ids:
            sims = self.similarities(np.stack([r.embedding for r in requests]), identity_ids)
            rows, cols = linear_sum_assignment(-sims)
            for row, col in zip(rows, cols, strict=True):
                score = float(sims[row, col])
                if score >= self.threshold:
                    key = requests[row].key
                    decisions[key] = MatchDecision(key, identity_ids[col], score, is_new=False)
        out = []
        for request in requests:
            decision = decisions.get(request.key)
            if decision is None:
                new_id = self.create()
                if new_id is None:
                    continue
                decision = MatchDecision(request.key, new_id, 1.0, is_new=True)
            out.append(decision)
        return out
