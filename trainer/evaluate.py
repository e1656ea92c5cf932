"""Re-id accuracy: Rank-k (CMC) and mAP under the Market-1501 protocol, plus MARS-style tracklet helpers.

`evaluate_rank` reproduces torchreid's ``eval_market1501`` (KaiyangZhou/deep-person-reid,
``torchreid/metrics/rank.py``) so figures can be compared with published ones. Numpy only: the app and
the ONNX check use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN_CAMERA = -1
"""Camera id of a sample whose camera is not known; it never makes a gallery sample junk."""

_QUERY_BLOCK = 256  # queries ranked at once: bounds memory to a few (block x gallery) arrays


@dataclass(frozen=True)
class Metrics:
    """Ranking accuracy over the valid queries; rates are fractions in 0..1."""

    rank1: float
    rank5: float
    rank10: float
    mAP: float  # spelled as in torchreid and the papers
    num_query: int
    num_valid_query: int  # queries with at least one true match left in the gallery; the averages are over these
    cmc: tuple[float, ...]  # cmc[k - 1] = share of valid queries with a true match within the first k

    def to_dict(self) -> dict[str, float | int]:
        """The headline figures and counts, for JSON events and ONNX metadata."""
        return {"rank1": self.rank1, "rank5": self.rank5, "rank10": self.rank10, "mAP": self.mAP,
                "num_query": self.num_query, "num_valid_query": self.num_valid_query}

    def __str__(self) -> str:
        queries = (f"{self.num_query} queries" if self.num_valid_query == self.num_query
                   else f"{self.num_valid_query} of {self.num_query} queries")
        return (f"Rank-1 {self.rank1:.1%}  Rank-5 {self.rank5:.1%}  Rank-10 {self.rank10:.1%}  "
                f"mAP {self.mAP:.1%} ({queries})")


def pairwise_distance(query: np.ndarray, gallery: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Q x G distances between feature rows (query Q x D, gallery G x D); smaller means more alike.

    "cosine" is 1 - cosine similarity (rows are L2-normalised first, so their scale does not matter);
    "euclidean" is the squared euclidean distance, which ranks the same as the plain one and is cheaper.
    """
    query, gallery = np.asarray(query), np.asarray(gallery)
    if query.ndim != 2 or gallery.ndim != 2:
        raise ValueError(f"features must be 2-D (rows x dims), got query {query.shape} and gallery {gallery.shape}")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query and gallery features differ in size: {query.shape[1]} vs {gallery.shape[1]}")
    dtype = np.result_type(query, gallery, np.float32)
    query, gallery = query.astype(dtype, copy=False), gallery.astype(dtype, copy=False)
    if metric == "cosine":
        return 1.0 - _l2_normalise(query) @ _l2_normalise(gallery).T
    if metric == "euclidean":
        squared = (query**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2.0 * query @ gallery.T
        return np.maximum(squared, 0.0)  # rounding can leave tiny negatives
    raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'euclidean'")


def evaluate_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                  g_camids: np.ndarray, max_rank: int = 50) -> Metrics:
    """CMC and mAP of a Q x G distance matrix under the Market-1501 protocol (as torchreid's eval_market1501).

    For each query the gallery is sorted by distance (ties keep gallery order) and the samples with the
    query's identity *and* camera are dropped: finding the same person in the same camera proves nothing.
    A camera id of `UNKNOWN_CAMERA` (-1), on either side, never makes a sample junk. Queries left with no true
    match are skipped and do not count in the averages. AP averages the precision at every true match over
    the full ranking. The caller must leave the query images themselves out of the gallery.

    ``cmc`` has `max_rank` entries; past the end of a short gallery it repeats its last value.
    """
    distmat = np.asarray(distmat)
    q_pids, q_camids, g_pids, g_camids = (np.asarray(a) for a in (q_pids, q_camids, g_pids, g_camids))
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    for name, ids, size in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q),
                            ("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        if ids.shape != (size,):
            raise ValueError(f"{name} must have shape ({size},) to match distmat {distmat.shape}, got {ids.shape}")
    if num_q == 0 or num_g == 0:
        raise ValueError(f"need at least one query and one gallery sample, got distmat {distmat.shape}")
    if np.isnan(distmat).any():
        raise ValueError("distmat contains NaN (features with NaN or inf?)")
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")

    first_hits, aps = [], []
    for start in range(0, num_q, _QUERY_BLOCK):
        block = slice(start, start + _QUERY_BLOCK)
        first_hit, ap = _rank_queries(distmat[block], q_pids[block], q_camids[block], g_pids, g_camids)
        first_hits.append(first_hit)
        aps.append(ap)
    first_hit, ap = np.concatenate(first_hits), np.concatenate(aps)

    valid = first_hit > 0
    if not valid.any():
        raise ValueError(f"no query has a correct match in the gallery ({num_q} queries, {num_g} gallery samples) "
                         "once same-identity same-camera samples are removed; check the pids, camids and split")
    first_hit, ap = first_hit[valid], ap[valid]
    cmc = tuple(float(np.mean(first_hit <= k)) for k in range(1, max_rank + 1))
    return Metrics(rank1=float(np.mean(first_hit <= 1)), rank5=float(np.mean(first_hit <= 5)),
                   rank10=float(np.mean(first_hit <= 10)), mAP=float(ap.mean()), num_query=num_q,
                   num_valid_query=int(valid.sum()), cmc=cmc)


def _rank_queries(distmat: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, g_pids: np.ndarray,
                  g_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the 1-based rank of the first true match (0 if none) and the AP (0 if none)."""
    order = np.argsort(distmat, axis=1, kind="stable")
    same_pid = g_pids[order] == q_pids[:, None]
    same_cam = (g_camids[order] == q_camids[:, None]) & (q_camids[:, None] != UNKNOWN_CAMERA)
    keep = ~(same_pid & same_cam)
    good = same_pid & keep
    rank = np.cumsum(keep, axis=1)  # 1-based rank of each kept sample once the junk is removed
    hits = np.cumsum(good, axis=1)
    num_good = hits[:, -1]

    first_hit = np.where(num_good > 0, rank[np.arange(len(order)), np.argmax(good, axis=1)], 0)
    precision = np.divide(hits, rank, out=np.zeros(hits.shape), where=good)  # precision at each true match
    ap = precision.sum(axis=1) / np.maximum(num_good, 1)
    return first_hit, ap


def pool_tracklets(features: np.ndarray, pids: np.ndarray, camids: np.ndarray,
                   tracklets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One L2-normalised mean feature per (pid, camid, tracklet), for video re-id as on MARS.

    features is N x D; the other arrays have N integer ids. Returns features T x D, pids (T,) and
    camids (T,), ordered by pid, then camid, then tracklet, so the order does not depend on the input's.
    """
    features = np.asarray(features)
    keys, inverse = _tracklet_keys(pids, camids, tracklets)
    if features.ndim != 2 or len(features) != len(inverse):
        raise ValueError(f"features must be {len(inverse)} x D to match the ids, got shape {features.shape}")
    sums = np.zeros((len(keys), features.shape[1]), dtype=np.result_type(features, np.float32))
    np.add.at(sums, inverse, features)
    means = sums / np.bincount(inverse, minlength=len(keys))[:, None]
    return _l2_normalise(means), keys[:, 0], keys[:, 1]


def split_query_gallery_tracklets(pids: np.ndarray, camids: np.ndarray,
                                  tracklets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MARS-like query/gallery split for a data set that ships none; boolean (query, gallery) masks over the rows.

    Rows may be frames or whole tracklets; all rows of a tracklet land on the same side. Each identity seen
    by at least two known cameras gives one query: its first tracklet by (camid, tracklet). Everything else
    is gallery, so identities seen by one camera only stay in as distractors. Tracklets with an unknown
    camera (-1) are never queries and do not count as a second camera, since cross-camera matching is the
    point of the test.
    """
    keys, inverse = _tracklet_keys(pids, camids, tracklets)
    known = np.flatnonzero(keys[:, 1] != UNKNOWN_CAMERA)  # rows of keys, still sorted by pid, camid, tracklet
    pid_per_camera = np.unique(keys[known, :2], axis=0)[:, 0]  # one entry per (pid, known camera)
    seen_pids, num_cameras = np.unique(pid_per_camera, return_counts=True)
    multi_camera_pids = seen_pids[num_cameras >= 2]
    _, first_of_pid = np.unique(keys[known, 0], return_index=True)
    candidates = known[first_of_pid]
    is_query_key = np.zeros(len(keys), dtype=bool)
    is_query_key[candidates[np.isin(keys[candidates, 0], multi_camera_pids)]] = True
    query = is_query_key[inverse]
    return query, ~query


def _tracklet_keys(pids: np.ndarray, camids: np.ndarray, tracklets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (pid, camid, tracklet) rows, sorted, and for each input row the index of its key."""
    ids = [np.asarray(a) for a in (pids, camids, tracklets)]
    if any(a.ndim != 1 for a in ids) or len({len(a) for a in ids}) != 1:
        raise ValueError(f"pids, camids and tracklets must be 1-D and equally long, got shapes "
                         f"{[a.shape for a in ids]}")
    keys, inverse = np.unique(np.stack(ids, axis=1).astype(np.int64), axis=0, return_inverse=True)
    return keys, inverse.reshape(-1)


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
