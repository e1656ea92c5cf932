"""Learned camera links: how long the walk from one camera's picture into another's takes, and where people leave
one picture and enter the other, learned from the footage without the operator's help.

Every time a track ends, its candidate predecessors are noted: the tracks of the window that were last seen
before it began (within ``horizon_s``), with the time between (the *gap*), where they were last seen and where
the new track began, and how alike they look. Per camera pair (both orders, and a camera with itself), what is
noted is kept in a bounded reservoir. Most candidate pairs are two different people; the pairs of one person
crossing from camera A into B arrive after the same walk, so among the pairs that look alike (cosine at least the
pass's threshold, and among the fifth most alike) that gap is far more common than among all pairs. The evidence
for a gap is that ratio (the "lift", as multi-camera trackers estimate camera links from departures and arrivals):

    evidence(gap) = log( share of alike pairs at this gap / share of all pairs at this gap )

so it is positive only where alike pairs cluster, zero where they are as common as any, negative where they are
rarer. Comparing with all pairs (rather than with an assumed uniform spread) makes it immune to how long the
footage is and to the busy and quiet hours. Measured on the demo clip's cuts (bench/RESULTS.md): with it,
re-association links hand-offs that appearance alone cannot tell from other people, and the positions of the
exits and entries added nothing the gap did not already say, so they are shown (where people leave and enter)
but do not score.

Cameras the operator declared overlapping (core/topology.py) see one person at the same moment: a track that
begins while a like-looking one is visible in the other camera is a hand-off by the operator's word. Where such
cameras see the same ground, one person stands at matching places in both pictures: the pairs of tracks seen at
the same moment, most of them two different people, hold the few that are one, and those lie on one mapping from
one picture's foot points to the other's. A robust fit (RANSAC over an affine map, as multi-view trackers fit
their ground-plane maps) finds it without the operator's help; a track whose path runs through the places the
map gives for another track's path is that person, whatever their colours look like through two cameras.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from reid_desktop.core.topology import CameraLinks

RESERVOIR = 4096  # candidate pairs kept per camera pair (the newest)
MIN_ALIKE = 5  # alike pairs a camera pair needs before its gaps are evidence
BANDWIDTH = 0.3  # kernel width relative to the gap (walks vary in proportion to their length)
GRID_POINTS = 96  # gaps at which the evidence is tabulated (log-spaced), looked up by interpolation
SUPPORT = 0.5  # evidence from which a gap counts as a learned hand-off
ALIKE_SHARE = 0.2  # at most this share of a camera pair's candidate pairs count as alike
PLACE_TOLERANCE = 0.04  # share of the picture: a foot point mapped from the other camera this close is one place
PLACES_PER_PAIR = 4  # moments of a pair seen together noted for the ground map (spread over the time they share)
MIN_PLACED = 24  # places on the map (about 6 people's) an overlapping camera pair needs before places count


@dataclass(frozen=True)
class LinkSuggestion:
    """What the footage says of a camera pair, for the topology editor: an entry the operator may confirm."""

    first: str
    second: str
    overlap: bool  # people are seen in both at once: the cameras see the same ground
    shortest_s: float  # the shortest walk seen among the learned hand-offs
    typical_s: float
    links: int  # hand-offs that support it
    leave: str  # where people leave the first camera's picture ("right edge", ...)
    enter: str  # where they enter the second's

    @property
    def walk_s(self) -> float:
        """The shortest walk it suggests: the shortest seen, rounded down to a tenth of a second."""
        return math.floor(self.shortest_s * 10) / 10

    @property
    def entry(self) -> str:
        """The topology settings entry (core/topology.py) it suggests."""
        if self.overlap:
            return f"{self.first} = {self.second}"
        return f"{self.first} ~ {self.second} : {self.walk_s:g}"

    def describe(self) -> str:
        if self.overlap:
            return f"{self.first} and {self.second} see the same ground ({self.links} people seen in both at once)"
        return (f"{self.first} → {self.second}: people leave at the {self.leave} and enter at the {self.enter} "
                f"after {self.typical_s:.1f} s (shortest {self.shortest_s:.1f} s, {self.links} hand-offs)")


def where(x: float, y: float) -> str:
    """A position in a picture in words."""
    if x < 0.15:
        return "left edge"
    if x > 0.85:
        return "right edge"
    if y < 0.2:
        return "top"
    if y > 0.9:
        return "bottom"
    return "middle"


class _Reservoir:
    """The newest candidate pairs of one camera pair: gap, likeness, exit and entry positions; the likeness of
    pairs seen at the same moment in both cameras (for the overlap suggestion); and where such pairs stood at the
    same moments (for the ground map)."""

    def __init__(self, size: int) -> None:
        self.rows: collections.deque[tuple[float, float, float, float, float, float]] = collections.deque(maxlen=size)
        self.together: collections.deque[tuple[float, float, float, float, float]] = collections.deque(maxlen=size)
        self.places: collections.deque[tuple[float, float, float, float]] = collections.deque(maxlen=size)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data = np.asarray(self.rows, np.float64).reshape(-1, 6)
        return data[:, 0], data[:, 1], data[:, 2:]


@dataclass(frozen=True)
class LinkEvidence:
    """The evidence tables of one moment (immutable: the engine reads it while the background learns more)."""

    grid: np.ndarray  # gaps (s) the tables are tabulated at
    tables: Mapping[tuple[str, str], np.ndarray]  # (earlier camera, later camera) -> evidence at each grid gap
    links: CameraLinks  # the operator's topology (overlapping cameras)
    horizon_s: float
    ground: Mapping[tuple[str, str], np.ndarray] = field(default_factory=dict)  # overlapping (first, second) -> 2x3

    def distance(self, here: tuple[str, tuple[float, float]], there: tuple[str, tuple[float, float]]) -> float | None:
        """How far apart (share of the picture) two foot points of two overlapping cameras are, one mapped into the
        other's picture; None while the cameras' map is not learned."""
        (first, point), (second, other) = sorted([here, there])
        matrix = self.ground.get((first, second))
        if matrix is None:
            return None
        mapped = matrix @ np.array([point[0], point[1], 1.0])
        return float(np.hypot(mapped[0] - other[0], mapped[1] - other[1]))

    def evidence(self, earlier: str, later: str, gap: float) -> float:
        """How much a gap of ``gap`` seconds between a track last seen in ``earlier`` and one beginning in ``later``
        says they are one person crossing (0: nothing either way)."""
        if earlier != later and frozenset((earlier, later)) in self.links.overlapping \
                and gap <= self.links.same_moment_s:
            return SUPPORT
        table = self.tables.get((earlier, later))
        if table is None or not 0.0 <= gap <= self.horizon_s:
            return 0.0
        return float(np.interp(gap, self.grid, table))

    @staticmethod
    def empty(links: CameraLinks | None = None, horizon_s: float = 60.0) -> LinkEvidence:
        return LinkEvidence(np.zeros(1), {}, links or CameraLinks(), horizon_s)


class CameraTransitions:
    """Learns camera links from candidate pairs (used by the background re-association's thread only)."""

    def __init__(self, horizon_s: float = 60.0, reservoir: int = RESERVOIR, max_pairs: int = 1024) -> None:
        self.horizon_s = horizon_s
        self._reservoir_size = reservoir
        self._max_pairs = max_pairs
        self._pairs: collections.OrderedDict[tuple[str, str], _Reservoir] = collections.OrderedDict()
        self.grid = np.concatenate([[0.0], np.geomspace(0.1, horizon_s, GRID_POINTS - 1)])

    def note(self, earlier: str, later: str, gap: float, likeness: float, left: tuple[float, float],
             entered: tuple[float, float]) -> None:
        """A candidate pair: a track last seen in ``earlier`` at ``left``, ``gap`` s before one began in ``later`` at
        ``entered``; ``likeness``: their appearances' cosine."""
        self._reservoir(earlier, later).rows.append((max(gap, 0.0), likeness, *left, *entered))

    def note_together(self, first: str, second: str, likeness: float, here: tuple[float, float],
                      there: tuple[float, float]) -> None:
        """Two tracks of different cameras seen at the same moment (``here`` in ``first``, ``there`` in ``second``)."""
        self._reservoir(first, second).together.append((likeness, *here, *there))

    def note_places(self, first: str, second: str, places: Iterable[tuple[tuple[float, float], tuple[float, float]]]
                    ) -> None:
        """Where two tracks seen together stood at the same moments (in ``first``'s picture, in ``second``'s)."""
        self._reservoir(first, second).places.extend((*here, *there) for here, there in places)

    def _reservoir(self, earlier: str, later: str) -> _Reservoir:
        key = (earlier, later)
        reservoir = self._pairs.get(key)
        if reservoir is None:
            if len(self._pairs) >= self._max_pairs:  # cameras come and go: the pair not heard of longest goes
                self._pairs.popitem(last=False)
            reservoir = self._pairs[key] = _Reservoir(self._reservoir_size)
        self._pairs.move_to_end(key)
        return reservoir

    def pairs_noted(self) -> int:
        return sum(len(r.rows) for r in self._pairs.values())

    def evidence(self, threshold: float, links: CameraLinks, places: bool = True) -> LinkEvidence:
        """The evidence tables for pairs that look alike at ``threshold``, and (``places``) the ground maps of the
        overlapping cameras (see the module's docstring)."""
        tables, ground = {}, {}
        for key, reservoir in self._pairs.items():
            gaps, likeness, _ = reservoir.arrays()
            alike = gaps[_alike(likeness, threshold)]
            if len(alike) >= MIN_ALIKE:
                tables[key] = self._lift(gaps, alike)
            if places and frozenset(key) in links.overlapping and (matrix := _ground_map(reservoir.places)) is not None:
                ground[key] = matrix
        return LinkEvidence(self.grid, tables, links, self.horizon_s, ground)

    def _lift(self, gaps: np.ndarray, alike: np.ndarray) -> np.ndarray:
        every = _density(gaps, self.grid)
        share_all = every / len(gaps)
        # one pseudo-pair spread like all pairs keeps a few alike pairs from claiming a gap on their own
        share_alike = (_density(alike, self.grid) + share_all) / (len(alike) + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.log(share_alike / share_all)
        return np.where(np.isfinite(lift), lift, 0.0)

    def suggestions(self, threshold: float, links: CameraLinks, min_links: int = 10) -> list[LinkSuggestion]:
        """Camera pairs whose learned links the operator has not declared yet, strongest first."""
        evidence = self.evidence(threshold, links)
        out = []
        for (first, second), reservoir in self._pairs.items():
            if first == second:
                continue
            pair = frozenset((first, second))
            gaps, likeness, places = reservoir.arrays()
            alike = _alike(likeness, threshold)
            together = np.asarray(reservoir.together, np.float64).reshape(-1, 5)
            alike_together = together[together[:, 0] >= threshold]
            if (pair not in links.overlapping and len(alike_together) >= min_links and len(gaps)
                    and len(alike_together) / len(together) >= 2 * alike.mean()):  # alike far more often than usual
                leave, enter = _places(alike_together[:, 1:5])
                out.append(LinkSuggestion(first, second, True, 0.0, 0.0, len(alike_together), leave, enter))
                continue
            if pair in links.overlapping or pair in links.min_transit_s or (first, second) not in evidence.tables:
                continue
            supported = alike & (np.interp(gaps, evidence.grid, evidence.tables[(first, second)]) >= SUPPORT) \
                & (gaps > links.same_moment_s)
            if supported.sum() >= min_links:
                leave, enter = _places(places[supported])
                walks = gaps[supported]
                out.append(LinkSuggestion(first, second, False, float(np.quantile(walks, 0.05)),
                                          float(np.median(walks)), int(supported.sum()), leave, enter))
        return sorted(out, key=lambda s: -s.links)


def _alike(likeness: np.ndarray, threshold: float) -> np.ndarray:
    """Which candidate pairs look alike: at least ``threshold``, and among the most alike ``ALIKE_SHARE`` of them
    (where people are easy to tell apart the threshold is low, and would call most pairs alike)."""
    if not len(likeness):
        return np.zeros(0, bool)
    return likeness >= max(threshold, float(np.quantile(likeness, 1.0 - ALIKE_SHARE)))


def _ground_map(places: Iterable[tuple[float, float, float, float]]) -> np.ndarray | None:
    """The affine map from the first camera's foot points to the second's that most places of pairs seen together
    fit (most pairs are two people, so a robust fit), or None while too few fit it."""
    rows = np.asarray(places, np.float32).reshape(-1, 4)
    if len(rows) < 2 * MIN_PLACED:
        return None
    here, there = np.ascontiguousarray(rows[:, :2]), np.ascontiguousarray(rows[:, 2:])
    matrix, inliers = cv2.estimateAffine2D(here, there, method=cv2.RANSAC,
                                           ransacReprojThreshold=PLACE_TOLERANCE, maxIters=5000, confidence=0.999)
    if matrix is None or inliers is None or int(inliers.sum()) < MIN_PLACED:
        return None
    if not 0.04 <= float(np.linalg.det(matrix[:, :2])) <= 25.0:  # no mirror, no collapse: one ground, two views
        return None
    return matrix.astype(np.float64)


def _density(samples: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Kernel density (unnormalised sum) of ``samples`` at each of ``at``, kernel width relative to the gap."""
    width = BANDWIDTH * (at + 0.5)
    return np.exp(-((samples[None, :] - at[:, None]) ** 2) / (2 * width[:, None] ** 2)).sum(axis=1) / width


def _places(rows: np.ndarray) -> tuple[str, str]:
    """Where most of these hand-offs left the first picture and entered the second, in words."""
    def commonest(points: Iterable[tuple[float, float]]) -> str:
        return collections.Counter(where(x, y) for x, y in points).most_common(1)[0][0]
    return commonest(rows[:, 0:2]), commonest(rows[:, 2:4])
