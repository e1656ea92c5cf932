"""Camera-aware normalisation: each camera's mean embedding is taken out of its embeddings before matching.

A camera's colour cast, lighting and viewpoint move every embedding it produces the same way: people seen
by one camera score high with each other and low with the same people seen by another camera (measured on
the demo clip with a camera's white balance and gamma changed: with the colour descriptor, the same person
across the two cameras scored 0.67 at the median, below different people within one camera at 0.69).
Subtracting each camera's mean embedding and normalising again removes what the camera adds and keeps what
tells its people apart (bench/RESULTS.md, "Identity accuracy").

The mean is learned online from the camera's own crops (a running mean over at most ``memory`` crops, so
it follows slow changes such as daylight) and taken out in proportion to how much it has seen: a new camera
starts neutral (its embeddings unchanged) and is fully normalised after a few hundred crops. The store keeps
each camera's mean with the camera, per re-id model, so a restart does not start over.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np

from reid_desktop.core.types import CameraMean

SETTLE_CROPS = 50  # half of the camera's mean is taken out after this many crops, 80 % after four times as many
MEMORY_CROPS = 5000  # the running mean weighs at most this many crops: older ones fade


def _centred(offset: np.ndarray | None, embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float32)
    if offset is None or offset.shape != embeddings.shape[1:]:
        return embeddings
    centred = embeddings - offset
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.where(norms > 1e-6, centred / np.maximum(norms, 1e-12), embeddings).astype(np.float32)


class CameraNormaliser:
    """Per-camera mean embeddings of one re-id model; use from one thread (the engine's)."""

    def __init__(self, settle: int = SETTLE_CROPS, memory: int = MEMORY_CROPS) -> None:
        self.settle = settle
        self.memory = memory
        self._means: dict[str, CameraMean] = {}

    def __contains__(self, camera: str) -> bool:
        return camera in self._means

    def learn_and_apply(self, camera: str, embeddings: np.ndarray) -> np.ndarray:
        """Learn from ``camera``'s new L2-normalised embeddings (N x D), then return them normalised."""
        self._learn(camera, np.asarray(embeddings, np.float32))
        return self.apply(camera, embeddings)

    def _learn(self, camera: str, embeddings: np.ndarray) -> None:
        if not len(embeddings):
            return
        known = self._means.get(camera)
        if known is not None and known.vector.shape != embeddings.shape[1:]:
            known = None  # another model's size: start again
        vector = np.zeros(embeddings.shape[1], np.float64) if known is None else known.vector.astype(np.float64)
        count = 0 if known is None else known.count
        for row in embeddings:
            count = min(count + 1, self.memory)
            vector += (row - vector) / count
        self._means[camera] = CameraMean(vector.astype(np.float32), count)

    def apply(self, camera: str | None, embeddings: np.ndarray) -> np.ndarray:
        """``embeddings`` (N x D, L2-normalised) with ``camera``'s mean taken out, as far as it has settled, and
        normalised again; without a camera (a picture from a file) the mean of all cameras is taken out."""
        return _centred(self._offset(camera), embeddings)

    def _offset(self, camera: str | None) -> np.ndarray | None:
        """What is taken out: the camera's mean weighted by how settled it is (or the cameras' average)."""
        if camera is not None:
            mean = self._means.get(camera)
            return None if mean is None else mean.vector * (mean.count / (mean.count + self.settle))
        offsets = [o for o in (self._offset(c) for c in self._means) if o is not None]
        shapes = {o.shape for o in offsets}
        return np.mean(offsets, axis=0) if offsets and len(shapes) == 1 else None

    def for_queries(self) -> Callable[[np.ndarray], np.ndarray]:
        """What :meth:`apply` does to a picture from a file now, as a function other threads may call (a copy)."""
        offset = self._offset(None)
        return functools.partial(_centred, None if offset is None else offset.copy())

    @property
    def means(self) -> Mapping[str, CameraMean]:
        """Every camera's mean, to be kept with the camera."""
        return dict(self._means)

    def restore(self, camera: str, mean: CameraMean) -> None:
        """A camera's mean as it was kept (a restart goes on from it)."""
        self._means[camera] = CameraMean(np.asarray(mean.vector, np.float32), min(int(mean.count), self.memory))
