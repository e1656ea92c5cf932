"""The watch list: pictures of people to be told about when someone like them appears on a camera.

Each entry is a name, one or more pictures of the person (crops of them, as a camera shows a
person) and its own threshold. The pictures are embedded with the running re-id model (again after
a model swap: embeddings of different models do not compare); every new embedding of a track is
compared with every entry, and the first time a track reaches an entry's threshold it raises a
:class:`WatchMatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reid_desktop.core.vision.embedding import Embedder

MAX_ENTRIES = 100  # a watch list is for a few people the operator looks for, not a database
MAX_PICTURES = 20  # per entry


@dataclass(frozen=True)
class WatchPictures:
    """An entry as the operator gives it: a name, pictures of the person (BGR), a threshold."""

    name: str
    pictures: tuple[np.ndarray, ...]
    threshold: float


@dataclass(frozen=True)
class WatchMatch:
    """Someone on a camera is like a person of the watch list: the operator's alert."""

    name: str
    source_id: str
    track_id: int
    identity_id: int | None
    timestamp: float
    media_time: float | None
    score: float
    threshold: float
    thumbnail: bytes  # JPEG of the person at that moment


class WatchList:
    """The entries embedded with one model; ``match`` compares a track's descriptor with all of them."""

    def __init__(self, entries: Sequence[WatchPictures] = (), embedder: Embedder | None = None) -> None:
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"a watch list holds at most {MAX_ENTRIES} people, not {len(entries)}")
        self.entries = tuple(entries)
        self._vectors: list[np.ndarray] = []
        for entry in self.entries:
            if not entry.pictures or len(entry.pictures) > MAX_PICTURES:
                raise ValueError(f"watch list entry {entry.name!r}: give 1 to {MAX_PICTURES} pictures")
            if not 0.0 < entry.threshold <= 1.0:
                raise ValueError(f"watch list entry {entry.name!r}: the threshold must be in (0, 1]")
            assert embedder is not None, "entries need the model that embeds them"
            vectors = np.asarray(embedder.embed(list(entry.pictures)), np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if not np.isfinite(vectors).all() or (norms == 0).any():
                raise ValueError(f"watch list entry {entry.name!r}: a picture gave no usable embedding")
            self._vectors.append(vectors / norms)

    def __len__(self) -> int:
        return len(self.entries)

    def rebuilt(self, embedder: Embedder) -> WatchList:
        """The same entries embedded with another model."""
        return WatchList(self.entries, embedder)

    def match(self, descriptor: np.ndarray) -> list[tuple[WatchPictures, float]]:
        """The entries ``descriptor`` (L2-normalised) reaches, with its best score against each one's pictures."""
        hits = []
        for entry, vectors in zip(self.entries, self._vectors, strict=True):
            score = float(np.max(vectors @ descriptor))
            if score >= entry.threshold:
                hits.append((entry, score))
        return hits
