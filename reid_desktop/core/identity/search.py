"""Appearance search: a person's picture against the stored history, from any thread.

The search embeds the picture, takes the vector index's best candidates and re-orders them
(core/identity/reranking.py). It runs on the GUI's reader threads with their own read-only store, never on the
engine thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from reid_desktop.core.identity.reranking import expanded_query, rerank
from reid_desktop.core.store.interface import HistoryReader, SearchHit
from reid_desktop.core.store.vector_index import VectorIndex
from reid_desktop.core.vision.embedding import Embedder

SEARCH_CANDIDATES = 100  # what an appearance search takes from the vector index to re-rank


@dataclass(frozen=True)
class Searcher:
    """Appearance search that runs in any thread with its own (read-only) store: embedding the query
    (ONNX Runtime sessions are thread-safe) and searching the writer's index never hold up the cameras.

    The query is normalised as the stored embeddings were (the cameras' mean taken out, as known when the search
    began); with ``rerank`` the index's best :data:`SEARCH_CANDIDATES` are re-ordered by query expansion (with the
    identity's gallery when the query is a known person) and k-reciprocal re-ranking (identity/reranking.py), and each
    hit's score is its similarity after re-ranking (1 - its re-ranked distance), so scores fall down the list.
    """

    embedder: Embedder
    index: VectorIndex | None
    normalise: Callable[[np.ndarray], np.ndarray] | None = None
    rerank: bool = True
    gallery_size: int = 10

    def search(self, store: HistoryReader, crop_bgr: np.ndarray, k: int = 10,
               identity_id: int | None = None) -> list[SearchHit]:
        if self.index is None:
            return []
        query = self.embedder.embed([crop_bgr])
        query = (self.normalise(query) if self.normalise is not None else query)[0]
        key = self.embedder.key
        if not self.rerank:
            return store.search(query, key, k, self.index)
        hits = store.search(query, key, max(SEARCH_CANDIDATES, k), self.index, vectors=True)
        if len(hits) < 2:
            return hits[:k]
        candidates = np.stack([hit.vector for hit in hits if hit.vector is not None])
        gallery = store.identity_gallery(identity_id, key, self.gallery_size) if identity_id is not None else None
        distance = rerank(expanded_query(query, candidates, gallery), candidates)
        order = np.argsort(distance, kind="stable")
        return [replace(hits[i], score=float(1.0 - distance[i])) for i in order[:k]]
