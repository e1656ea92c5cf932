"""Search re-ranking: k-reciprocal neighbours and query expansion order a person's other views first."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_desktop.core.identity.reranking import expanded_query, rerank
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, l2_normalise
from tests.conftest import shared_path


def _unit(*rows: list[float]) -> np.ndarray:
    return l2_normalise(np.array(rows, np.float32))


def _average_precision(relevant: np.ndarray) -> float:
    hits = np.flatnonzero(relevant)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1)))


def _people_seen_from_drifting_views(seed: int, people: int = 30, views: int = 3, crops: int = 4,
                                     dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Each person's look drifts from view to view (front, side, back), so their far views are less like the query
    than some strangers are; the views in between link them."""
    rng = np.random.default_rng(seed)
    vectors, people_of = [], []
    for person in range(people):
        centre = rng.normal(size=dim)
        scale = np.linalg.norm(centre) / np.sqrt(dim)
        for _ in range(views):
            centre = centre + 2.0 * scale * rng.normal(size=dim)
            vectors += [centre + scale * rng.normal(size=dim) for _ in range(crops)]
            people_of += [person] * crops
    return l2_normalise(np.array(vectors, np.float32)), np.array(people_of)


def test_a_persons_other_views_rank_higher_after_reranking() -> None:
    plain, reranked = [], []
    for seed in range(3):
        vectors, people = _people_seen_from_drifting_views(seed)
        for query in range(0, len(vectors), 12):  # one crop of each person asks
            others = np.arange(len(vectors)) != query
            candidates, relevant = vectors[others], people[others] == people[query]
            plain.append(_average_precision(relevant[np.argsort(-(candidates @ vectors[query]))]))
            distance = rerank(expanded_query(vectors[query], candidates), candidates)
            reranked.append(_average_precision(relevant[np.argsort(distance, kind="stable")]))
    assert np.mean(reranked) > np.mean(plain) + 0.02


def test_a_known_persons_gallery_pulls_the_query_towards_their_other_views() -> None:
    query = _unit([1.0, 0.0, 0.0])[0]
    gallery = _unit([0.0, 1.0, 0.0], [0.1, 1.0, 0.0])
    expanded = expanded_query(query, np.empty((0, 3), np.float32), gallery)
    assert abs(float(np.linalg.norm(expanded)) - 1.0) < 1e-5
    assert expanded @ _unit([0.0, 1.0, 0.0])[0] > query @ _unit([0.0, 1.0, 0.0])[0]


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 40), dim=st.integers(2, 16), seed=st.integers(0, 2**16))
def test_any_candidate_set_gets_one_finite_distance_each(count: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    candidates = l2_normalise(rng.normal(size=(count, dim)).astype(np.float32))
    query = l2_normalise(rng.normal(size=(1, dim)).astype(np.float32))[0]
    distance = rerank(expanded_query(query, candidates), candidates)
    assert distance.shape == (count,) and np.isfinite(distance).all()


def _market(embedder: ColorTextureEmbedder, folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    files = [p for p in sorted((shared_path("data/reid/market_4ids") / folder).glob("*.jpg"))
             if not p.name.startswith(("0000", "-1"))]
    return (embedder.embed([cv2.imread(str(p)) for p in files]), np.array([int(p.name[:4]) for p in files]),
            np.array([p.name.split("_")[1][:2] for p in files]))


def test_reranking_raises_search_map_on_real_crops() -> None:
    """market_4ids with the colour descriptor (the Market-1501 protocol: same person and camera left out)."""
    embedder = ColorTextureEmbedder()
    queries, gallery = _market(embedder, "query"), _market(embedder, "gallery")
    plain, reranked = [], []
    for vector, person, camera in zip(*queries, strict=True):
        keep = ~((gallery[1] == person) & (gallery[2] == camera))
        candidates, relevant = gallery[0][keep], gallery[1][keep] == person
        if not relevant.any():
            continue
        plain.append(_average_precision(relevant[np.argsort(-(candidates @ vector))]))
        distance = rerank(expanded_query(vector, candidates), candidates)
        reranked.append(_average_precision(relevant[np.argsort(distance, kind="stable")]))
    assert np.mean(reranked) > np.mean(plain) + 0.03
