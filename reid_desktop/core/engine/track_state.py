"""What the engine remembers about one per-camera track while it is in the picture: its identity (tentative until
it has enough crops), its best crops and the sum of all of them, and what was already raised for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrackState:
    """What the pipeline remembers about one per-camera track.

    A track's identity is *tentative* until it has ``matcher.commit_crops`` embeddings (or ends, or the
    operator acts on it): until then it is decided again with every new crop. A tentative match adds
    nothing to the identity's gallery, so a wrong first guess neither sticks nor spreads; an identity
    created for the track (``owns_identity``) holds the track's crops from the start, so the same person
    in another camera can be linked to it at once.
    """

    identity_id: int | None = None
    match_score: float | None = None
    embeddings: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (quality, vector), best first
    best_raw: list[tuple[float, np.ndarray]] = field(default_factory=list)  # the same crops before normalisation
    appearance: np.ndarray | None = None  # the sum of every crop's (camera-normalised) embedding
    raw_appearance: np.ndarray | None = None  # the same before camera normalisation (the watch list's scale)
    newest_raw: np.ndarray | None = None  # the newest crop's embedding before camera normalisation
    crops: int = 0  # embeddings taken so far
    entry: tuple[float, float] | None = None  # where the track began (normalised foot point)
    committed: bool = False
    locked: bool = False  # the operator decided its identity (followed, merged, split): re-association keeps it
    owns_identity: bool = False  # its identity was created for it (and is kept if nothing else matches)
    best_quality: float = 0.0
    last_embedded: int = -(10**9)
    last_seen: int = 0
    alerted: int | None = None  # the target identity an alert was raised for on this track
    watched: set[str] = field(default_factory=set)  # watch-list entries this track already matched

    def descriptor(self, of_all: bool = True) -> np.ndarray:
        """The track's appearance: the mean of all its crops (``of_all``) or of its best ones."""
        mean = self.appearance if of_all and self.appearance is not None else np.mean(
            [v for _, v in self.embeddings], axis=0)
        return unit(mean)

    def raw_descriptor(self) -> np.ndarray:
        """The mean of all its crops before camera normalisation."""
        return unit(self.raw_appearance if self.raw_appearance is not None else self.descriptor())

    def took(self, vector: np.ndarray, raw: np.ndarray) -> None:
        self.newest_raw = raw
        self.appearance = vector.astype(np.float64) if self.appearance is None else self.appearance + vector
        self.raw_appearance = raw.astype(np.float64) if self.raw_appearance is None else self.raw_appearance + raw


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
