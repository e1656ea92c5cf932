"""Global re-association: every few seconds the tracklets of a sliding window are grouped again, jointly, and the
identities the engine gave them one track at a time are corrected where the whole picture says otherwise.

The engine decides a track's identity when it begins, from its first crops; the window sees every track whole:
its mean appearance over all its crops, where and when it began and ended. A track is joined to an earlier one
(its predecessor) when

- the learned camera links (identity/camera_transitions.py) support the gap between them: the earlier track was last
  seen as long before the later one began as people take for that walk, or the cameras overlap and the earlier
  one is visible when the later one begins;
- their appearances are alike: cosine at least the pass's threshold, the median of the best score each track
  reaches with another track seen at the same time in its camera (two people, certainly): "more alike than the
  person beside them usually is"; or, in cameras that overlap, the later track walks where the learned ground map
  puts the earlier one at the same moments, however unlike two cameras make them look;
- nothing forbids it: two tracks seen at the same moment in one camera, or in two cameras that do not overlap,
  are two people; so are two tracks of overlapping cameras that the ground map puts far apart while both are
  seen, and tracks the operator gave different identities.

Joins are made best first, each track with at most one predecessor and one successor, into chains: one chain, one
person. Joins that only appearance would support are not made: on the demo clip's cuts every rule tried for them
(up to above the best score of people seen together) merged different people more often than it found the same
one (bench/RESULTS.md); people who come back after a long time are recognised by the engine's matcher as before.

Each chain then takes the identity most of its tracks already hold (an assignment over all chains, so two chains
never take one identity and the numbers stay stable from pass to pass); a chain holding a track the operator
decided takes that track's identity; a chain that finds none gets a new one. What differs is corrected through the
store's correction path (audited, timeline and exports follow) by the engine, between frames. Operator decisions
are never changed. The work runs in a thread of its own on a copy of the window; the engine never waits for it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from reid_desktop.core.identity.camera_transitions import (
    PLACE_TOLERANCE,
    PLACES_PER_PAIR,
    SUPPORT,
    CameraTransitions,
    LinkEvidence,
    LinkSuggestion,
)
from reid_desktop.core.identity.tracklets import TrackletView
from reid_desktop.core.store.interface import TrackKey
from reid_desktop.core.topology import CameraLinks

log = logging.getLogger(__name__)

MIN_SIGHTINGS = 3  # shorter tracks are left as the engine decided (too little to go on)
MIN_TOGETHER = 10  # scores of people seen together a pass needs to set its own threshold
MIN_SHARED_POINTS = 2  # moments two overlapping cameras' tracks must share before their places are compared
APART = 3  # tracks of overlapping cameras this many place tolerances apart while both are seen are two people
LEARNED_KEPT = 20_000  # tracks already noted for the camera links (so each is noted once)


@dataclass(frozen=True)
class ReassociationSettings:
    window_s: float = 600.0
    interval_s: float = 5.0
    horizon_s: float = 60.0  # longest walk between cameras the links learn
    quantile: float = 0.5  # of the best scores of people seen together: the pass's appearance threshold
    max_tracklets: int = 2000
    place_links: bool = True  # overlapping cameras: learn a ground map and link by place


@dataclass(frozen=True)
class Reassignment:
    """A track's identity changes: to ``identity_id``, or (None) to a new identity shared by its ``group``."""

    key: Hashable
    track: TrackKey
    identity_id: int | None
    previous: int
    group: int
    score: float | None


@dataclass(frozen=True)
class ReassociationResult:
    reassignments: tuple[Reassignment, ...]
    threshold: float
    evidence: LinkEvidence
    suggestions: tuple[LinkSuggestion, ...]
    tracklets: int
    chains: int


@dataclass
class _Pairs:
    """Pairwise relations of one pass's tracklets (n x n), earlier (row) to later (column)."""

    likeness: np.ndarray
    gap: np.ndarray
    forbidden: np.ndarray
    together: np.ndarray  # cross-camera, seen at the same moment
    follows: np.ndarray  # the column began after the row, within the horizon, and may be its continuation


def _pairs(views: Sequence[TrackletView], links: CameraLinks, horizon_s: float) -> _Pairs:
    start = np.array([v.start for v in views])
    end = np.array([v.end for v in views])
    cameras = np.array([v.camera for v in views], dtype=object)
    descriptors = np.stack([v.descriptor for v in views]).astype(np.float32)
    same_camera = cameras[:, None] == cameras[None, :]
    overlapping = np.array([[frozenset((a, b)) in links.overlapping for b in cameras] for a in cameras]) \
        if links.overlapping else np.zeros(same_camera.shape, bool)
    shared_time = np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :])
    apart = ~same_camera & ~overlapping  # two places: one person cannot be in both at once
    forbidden = (same_camera & (shared_time >= 0)) | (apart & (shared_time > -links.same_moment_s))
    locked = [(i, v.identity_id) for i, v in enumerate(views) if v.locked]
    for a, (i, x) in enumerate(locked):  # the operator said these are different people
        for j, y in locked[a + 1:]:
            if x != y:
                forbidden[i, j] = forbidden[j, i] = True
    np.fill_diagonal(forbidden, True)
    gap = np.maximum(start[None, :] - end[:, None], 0.0)
    later = (start[None, :] > start[:, None]) | ((start[None, :] == start[:, None])
                                                 & (np.arange(len(views))[None, :] > np.arange(len(views))[:, None]))
    follows = later & ~forbidden & (start[None, :] - end[:, None] <= horizon_s)
    together = ~same_camera & (shared_time >= -links.same_moment_s)
    return _Pairs(descriptors @ descriptors.T, gap, forbidden, together, follows)


def own_threshold(views: Sequence[TrackletView], pairs: _Pairs, quantile: float) -> float | None:
    """The ``quantile`` of each track's best score with another track seen at the same moment in its camera."""
    cameras = np.array([v.camera for v in views], dtype=object)
    with_others = pairs.forbidden & (cameras[:, None] == cameras[None, :])
    np.fill_diagonal(with_others, False)
    best = np.where(with_others, pairs.likeness, -np.inf).max(axis=1, initial=-np.inf)
    best = best[np.isfinite(best)]
    return float(np.quantile(best, quantile)) if len(best) >= MIN_TOGETHER else None


class _Chains:
    """Tracks joined into chains: each at most one predecessor and one successor, no forbidden pair in a chain."""

    def __init__(self, size: int, forbidden: np.ndarray) -> None:
        self.forbidden = forbidden
        self.chain_of = list(range(size))
        self.members: dict[int, list[int]] = {i: [i] for i in range(size)}
        self.has_successor: set[int] = set()
        self.has_predecessor: set[int] = set()
        self.link_score: dict[int, float] = {}

    def join(self, earlier: int, later: int, score: float) -> bool:
        if earlier in self.has_successor or later in self.has_predecessor:
            return False
        a, b = self.chain_of[earlier], self.chain_of[later]
        if a == b or self.forbidden[np.ix_(self.members[a], self.members[b])].any():
            return False
        self.has_successor.add(earlier)
        self.has_predecessor.add(later)
        self.members[a] += self.members.pop(b)
        for member in self.members[a]:
            self.chain_of[member] = a
        self.link_score[later] = self.link_score[earlier] = max(score, self.link_score.get(earlier, -1.0))
        return True


def associate(views: Sequence[TrackletView], evidence: LinkEvidence, threshold: float,
              pairs: _Pairs | None = None) -> tuple[list[Reassignment], int]:
    """The window's tracks grouped into chains (see the module's docstring) and the identity changes that follow;
    also the number of chains."""
    if not views:
        return [], 0
    pairs = pairs or _pairs(views, evidence.links, evidence.horizon_s)
    supported = np.zeros_like(pairs.follows)
    rows, cols = np.nonzero(pairs.follows & (pairs.likeness >= threshold))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        supported[i, j] = evidence.evidence(views[i].camera, views[j].camera, float(pairs.gap[i, j])) >= SUPPORT
    placed = np.zeros_like(pairs.follows)
    forbidden = pairs.forbidden
    if evidence.ground:
        forbidden = forbidden.copy()
        rows, cols = np.nonzero(np.triu(pairs.together & ~forbidden))
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            distance = place_distance(views[i], views[j], evidence)
            if distance is None:
                continue
            placed[i, j] = pairs.follows[i, j] and distance <= PLACE_TOLERANCE
            placed[j, i] = pairs.follows[j, i] and distance <= PLACE_TOLERANCE
            if distance > APART * PLACE_TOLERANCE:  # at one moment in two places: two people
                forbidden[i, j] = forbidden[j, i] = True
    chains = _Chains(len(views), forbidden)
    rows, cols = np.nonzero((supported | placed) & ~forbidden)
    for order in np.lexsort((-pairs.likeness[rows, cols], ~placed[rows, cols])):  # placed first, then most alike
        chains.join(int(rows[order]), int(cols[order]), float(pairs.likeness[rows[order], cols[order]]))
    return _identities(views, chains, evidence), len(chains.members)


def place_distance(one: TrackletView, other: TrackletView, evidence: LinkEvidence) -> float | None:
    """How far apart two tracks of overlapping cameras walk while both are seen: the median, over the moments the
    later one kept while the earlier one was seen, of the distance between its place and the place the ground map
    gives for the earlier one (share of the picture); None without a map or without :data:`MIN_SHARED_POINTS`
    such moments."""
    earlier, later = sorted((one, other), key=lambda v: v.start)
    shared = later.path[later.path[:, 0] <= earlier.end + evidence.links.same_moment_s]
    if len(shared) < MIN_SHARED_POINTS:
        return None
    distances = [evidence.distance((earlier.camera, earlier.position_at(moment)), (later.camera, (x, y)))
                 for moment, x, y in shared]
    if None in distances:
        return None
    return float(np.median(np.asarray(distances, np.float64)))


def _unknowable(earlier: Sequence[TrackletView], later: Sequence[TrackletView], evidence: LinkEvidence) -> bool:
    """Can the window not tell whether chain ``later`` continues chain ``earlier``: it begins after the other ended,
    after a longer walk than the links consider or between cameras whose links are not learned yet?"""
    tail = max(earlier, key=lambda v: v.end)
    head = min(later, key=lambda v: v.start)
    if head.start <= tail.end:
        return False  # interleaved: had one continued the other, the pass would have joined them
    return head.start - tail.end > evidence.horizon_s or (tail.camera, head.camera) not in evidence.tables


def _may_share(views: Sequence[TrackletView], one: list[int], other: list[int], forbidden: np.ndarray,
               evidence: LinkEvidence) -> bool:
    """May these two chains keep one identity: nothing forbids it and the window cannot tell?"""
    if forbidden[np.ix_(one, other)].any():
        return False
    first, second = sorted(([views[m] for m in one], [views[m] for m in other]), key=lambda c: min(v.start for v in c))
    return _unknowable(first, second, evidence)


def _identities(views: Sequence[TrackletView], chains: _Chains, evidence: LinkEvidence) -> list[Reassignment]:
    """Each chain's identity and the changes that follow.

    A chain holding a track the operator decided takes that track's identity. Then every identity, oldest first
    (by its first track in the window), stays with the chain of its first track: the person first seen as it
    keeps it. A chain left without one takes, of the identities its tracks hold that nobody took, the one most of
    its sightings hold; else it may share one with another chain where the window cannot tell (one began long
    after the other ended, or between cameras whose links are not learned yet: the engine's matcher linked them
    by appearance); else it gets a new identity.
    """
    groups = list(chains.members.values())
    chain_of = {m: g for g, members in enumerate(groups) for m in members}
    chosen: dict[int, int] = {}
    for g, members in enumerate(groups):
        locked = [i for m in members if views[m].locked and (i := views[m].identity_id) is not None]
        if locked:
            chosen[g] = locked[0]
    first_holder: dict[int, int] = {}
    for m in sorted(range(len(views)), key=lambda m: views[m].start):
        identity = views[m].identity_id
        if identity is not None and identity not in first_holder:
            first_holder[identity] = m
    for identity, m in first_holder.items():
        if chain_of[m] not in chosen and identity not in chosen.values():
            chosen[chain_of[m]] = identity
    for g, members in enumerate(groups):
        if g in chosen:
            continue
        held: collections.Counter[int] = collections.Counter()
        for m in members:
            identity = views[m].identity_id
            if identity is not None:
                held[identity] += views[m].sightings
        unclaimed = [i for i, _ in held.most_common() if i not in chosen.values()]
        if unclaimed:
            chosen[g] = unclaimed[0]
        elif held:
            preferred = held.most_common(1)[0][0]
            holders = [h for h, identity in chosen.items() if identity == preferred]
            if all(_may_share(views, groups[h], members, chains.forbidden, evidence) for h in holders):
                chosen[g] = preferred
    out = []
    for g, members in enumerate(groups):
        identity = chosen.get(g)
        for m in members:
            view = views[m]
            if view.locked or view.identity_id is None or view.identity_id == identity:
                continue
            out.append(Reassignment(view.key, view.track, identity, view.identity_id, g,
                                    chains.link_score.get(m)))
    return out


class Reassociator:
    """Runs passes in a background thread; the engine submits a copy of its window and takes the answer when ready.

    ``evidence`` is the newest learned camera links, which the engine's matcher uses as a prior for new tracks.
    """

    def __init__(self, settings: ReassociationSettings, links: CameraLinks) -> None:
        self.settings = settings
        self.links = links
        self.evidence = LinkEvidence.empty(links, settings.horizon_s)
        self.suggestions: tuple[LinkSuggestion, ...] = ()
        self.passes = 0
        self._transitions = CameraTransitions(settings.horizon_s)
        self._noted: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
        self._thread: ThreadPoolExecutor | None = None
        self._running: Future[ReassociationResult] | None = None
        self._last_submit = -np.inf

    def due(self, now: float) -> bool:
        """A pass is due (the last one was submitted ``interval_s`` ago and has been taken)."""
        return self._running is None and now - self._last_submit >= self.settings.interval_s

    def submit(self, views: Sequence[TrackletView], fallback_threshold: float, now: float) -> None:
        """Start a pass on ``views`` (a copy of the window); ``fallback_threshold`` until it can set its own."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="reassociation")
        self._last_submit = now
        self._running = self._thread.submit(self._pass, list(views), fallback_threshold, self.links)

    def take(self) -> ReassociationResult | None:
        """The finished pass's result (once), or None while it runs; a pass that failed is logged and skipped."""
        if self._running is None or not self._running.done():
            return None
        running, self._running = self._running, None
        try:
            result = running.result()
        except Exception:
            log.exception("re-association pass failed; the next one tries again")
            return None
        self.evidence, self.suggestions = result.evidence, result.suggestions
        self.passes += 1
        return result

    def settle(self, views: Sequence[TrackletView], fallback_threshold: float) -> ReassociationResult | None:
        """One last pass, waited for (the end of a run); None when there is nothing to do."""
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(Exception):
                self._running.result()
            self._running = None
        self.submit(views, fallback_threshold, float("inf"))
        assert self._running is not None
        self._running.result()
        return self.take()

    def held(self) -> tuple[int, int]:
        """What it keeps between passes, both bounded: (candidate pairs the camera links keep, tracks noted)."""
        return self._transitions.pairs_noted(), len(self._noted)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread = None
        self._running = None

    def _pass(self, views: list[TrackletView], fallback_threshold: float, links: CameraLinks) -> ReassociationResult:
        views = sorted((v for v in views if v.sightings >= MIN_SIGHTINGS), key=lambda v: (v.start, str(v.key)))
        if not views:
            return ReassociationResult((), fallback_threshold, self.evidence, self.suggestions, 0, 0)
        pairs = _pairs(views, links, self.settings.horizon_s)
        threshold = own_threshold(views, pairs, self.settings.quantile)
        threshold = fallback_threshold if threshold is None else threshold
        self._note(views, pairs)
        evidence = self._transitions.evidence(threshold, links, self.settings.place_links)
        reassignments, chains = associate(views, evidence, threshold, pairs)
        suggestions = tuple(self._transitions.suggestions(threshold, links))
        return ReassociationResult(tuple(reassignments), threshold, evidence, suggestions, len(views), chains)

    def _note(self, views: Sequence[TrackletView], pairs: _Pairs) -> None:
        """Candidate pairs of the tracks that ended since the last pass, for the camera links (each track once)."""
        starts = np.array([v.start for v in views])
        for j, view in enumerate(views):
            if not view.ended or view.key in self._noted:
                continue
            self._noted[view.key] = None
            while len(self._noted) > LEARNED_KEPT:
                self._noted.popitem(last=False)
            for i in np.flatnonzero(pairs.together[:, j] & (starts <= view.start)):
                other = views[int(i)]
                here, there = sorted([(view.camera, view.entry), (other.camera, other.position_at(view.start))])
                self._transitions.note_together(here[0], there[0], float(pairs.likeness[i, j]), here[1], there[1])
                if frozenset((view.camera, other.camera)) in self.links.overlapping:
                    shared = view.path[view.path[:, 0] <= other.end]
                    places = [sorted([(view.camera, (x, y)), (other.camera, other.position_at(m))])
                              for m, x, y in shared[:: max(1, len(shared) // PLACES_PER_PAIR)][:PLACES_PER_PAIR]]
                    self._transitions.note_places(here[0], there[0], ((a[1], b[1]) for a, b in places))
            for i in np.flatnonzero(pairs.follows[:, j] & ~pairs.together[:, j]):
                earlier = views[int(i)]
                self._transitions.note(earlier.camera, view.camera, float(pairs.gap[i, j]),
                                       float(pairs.likeness[i, j]), earlier.position_at(view.start), view.entry)

