from __future__ import annotations

import numpy as np

from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_close_enough_matches_otherwise_a_new_identity() -> None:
    m = IdentityMatcher(threshold=0.8)
    first = m.assign([MatchRequest("a", unit(1, 0, 0))])[0]
    assert first.is_new and first.identity_id == 1
    m.add(1, unit(1, 0, 0)[None], np.array([1.0]))
    same = m.assign([MatchRequest("b", unit(0.95, 0.1, 0))])[0]
    assert not same.is_new and same.identity_id == 1 and same.score > 0.9
    other = m.assign([MatchRequest("c", unit(0, 1, 0))])[0]
    assert other.is_new and other.identity_id == 2


def test_two_people_in_one_frame_never_share_an_identity() -> None:
    m = IdentityMatcher(threshold=0.5)
    m.create()
    m.add(1, unit(1, 0.2, 0)[None], np.array([1.0]))
    m.create()
    m.add(2, unit(0, 1, 0)[None], np.array([1.0]))
    # both look most like identity 1; a greedy matcher would give both the same id
    decisions = m.assign([MatchRequest("x", unit(1, 0.25, 0)), MatchRequest("y", unit(1, 0.6, 0))])
    ids = [d.identity_id for d in decisions]
    assert len(set(ids)) == 2
    assert ids[0] == 1  # the closer one wins identity 1 (Hungarian maximises total similarity)


def test_identities_held_in_the_same_camera_are_not_offered() -> None:
    m = IdentityMatcher(threshold=0.5)
    m.create()
    m.add(1, unit(1, 0, 0)[None], np.array([1.0]))
    decision = m.assign([MatchRequest("x", unit(1, 0, 0))], busy={1})[0]
    assert decision.is_new and decision.identity_id == 2


def test_gallery_keeps_the_best_embeddings() -> None:
    m = IdentityMatcher(threshold=0.5, gallery_size=3)
    identity = m.create()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 4)).astype(np.float32)
    m.add(identity, vectors, np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7]))
    kept = m.identities[identity]
    assert kept.gallery.shape == (3, 4)
    np.testing.assert_allclose(sorted(kept.qualities), [0.7, 0.8, 0.9])


def test_restored_identities_continue_the_numbering() -> None:
    m = IdentityMatcher(threshold=0.8)
    m.restore(7, unit(1, 0, 0)[None], is_target=True)
    assert m.targets == {7}
    assert m.assign([MatchRequest("a", unit(1, 0, 0))])[0].identity_id == 7
    assert m.assign([MatchRequest("b", unit(0, 0, 1))])[0].identity_id == 8


def test_merge_and_replace_gallery_follow_the_operator() -> None:
    m = IdentityMatcher(threshold=0.8)
    m.restore(1, np.repeat(unit(1, 0, 0)[None], 3, axis=0), is_target=False)  # one look, seen three times
    m.restore(2, np.repeat(unit(0, 1, 0)[None], 3, axis=0), is_target=True)  # the same person from behind
    m.merge(keep=1, drop=2)
    assert list(m.identities) == [1] and m.targets == {1}
    assert m.assign([MatchRequest("x", unit(0, 1, 0))])[0].identity_id == 1  # both looks now match #1
    m.replace_gallery(1, np.repeat(unit(1, 0, 0)[None], 3, axis=0))  # the second look was split off again
    decision = m.assign([MatchRequest("y", unit(0, 1, 0))])[0]
    assert decision.is_new and m.targets == {1}
    m.replace_gallery(decision.identity_id, np.zeros((0, 3), np.float32))
    assert decision.identity_id not in m.identities
