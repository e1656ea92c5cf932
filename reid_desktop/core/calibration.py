"""The match threshold, calibrated on the footage itself rather than taken as a constant.

A re-id model's cosine scale depends on the model and on the scene (dark coats everywhere score
high with each other), so no one number is right. The footage says which scores *different*
people reach: two tracks visible at the same time in the same camera are two people. Their scores,
computed as the matcher scores a track against an identity, give the false-accept curve, and the
threshold is set where a new person would wrongly match an existing one in ``false_accept`` of the
comparisons. Needs no labels, follows the scene, and uses only the most recent pairs (bounded).
"""

from __future__ import annotations

import numpy as np

TOP_COSINES = 3  # as the matcher scores: the mean of a descriptor's best cosines against a gallery


class ThresholdCalibration:
    """Scores of pairs of different people, most recent ``capacity`` kept; a threshold once ``min_pairs``."""

    def __init__(self, false_accept: float = 0.01, min_pairs: int = 100, capacity: int = 4096) -> None:
        self.false_accept = false_accept
        self.min_pairs = min_pairs
        self._scores = np.empty(capacity, np.float32)
        self._seen = 0

    def observe(self, descriptors: np.ndarray, galleries: list[np.ndarray]) -> None:
        """Tracks seen together: ``descriptors[i]`` (unit, D) and ``galleries[i]`` (their crops, n x D)."""
        if len(galleries) < 2:
            return
        owner = np.repeat(np.arange(len(galleries)), [len(g) for g in galleries])
        cos = descriptors @ np.concatenate(galleries).T
        for j in range(len(galleries)):
            top = -np.sort(-cos[:, owner == j], axis=1)[:, :TOP_COSINES]
            self._push(np.delete(top.mean(axis=1), j))

    def _push(self, scores: np.ndarray) -> None:
        slots = (self._seen + np.arange(len(scores))) % len(self._scores)
        self._scores[slots] = scores
        self._seen += len(scores)

    @property
    def pairs(self) -> int:
        return min(self._seen, len(self._scores))

    @property
    def threshold(self) -> float | None:
        """The score that only ``false_accept`` of different-people pairs reach; None until enough pairs."""
        if self.pairs < self.min_pairs:
            return None
        return float(np.quantile(self._scores[: self.pairs], 1.0 - self.false_accept))
