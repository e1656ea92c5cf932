"""The engine's side of the background re-association (:mod:`~reid_desktop.core.identity.reassociation`): each live
track's summary kept in the window as its frames come, a pass started when due and its answer taken when ready
(never waited for, except at the end of a run), and the identity each regrouped track takes. The pipeline applies
those: its live tracks, the store's correction path and the galleries follow."""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import cast

import numpy as np

from reid_desktop.core.config import MatcherConfig
from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.identity.camera_transitions import LinkSuggestion
from reid_desktop.core.identity.matching import IdentityMatcher
from reid_desktop.core.identity.reassociation import ReassociationResult, ReassociationSettings, Reassociator
from reid_desktop.core.identity.tracklets import Normalise, TrackletWindow, foot_point
from reid_desktop.core.store.interface import TrackKey
from reid_desktop.core.topology import CameraLinks
from reid_desktop.core.types import Frame, TrackedPerson

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassChange:
    """A pass moved this track (``key`` in the window: source, segment, track id) from ``previous`` to ``identity``."""

    key: tuple[str, int, int]
    track: TrackKey
    identity_id: int
    previous: int
    score: float | None


class Regrouping:
    """The window of tracklets and the background passes over it (none when ``matcher.reassociation`` is off)."""

    def __init__(self, matcher: MatcherConfig, links: CameraLinks) -> None:
        self.tracklets = TrackletWindow(matcher.reassociation_window_s)
        self.reassociator = Reassociator(ReassociationSettings(window_s=matcher.reassociation_window_s,
                                                               interval_s=matcher.reassociation_interval_s,
                                                               horizon_s=matcher.link_horizon_s,
                                                               place_links=matcher.place_links),
                                         links) if matcher.reassociation else None

    @property
    def active(self) -> bool:
        return self.reassociator is not None

    @property
    def suggestions(self) -> tuple[LinkSuggestion, ...]:
        """Camera links learned from the footage that the topology does not state yet."""
        return self.reassociator.suggestions if self.reassociator is not None else ()

    def set_links(self, links: CameraLinks) -> None:
        if self.reassociator is not None:
            self.reassociator.links = links

    def follow(self, key: tuple[str, int, int], track: TrackKey, frame: Frame, person: TrackedPerson,
               embedded: TrackState | None, of_all: bool) -> None:
        """Keep the track's summary up to date (cheap: positions and a sum); ``embedded``: it took a crop now."""
        tracklet = self.tracklets.saw(key, track, frame.source_id, frame.moment,
                                      foot_point(person.box, frame.image.shape), person.identity_id)
        if embedded is None:
            return
        # as embedded: each pass takes out the camera's mean as it knows it then
        if of_all:
            assert embedded.newest_raw is not None
            tracklet.add_appearance(embedded.newest_raw)
        else:
            tracklet.replace_appearance(np.sum([v for _, v in embedded.best_raw], axis=0), len(embedded.best_raw))

    def ended(self, key: Hashable) -> None:
        self.tracklets.end(key)

    def lock(self, key: Hashable, identity_id: int) -> None:
        """The operator decided this track's identity: no pass changes it."""
        tracklet = self.tracklets.get(key)
        if tracklet is not None:
            tracklet.identity_id, tracklet.locked = identity_id, True

    def merged(self, keep: int, drop: int) -> None:
        """The operator's merge: its tracks stay together from now on."""
        for tracklet in self.tracklets.tracklets():
            if tracklet.identity_id in (keep, drop):
                tracklet.identity_id, tracklet.locked = keep, True

    def step(self, moment: float, matcher: IdentityMatcher, normalise: Normalise | None) -> list[PassChange]:
        """Take the finished pass's answer (the changes to apply); start the next pass when due. Never waits."""
        if self.reassociator is None:
            return []
        result = self.reassociator.take()
        changes = []
        if result is not None:
            matcher.evidence = result.evidence
            changes = self._taken(result, matcher)
        if self.reassociator.due(moment):
            self.reassociator.submit(self.tracklets.snapshot(normalise), matcher.threshold, moment)
        return changes

    def settle(self, matcher: IdentityMatcher, normalise: Normalise | None) -> list[PassChange]:
        """At the end of a run: one last pass over the window, waited for, so the stored identities of its last
        minutes are re-associated too (the tracks that ended last are in no earlier pass)."""
        if self.reassociator is None:
            return []
        try:
            result = self.reassociator.settle(self.tracklets.snapshot(normalise), matcher.threshold)
            return self._taken(result, matcher) if result is not None else []
        finally:
            self.reassociator.close()

    def close(self) -> None:
        if self.reassociator is not None:
            self.reassociator.close()

    def _taken(self, result: ReassociationResult, matcher: IdentityMatcher) -> list[PassChange]:
        """The identity each regrouped track takes (the operator's decisions are never in a pass's answer); a chain
        that needs a new identity gets one from ``matcher``."""
        made: dict[int, int] = {}  # chain -> the new identity made for it
        changes = []
        for change in result.reassignments:
            tracklet = self.tracklets.get(change.key)
            if tracklet is None or tracklet.locked or tracklet.identity_id != change.previous:
                continue  # it changed since the pass saw it: the next pass decides again
            identity = change.identity_id if change.identity_id is not None else made.get(change.group)
            if identity is None:
                identity = matcher.create(tracklet.end)
                if identity is None:
                    continue
                made[change.group] = identity
            tracklet.identity_id = identity
            key = cast(tuple[str, int, int], tracklet.key)  # the pipeline's key: source, segment, track id
            changes.append(PassChange(key, change.track, identity, change.previous, change.score))
        return changes
