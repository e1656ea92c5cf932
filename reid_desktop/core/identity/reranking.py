"""Search that ranks better: query expansion and k-reciprocal re-ranking of an appearance search's candidates.

A plain search ranks stored crops by their cosine with the query. Two well-established corrections (Zhong et al.,
"Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017, as torchreid and FastReID apply them;
and average query expansion) use the candidates' relations with each other:

- *query expansion*: a query with known pictures of the person (an identity's gallery) searches with their mean, and
  a plain picture with the mean of itself and its nearest few candidates, weighted by how alike they are: the
  person's other views pull in their other views;
- *k-reciprocal re-ranking*: two crops are more likely the same person when each is among the other's k nearest;
  the candidates' k-reciprocal neighbourhoods are compared (Jaccard distance) and mixed with the original distance.

Both work on the few hundred candidates the vector index returns (not the whole history), so a search costs the
same whatever the history holds. Measured as mAP on the mini data sets: bench/identity_eval.py, bench/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXPANSION_NEIGHBOURS = 2  # candidates averaged into a plain picture's query
EXPANSION_POWER = 3.0  # how steeply their weight falls with their likeness (alpha query expansion)


@dataclass(frozen=True)
class Reranking:
    """k-reciprocal re-ranking's settings (the paper's defaults, scaled down for small candidate sets)."""

    k1: int = 20
    k2: int = 6
    original_weight: float = 0.3  # lambda: the share of the original distance in the final one


def expanded_query(query: np.ndarray, candidates: np.ndarray, gallery: np.ndarray | None = None) -> np.ndarray:
    """The query (unit, D) averaged with the person's known pictures (``gallery``, n x D) when there are some, else
    with its nearest candidates weighted by likeness^alpha; a unit vector."""
    rows = [query[None, :]]
    if gallery is not None and len(gallery):
        rows.append(gallery)
    elif len(candidates):
        likeness = candidates @ query
        nearest = np.argsort(-likeness)[:EXPANSION_NEIGHBOURS]
        weights = np.clip(likeness[nearest], 0.0, 1.0) ** EXPANSION_POWER
        rows.append(candidates[nearest] * weights[:, None])
    mean = np.concatenate(rows).sum(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def rerank(query: np.ndarray, candidates: np.ndarray, settings: Reranking = Reranking()) -> np.ndarray:
    """Distances from ``query`` (unit, D) to each of ``candidates`` (N x D, unit rows) after k-reciprocal
    re-ranking: lower is more alike. With fewer than four candidates the original distances are returned."""
    if len(candidates) < 4:
        return (1.0 - candidates @ query).astype(np.float32)
    features = np.concatenate([query[None, :], candidates]).astype(np.float32)
    count = len(features)
    k1 = max(2, min(settings.k1, (count - 1) // 2))
    k2 = max(1, min(settings.k2, k1))
    distance = np.clip(2.0 - 2.0 * features @ features.T, 0.0, None)
    distance /= np.maximum(distance.max(axis=0, keepdims=True), 1e-12)
    ranked = np.argsort(distance, axis=1)
    encoding = np.zeros((count, count), np.float32)
    for i in range(count):
        neighbours = _expanded_reciprocal(ranked, i, k1)
        weights = np.exp(-distance[i, neighbours])
        encoding[i, neighbours] = weights / weights.sum()
    if k2 > 1:  # local query expansion of the encodings
        encoding = encoding[ranked[:, :k2]].mean(axis=1)
    shared = np.minimum(encoding[0][None, :], encoding[1:]).sum(axis=1)
    either = np.maximum(encoding[0][None, :], encoding[1:]).sum(axis=1)
    jaccard = 1.0 - shared / np.maximum(either, 1e-12)
    return ((1.0 - settings.original_weight) * jaccard + settings.original_weight * distance[0, 1:]).astype(np.float32)


def _reciprocal(ranked: np.ndarray, i: int, k: int) -> np.ndarray:
    """The rows among ``i``'s k nearest that have ``i`` among their own k nearest."""
    forward = ranked[i, :k + 1]
    return forward[(ranked[forward, :k + 1] == i).any(axis=1)]


def _expanded_reciprocal(ranked: np.ndarray, i: int, k1: int) -> np.ndarray:
    """``i``'s k-reciprocal neighbours, grown by each neighbour's own (k/2)-reciprocal set when two thirds of it is
    already in (the paper's robust set)."""
    found = _reciprocal(ranked, i, k1)
    grown = [found]
    half = max(1, round(k1 / 2))
    for j in found:
        theirs = _reciprocal(ranked, int(j), half)
        if len(np.intersect1d(theirs, found)) > 2 / 3 * len(theirs):
            grown.append(theirs)
    return np.unique(np.concatenate(grown))
