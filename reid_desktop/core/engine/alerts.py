"""The alerts a frame's people raise: a followed person seen on a track (once per track and identity), and a track
that looks like someone on the watch list (once per track and entry). Kept, bounded, until the run loop takes them."""

from __future__ import annotations

import collections

from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.identity.watchlist import WatchList, WatchMatch
from reid_desktop.core.types import Frame, TargetSighted, TrackedPerson
from reid_desktop.core.vision.crops import crop, thumbnail

ALERT_THUMBNAIL_HEIGHT = 96
ALERTS_KEPT = 256  # alerts waiting for the run loop (or nobody, when the pipeline is driven directly)


class Alerts:
    def __init__(self) -> None:
        self.watch_list = WatchList()
        self._raised: collections.deque[TargetSighted | WatchMatch] = collections.deque(maxlen=ALERTS_KEPT)

    def target_sighted(self, frame: Frame, state: TrackState, person: TrackedPerson) -> TargetSighted | None:
        """The alert for a followed person on this track, the first time it carries that identity."""
        if person.identity_id is None or state.alerted == person.identity_id:
            return None
        state.alerted = person.identity_id
        alert = TargetSighted(person.identity_id, frame.source_id, person.track_id, frame.timestamp,
                              frame.media_time, person.match_score, _thumbnail(frame, person))
        self._raised.append(alert)
        return alert

    def watch(self, frame: Frame, state: TrackState, person: TrackedPerson) -> None:
        """A track's new embedding against the watch list: an alert per entry it reaches, once per track."""
        if not self.watch_list:
            return
        for entry, score in self.watch_list.match(state.raw_descriptor()):
            if entry.name in state.watched:
                continue
            state.watched.add(entry.name)
            self._raised.append(WatchMatch(entry.name, frame.source_id, person.track_id, person.identity_id,
                                           frame.timestamp, frame.media_time, score, entry.threshold,
                                           _thumbnail(frame, person)))

    def take(self) -> list[TargetSighted | WatchMatch]:
        taken = list(self._raised)
        self._raised.clear()
        return taken


def _thumbnail(frame: Frame, person: TrackedPerson) -> bytes:
    patch = crop(frame.image, person.box)
    return thumbnail(patch, ALERT_THUMBNAIL_HEIGHT) if patch is not None else b""
