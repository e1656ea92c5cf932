"""Re-id metrics: hand-worked cases, an independent library, and a naive re-implementation of the protocol."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluate import (
    Metrics,
    evaluate_rank,
    pairwise_distance,
    pool_tracklets,
    split_query_gallery_tracklets,
)

# Three queries against six gallery samples; distances chosen so each ranking is easy to follow.
Q_PIDS = np.array([1, 2, 3])
Q_CAMS = np.array([0, 0, 2])
G_PIDS = np.array([1, 3, 1, 4, 2, 3])
G_CAMS = np.array([1, 1, 2, 1, 0, 2])
DISTMAT = np.array([
    # q0 (pid 1, cam 0) ranks g1 g0 g3 g2 g4 g5: pid 1 at ranks 2 and 4, nothing junk.
    [0.2, 0.1, 0.4, 0.3, 0.5, 0.6],
    # q1 (pid 2, cam 0): its only pid-2 sample, g4, shares its camera, so it is junk and q1 is skipped.
    [0.5, 0.4, 0.3, 0.2, 0.0, 0.6],
    # q2 (pid 3, cam 2) ranks g5 g0 g2 g1 g3 g4; g5 (pid 3, cam 2) is junk, leaving g1 at rank 3.
    [0.1, 0.3, 0.2, 0.4, 0.5, 0.0],
])


def test_hand_computed_ranks_and_ap() -> None:
    metrics = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)

    # q0: AP = (1/2 + 2/4) / 2 = 1/2, first hit at 2; q2: AP = 1/3, first hit at 3; q1 does not count.
    assert (metrics.num_query, metrics.num_valid_query) == (3, 2)
    assert metrics.mAP == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert metrics.cmc[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert (metrics.rank1, metrics.rank5, metrics.rank10) == pytest.approx((0.0, 1.0, 1.0))
    # Six gallery samples but 50 ranks: the curve stays at its last value.
    assert len(metrics.cmc) == 50
    assert metrics.cmc[3:] == pytest.approx([1.0] * 47)
    assert str(metrics) == "Rank-1 0.0%  Rank-5 100.0%  Rank-10 100.0%  mAP 41.7% (2 of 3 queries)"
    assert metrics.to_dict() == {"rank1": 0.0, "rank5": 1.0, "rank10": 1.0, "mAP": pytest.approx(5 / 12),
                                 "num_query": 3, "num_valid_query": 2}


@pytest.mark.parametrize("g5_camera", [1, -1], ids=["other-camera", "unknown-camera"])
def test_same_identity_in_another_or_unknown_camera_counts(g5_camera: int) -> None:
    g_cams = G_CAMS.copy()
    g_cams[5] = g5_camera

    metrics = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, g_cams)

    # g5 is now a true match for q2 at rank 1, g1 at rank 4: AP = (1/1 + 2/4) / 2 = 3/4.
    assert metrics.num_valid_query == 2
    assert metrics.rank1 == pytest.approx(0.5)
    assert metrics.mAP == pytest.approx((1 / 2 + 3 / 4) / 2)


def test_query_with_unknown_camera_keeps_same_camera_matches() -> None:
    q_cams = Q_CAMS.copy()
    q_cams[1] = -1

    metrics = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, q_cams, G_CAMS)

    # q1 now finds g4 at rank 1 (AP 1).
    assert metrics.num_valid_query == 3
    assert metrics.cmc[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert metrics.mAP == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)


def test_ap_over_the_whole_ranking() -> None:
    # True matches at ranks 1, 3 and 6 of seven: AP = (1 + 2/3 + 3/6) / 3.
    pids = np.array([7, 0, 7, 0, 0, 7, 0])
    metrics = evaluate_rank(np.arange(7.0)[None, :], np.array([7]), pids, np.array([0]), np.ones(7, int), max_rank=5)

    assert metrics.mAP == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert metrics.cmc == pytest.approx((1.0,) * 5)


def _naive_market1501(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray,
                      g_cams: np.ndarray, max_rank: int) -> tuple[list[float], float, int]:
    """The protocol written out per query in plain Python, as a second opinion on the vectorised code."""
    curves, aps = [], []
    for i in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j: distmat[i][j])
        junk = {j for j in order if g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i] and q_cams[i] != -1}
        ranked = [g_pids[j] == q_pids[i] for j in order if j not in junk]
        if not any(ranked):
            continue
        first = ranked.index(True)
        curves.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
        hits, precisions = 0, []
        for k, is_match in enumerate(ranked, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / k)
        aps.append(sum(precisions) / len(precisions))
    cmc = [sum(curve[k] for curve in curves) / len(curves) for k in range(max_rank)]
    return cmc, sum(aps) / len(aps), len(curves)


@pytest.mark.parametrize(("num_q", "num_g"), [(300, 120), (25, 30)])
def test_matches_naive_implementation_with_camera_exclusion(num_q: int, num_g: int) -> None:
    # 300 queries span more than one internal block of queries; 30 gallery samples are fewer than 50 ranks.
    rng = np.random.default_rng(7)
    q_pids, g_pids = rng.integers(0, 30, num_q), rng.integers(0, 30, num_g)
    q_cams, g_cams = rng.integers(-1, 3, num_q), rng.integers(-1, 3, num_g)
    distmat = rng.random((num_q, num_g))

    metrics = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    cmc, mean_ap, num_valid = _naive_market1501(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)

    assert 0 < num_valid < num_q  # some queries really are skipped
    assert metrics.num_valid_query == num_valid
    assert metrics.cmc == pytest.approx(cmc)
    assert metrics.mAP == pytest.approx(mean_ap)
    assert (metrics.rank1, metrics.rank5, metrics.rank10) == pytest.approx((cmc[0], cmc[4], cmc[9]))


def test_agrees_with_pytorch_metric_learning() -> None:
    """Rank-1 and mAP against pytorch-metric-learning's AccuracyCalculator on the same cosine ranking.

    Its "precision_at_1" is the share of queries whose nearest reference has their label, i.e. Rank-1.
    Its "mean_average_precision" sums precision@k at each correct position of the k nearest and divides
    by the number of references with the query's label; with k=None, k is the whole reference set, which
    is AP over the full ranking. Both skip queries whose label is absent from the reference set, as the
    Market-1501 protocol does. It knows nothing of cameras, so all query cameras differ from all gallery
    cameras here and no sample is junk.
    """
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(25, 32))
    q_pids = np.concatenate([np.repeat(np.arange(20), 2), np.arange(20, 25)])  # pids 20-24: no gallery match
    g_pids = np.repeat(np.arange(20), 10)
    # float32 throughout so both sides rank exactly the same numbers.
    query = (centres[q_pids] + rng.normal(scale=1.2, size=(len(q_pids), 32))).astype(np.float32)
    gallery = (centres[g_pids] + rng.normal(scale=1.2, size=(len(g_pids), 32))).astype(np.float32)
    q_cams, g_cams = np.zeros(len(q_pids), int), np.ones(len(g_pids), int)

    metrics = evaluate_rank(pairwise_distance(query, gallery), q_pids, g_pids, q_cams, g_cams)
    calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision"), k=None,
                                    device=torch.device("cpu"), knn_func=CustomKNN(CosineSimilarity()))
    theirs = calculator.get_accuracy(query, q_pids, gallery, g_pids, ref_includes_query=False)

    assert metrics.num_valid_query == 40
    assert 0.2 < metrics.rank1 < 0.95 and 0.05 < metrics.mAP < 0.9  # a ranking with room for mistakes
    assert metrics.rank1 == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert metrics.mAP == pytest.approx(theirs["mean_average_precision"], abs=1e-6)


def test_pairwise_distance_cosine_and_euclidean() -> None:
    query = np.array([[3.0, 0.0], [1.0, 1.0]])
    gallery = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])

    cosine = pairwise_distance(query, gallery)
    euclidean = pairwise_distance(query, gallery, metric="euclidean")

    root_half = np.sqrt(0.5)
    assert cosine == pytest.approx(np.array([[0.0, 1.0, 2.0], [1 - root_half, 1 - root_half, 1 + root_half]]))
    assert euclidean == pytest.approx(np.array([[1.0, 34.0, 16.0], [2.0, 17.0, 5.0]]))


def test_pool_tracklets_averages_each_tracklet_in_a_stable_order() -> None:
    features = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [3.0, 4.0]])
    pids = np.array([2, 1, 1, 2, 1])
    camids = np.array([0, 0, 0, 0, 1])
    tracklets = np.array([5, 3, 3, 5, 3])

    pooled, pooled_pids, pooled_camids = pool_tracklets(features, pids, camids, tracklets)

    # (1, 0, 3): mean of rows 1 and 2; (1, 1, 3): row 4; (2, 0, 5): mean of rows 0 and 3; each L2-normalised.
    assert pooled == pytest.approx(np.array([[np.sqrt(0.5), np.sqrt(0.5)], [0.6, 0.8], [1.0, 0.0]]))
    assert pooled_pids.tolist() == [1, 1, 2]
    assert pooled_camids.tolist() == [0, 1, 0]


def test_split_picks_one_cross_camera_query_tracklet_per_identity() -> None:
    rows = [  # (pid, camid, tracklet)
        (1, 2, 7), (1, 1, 9), (1, 1, 4), (1, 1, 4),  # query: (1, 1, 4), both of its rows
        (2, 0, 1), (2, 0, 2),  # one camera only: gallery distractors
        (3, -1, 0), (3, 3, 5),  # one known camera only: gallery
        (4, -1, 0), (4, 2, 3), (4, 0, 1),  # query: (4, 0, 1), never the unknown-camera tracklet
    ]
    pids, camids, tracklets = (np.array(column) for column in zip(*rows, strict=True))

    query, gallery = split_query_gallery_tracklets(pids, camids, tracklets)

    assert np.flatnonzero(query).tolist() == [2, 3, 10]
    assert gallery.tolist() == (~query).tolist()


def test_no_valid_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query has a correct match in the gallery"):
        evaluate_rank(DISTMAT[1:2], Q_PIDS[1:2], G_PIDS, Q_CAMS[1:2], G_CAMS)


@pytest.mark.parametrize(("query", "gallery", "message"), [
    (np.zeros((2, 4)), np.zeros((3, 5)), "differ in size"),
    (np.zeros(4), np.zeros((3, 4)), "must be 2-D"),
])
def test_pairwise_distance_rejects_bad_shapes(query: np.ndarray, gallery: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_distance(query, gallery)


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distance(np.zeros((1, 2)), np.zeros((1, 2)), metric="manhattan")
    with pytest.raises(ValueError, match=r"g_pids must have shape \(6,\)"):
        evaluate_rank(DISTMAT, Q_PIDS, G_PIDS[:5], Q_CAMS, G_CAMS)
    with pytest.raises(ValueError, match="must be 2-D"):
        evaluate_rank(DISTMAT[0], Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    with pytest.raises(ValueError, match="features must be 3 x D"):
        pool_tracklets(np.zeros((2, 4)), np.zeros(3, int), np.zeros(3, int), np.zeros(3, int))
    with pytest.raises(ValueError, match="equally long"):
        split_query_gallery_tracklets(np.zeros(3, int), np.zeros(2, int), np.zeros(3, int))


def test_metrics_is_frozen() -> None:
    metrics = evaluate_rank(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    assert isinstance(metrics, Metrics)
    with pytest.raises(AttributeError):
        metrics.rank1 = 1.0  # type: ignore[misc]
