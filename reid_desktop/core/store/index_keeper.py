"""The vector index of one re-id model's stored embeddings, kept in step with what the store commits, with no
SQL: the backend says what the database holds (how many, the newest id, the rows after one) and the keeper loads,
catches up or rebuilds the index, and applies each commit's embeddings once the commit has succeeded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from reid_desktop.core.store.vector_index import EXACT_LIMIT, NLIST, VectorIndex, lists_for, trained_ivf
from reid_desktop.core.store.vector_index import load as load_index

log = logging.getLogger(__name__)

# stored embeddings of one model with id > after_id, as (ids, vectors) chunks in id order
EmbeddingRows = Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]]


class IndexKeeper:
    """The index of the model attached last, and the embeddings the transaction being written adds and deletes
    (applied by :meth:`committed`, forgotten by :meth:`discard`)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.index: VectorIndex | None = None
        self.model = ""
        self._adds: list[tuple[int, np.ndarray]] = []
        self._removes: list[int] = []

    def holds(self, model_key: str) -> bool:
        return self.index is not None and self.model == model_key

    def attach(self, model_key: str, dim: int, path: Path, stamp: dict[str, int], rows: EmbeddingRows) -> VectorIndex:
        """The index saved at ``path`` caught up with the rows after the newest it holds, or, when it is missing or
        holds what the database no longer has (``stamp``: its count and newest id now), rebuilt from the rows."""
        loaded = load_index(path, dim)
        index: VectorIndex | None = None
        if loaded is not None:
            index, saved = loaded
            if saved.get("max_id", 0) > stamp["max_id"] or saved.get("count", 0) > stamp["count"]:
                index = None  # from another database, or rows were deleted after it was saved
            else:
                for ids, vectors in rows(model_key, after_id=int(saved.get("max_id", 0))):
                    index.add(ids, vectors)
                if len(index) != stamp["count"]:
                    index = None  # rows were deleted after it was saved
        if index is None:
            started = time.monotonic()
            index = _built(model_key, dim, stamp["count"], rows)
            log.info("%s: vector index of %d embeddings built in %.1f s", self.location, len(index),
                     time.monotonic() - started)
        self.index, self.model = index, model_key
        return index

    # -- the transaction being written ------------------------------------------------------------------------------

    def added(self, embedding_id: int, vector: np.ndarray, model_key: str) -> None:
        if model_key == self.model:
            self._adds.append((embedding_id, vector))

    def deleted(self, embedding_ids: Iterable[int]) -> None:
        self._removes.extend(embedding_ids)

    def staged_ids(self) -> list[int]:
        """The ids of the index's model this transaction adds."""
        return [embedding_id for embedding_id, _ in self._adds]

    def mark(self) -> tuple[int, int]:
        return len(self._adds), len(self._removes)

    def back_to(self, mark: tuple[int, int]) -> None:
        """Forget what was staged after ``mark`` (a record rolled back to its savepoint)."""
        del self._adds[mark[0]:], self._removes[mark[1]:]

    def discard(self) -> None:
        self._adds, self._removes = [], []

    def committed(self) -> None:
        """The transaction committed: its embeddings join the index, those it deleted leave it."""
        if self.index is not None:
            removed = set(self._removes)
            adds = [(i, v) for i, v in self._adds if i not in removed]  # in and out within one commit
            if adds:
                ids, vectors = zip(*adds, strict=True)
                self.index.add(ids, np.stack(vectors))
            self.index.remove(removed)
        self.discard()

    # -- what other processes did -----------------------------------------------------------------------------------

    def join(self, model_key: str, ids: np.ndarray, vectors: np.ndarray, known: bool) -> None:
        """Embeddings committed elsewhere join the index; ``known``: it may hold some of them already."""
        if self.index is not None and self.model == model_key and len(ids):
            if known:
                self.index.remove(ids)
            self.index.add(ids, vectors)

    def leave(self, ids: Iterable[int]) -> None:
        if self.index is not None:
            self.index.remove(ids)


def _built(model_key: str, dim: int, count: int, rows: EmbeddingRows) -> VectorIndex:
    if count <= EXACT_LIMIT:
        index = VectorIndex(dim)
    else:  # train on the first vectors, then stream the rest: the whole table never sits in memory
        _, sample = next(iter(rows(model_key, chunk=64 * NLIST)))
        index = VectorIndex(dim, index=trained_ivf(dim, sample, lists_for(count)))
    for ids, vectors in rows(model_key):
        index.add(ids, vectors)
    return index
