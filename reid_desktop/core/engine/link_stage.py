"""The link stage: one camera's tracks of one frame linked to identities.

Which tracks ask the matcher (a new one, or a tentative one with a better crop), its decisions taken (a tentative
identity that changes is corrected in the store), the calibration fed with the people seen together, the galleries
fed with fresh crops, and identities made final once a track has enough crops. The matcher and calibration belong
to the re-id model and are handed over again at a model swap (:meth:`LinkStage.use`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import numpy as np

from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.crop_embedding import FreshEmbeddings
from reid_desktop.core.engine.persistence import SightingWriter
from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.identity.calibration import ThresholdCalibration
from reid_desktop.core.identity.matching import IdentityMatcher, MatchDecision, MatchRequest
from reid_desktop.core.store.interface import TrackKey

log = logging.getLogger(__name__)

LiveTrack = tuple[str, int]  # (source, track id): a track of a camera's running tracker


class LinkStage:
    """Links the tracks of a frame to identities; use from the pipeline's thread only."""

    def __init__(self, config: PipelineConfig, tracks: dict[LiveTrack, TrackState], writer: SightingWriter | None,
                 stored_track: Callable[[LiveTrack], TrackKey],
                 stored_gallery: Callable[[int], np.ndarray] | None) -> None:
        self.tracks = tracks
        self.writer = writer
        self.stored_track = stored_track
        self.stored_gallery = stored_gallery  # None without a store
        self.of_all = config.reid.track_descriptor == "all"
        self.commit_crops = config.matcher.commit_crops
        self.corrections = 0  # tentative identities changed by better crops (each one also audited in the store)
        self.matcher: IdentityMatcher
        self.calibration: ThresholdCalibration | None = None

    def use(self, matcher: IdentityMatcher, calibration: ThresholdCalibration | None) -> None:
        """Link with this re-id model's matcher and calibration from now on."""
        self.matcher, self.calibration = matcher, calibration

    def link(self, source: str, keys: list[LiveTrack], fresh: FreshEmbeddings, moment: float) -> None:
        """Link the camera's tracks of this frame (``keys``; ``fresh`` holds the crops embedded just now)."""
        asking = [k for k in keys if self.tracks[k].embeddings and (
            self.tracks[k].identity_id is None or (not self.tracks[k].committed and k in fresh))]
        busy = {self.tracks[k].identity_id for k in keys if k not in asking} - {None}
        if self.calibration is not None and any(k in fresh for k in keys):
            self._calibrate([self.tracks[k] for k in keys if self.tracks[k].embeddings])
        holders = collections.Counter(s.identity_id for s in self.tracks.values()) if asking else {}
        # an identity made for a track alone is that track's own crops: it asks past it (see MatchRequest.holds);
        # once other tracks matched it too, it is theirs as much, and competes like any other
        requests = [MatchRequest(k, s.descriptor(self.of_all),
                                 s.identity_id if s.owns_identity and holders[s.identity_id] == 1 else None)
                    for k, s in ((k, self.tracks[k]) for k in asking)]
        created = set()
        for decision in self.matcher.assign(requests, busy, source, moment):  # type: ignore[arg-type]
            self._decide(decision.key, decision)  # type: ignore[arg-type]
            if decision.is_new:
                created.add(decision.key)
        for key in keys:
            state = self.tracks[key]
            if state.identity_id is None:
                continue
            if key in created:  # the new identity starts with the track's crops
                self._add_crops(state)
            elif key in fresh and (state.committed or state.owns_identity):
                vector, quality, _ = fresh[key]
                self.matcher.add(state.identity_id, vector[None, :], np.array([quality]))
            if not state.committed and state.crops >= self.commit_crops:
                self.commit(state)
            if state.committed or state.owns_identity:  # surely this person: nobody else can be them elsewhere now
                self.matcher.seen(state.identity_id, source, moment)

    def commit(self, state: TrackState) -> None:
        """The track's identity is final; a matched one takes the track's crops into its gallery now."""
        if state.committed or state.identity_id is None:
            return
        state.committed = True
        if not state.owns_identity and state.embeddings:
            self._add_crops(state)

    def _calibrate(self, together: list[TrackState]) -> None:
        """People seen together are different people: their scores move the threshold (see calibration)."""
        assert self.calibration is not None
        self.calibration.observe(np.stack([s.descriptor(self.of_all) for s in together]),
                                 [np.stack([v for _, v in s.embeddings]) for s in together])
        threshold = self.calibration.threshold
        if threshold is not None and abs(threshold - self.matcher.threshold) >= 0.01:
            log.info("match threshold calibrated on this footage: %.2f (was %.2f; %d people seen with others)",
                     threshold, self.matcher.threshold, self.calibration.observed)
            self.matcher.threshold = threshold

    def _decide(self, key: LiveTrack, decision: MatchDecision) -> None:
        """Take the matcher's decision for a track; when it changes a tentative identity, correct what was stored."""
        state = self.tracks[key]
        previous, owned = state.identity_id, state.owns_identity
        state.identity_id, state.match_score = decision.identity_id, decision.score
        state.owns_identity = decision.is_new or (owned and decision.identity_id == previous)
        if previous is None or previous == decision.identity_id:
            log.debug("%s track %d -> identity %d (%s, %.2f)", key[0], key[1], decision.identity_id,
                      "new" if decision.is_new else "matched", decision.score)
            return
        self.corrections += 1
        log.info("%s track %d: identity %d -> %d with better crops (%.2f)", key[0], key[1], previous,
                 decision.identity_id, decision.score)
        if self.writer is not None:
            self.writer.correct(self.stored_track(key), decision.identity_id, previous, decision.score)
        if owned:  # the identity made for this track held its crops: they go with it
            others = any(s.identity_id == previous for s in self.tracks.values())
            if others and self.stored_gallery is not None:
                self.matcher.replace_gallery(previous, self.stored_gallery(previous))
            elif not others:
                self.matcher.forget(previous)

    def _add_crops(self, state: TrackState) -> None:
        assert state.identity_id is not None
        qualities, vectors = zip(*state.embeddings, strict=True)
        self.matcher.add(state.identity_id, np.stack(vectors), np.asarray(qualities, np.float32))
