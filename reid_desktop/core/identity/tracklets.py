"""Tracklets: what re-association needs to know of each per-camera track, kept for a sliding window.

A tracklet is a track summarised: its camera, when and where (normalised foot point) it began and was last
seen, a few positions along the way, and its appearance (the sum of every sampled crop's embedding, so its
descriptor is the mean of all of them: averaging many crops over a track's life separates people better
than its few best ones; bench/RESULTS.md). The pipeline updates the live ones every frame; ended ones stay
for ``window_s`` (and at most ``max_tracklets``), so the window's memory does not grow with history.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from reid_desktop.core.store.interface import TrackKey

PATH_POINTS = 64  # positions kept per tracklet (where it was when another camera's track began)
PATH_STEP_S = 0.5  # at most one kept position per this many seconds
Normalise = Callable[[str, np.ndarray], np.ndarray]  # (camera, N x D embeddings) -> the same, camera mean taken out


@dataclass(frozen=True)
class TrackletView:
    """A tracklet as the background re-association sees it (a copy: the engine goes on changing the live one)."""

    key: Hashable
    track: TrackKey
    camera: str
    start: float
    end: float
    entry: tuple[float, float]
    exit: tuple[float, float]
    path: np.ndarray  # K x 3: moment, x, y (normalised)
    descriptor: np.ndarray  # unit vector: the mean of the track's crop embeddings
    crops: int
    sightings: int
    identity_id: int | None
    locked: bool  # the operator decided this track's identity (followed, merged, split): never changed
    ended: bool

    def position_at(self, moment: float) -> tuple[float, float]:
        """Where the track was at ``moment``: between two kept positions, on the line between them; before its
        first or after its last, there."""
        times, xs, ys = self.path[:, 0], self.path[:, 1], self.path[:, 2]
        if self.end > times[-1]:  # the last kept position may be up to PATH_STEP_S older than the last seen
            times, xs, ys = (np.append(a, b) for a, b in ((times, self.end), (xs, self.exit[0]), (ys, self.exit[1])))
        return float(np.interp(moment, times, xs)), float(np.interp(moment, times, ys))


@dataclass
class Tracklet:
    """A live or recently ended track, updated by the pipeline (engine thread only)."""

    key: Hashable
    track: TrackKey
    camera: str
    start: float
    end: float
    entry: tuple[float, float]
    exit: tuple[float, float]
    path: collections.deque[tuple[float, float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=PATH_POINTS))
    appearance: np.ndarray | None = None
    crops: int = 0
    sightings: int = 0
    identity_id: int | None = None
    locked: bool = False
    ended: bool = False
    _entries: list[tuple[float, float]] = field(default_factory=list)

    def saw(self, moment: float, foot: tuple[float, float], identity_id: int | None) -> None:
        """The track was at ``foot`` (normalised bottom centre of its box) at ``moment``."""
        if len(self._entries) < 3:  # where it began: the mean of its first positions (one box can be off)
            self._entries.append(foot)
            self.entry = (float(np.mean([e[0] for e in self._entries])), float(np.mean([e[1] for e in self._entries])))
        self.end, self.exit = moment, foot
        self.sightings += 1
        if not self.locked:
            self.identity_id = identity_id
        if not self.path or moment - self.path[-1][0] >= PATH_STEP_S:
            self.path.append((moment, foot[0], foot[1]))

    def add_appearance(self, embedding: np.ndarray) -> None:
        self.appearance = embedding.astype(np.float64) if self.appearance is None else self.appearance + embedding
        self.crops += 1

    def replace_appearance(self, total: np.ndarray, crops: int) -> None:
        """The track's appearance is the sum of these ``crops`` (its best ones, when not all count)."""
        self.appearance, self.crops = total.astype(np.float64), crops

    def view(self, normalise: Normalise | None = None) -> TrackletView | None:
        """A copy for the background thread; None while it has no appearance yet. ``normalise`` (camera, N x D)
        takes the camera's mean out of the track's mean appearance."""
        if self.appearance is None:
            return None
        mean = self.appearance[None, :] / max(self.crops, 1)
        descriptor = (normalise(self.camera, mean) if normalise is not None else mean)[0].astype(np.float64)
        norm = float(np.linalg.norm(descriptor))
        if norm <= 1e-12:
            return None
        path = np.asarray(list(self.path) or [(self.end, *self.exit)], np.float64)
        return TrackletView(self.key, self.track, self.camera, self.start, self.end, self.entry, self.exit, path,
                            (descriptor / norm).astype(np.float32), self.crops, self.sightings,
                            self.identity_id, self.locked, self.ended)


def foot_point(box: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[float, float]:
    """The bottom centre of ``box`` (x1, y1, x2, y2) as a share of the picture's width and height."""
    height, width = frame_shape[:2]
    return float((box[0] + box[2]) / 2 / max(width, 1)), float(box[3] / max(height, 1))


class TrackletWindow:
    """The live tracklets and those that ended within ``window_s`` (at most ``max_tracklets`` ended ones)."""

    def __init__(self, window_s: float = 600.0, max_tracklets: int = 2000) -> None:
        self.window_s = window_s
        self.max_tracklets = max_tracklets
        self._live: dict[Hashable, Tracklet] = {}
        self._ended: collections.OrderedDict[Hashable, Tracklet] = collections.OrderedDict()  # oldest end first
        self._newest = -np.inf

    def __len__(self) -> int:
        return len(self._live) + len(self._ended)

    def get(self, key: Hashable) -> Tracklet | None:
        return self._live.get(key) or self._ended.get(key)

    def tracklets(self) -> list[Tracklet]:
        return [*self._ended.values(), *self._live.values()]

    def saw(self, key: Hashable, track: TrackKey, camera: str, moment: float, foot: tuple[float, float],
            identity_id: int | None) -> Tracklet:
        """The live track ``key`` at ``foot`` at ``moment`` (a new tracklet the first time)."""
        tracklet = self._live.get(key)
        if tracklet is None:
            tracklet = self._live[key] = Tracklet(key, track, camera, moment, moment, foot, foot)
        tracklet.saw(moment, foot, identity_id)
        self._newest = max(self._newest, moment)
        return tracklet

    def end(self, key: Hashable) -> None:
        """The track ended: it stays in the window until it is older than ``window_s``."""
        tracklet = self._live.pop(key, None)
        if tracklet is None:
            return
        tracklet.ended = True
        self._ended[key] = tracklet
        self._expire()

    def _expire(self) -> None:
        while self._ended and (len(self._ended) > self.max_tracklets
                               or next(iter(self._ended.values())).end < self._newest - self.window_s):
            self._ended.popitem(last=False)

    def clear(self) -> None:
        self._live.clear()
        self._ended.clear()

    def snapshot(self, normalise: Normalise | None = None) -> list[TrackletView]:
        """Copies of every tracklet with an appearance, for the background re-association."""
        self._expire()
        return [view for view in (t.view(normalise) for t in self.tracklets()) if view is not None]
