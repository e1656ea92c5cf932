"""Changes shared between the processes on one database: their one-line payloads, and how a node's matcher
settles two identities made for one person at the same moment by two nodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
from reid_desktop.core.store.shared_changes import (
    EmbeddingsAdded,
    Labelled,
    Merged,
    Purged,
    Regrouped,
    Split,
    TargetChanged,
    format_change,
    parse_change,
)

ids = st.integers(min_value=1, max_value=2**62)
changes = st.one_of(
    st.builds(TargetChanged, ids, st.booleans()), st.builds(Labelled, ids), st.builds(Merged, ids, ids),
    st.builds(Split, ids, ids, ids), st.builds(Regrouped, ids, ids), st.builds(Purged, ids),
    st.builds(EmbeddingsAdded, ids, ids, st.lists(ids, min_size=1, max_size=5).map(tuple)))


@given(changes)
def test_every_change_reads_back_from_its_payload(change) -> None:
    payload = format_change(change)
    assert parse_change(payload) == change
    assert len(payload.encode()) < 8000  # PostgreSQL's limit on a notification's payload


@given(st.text(max_size=60))
def test_a_payload_that_is_not_ours_is_one_clear_error(text: str) -> None:
    try:
        change = parse_change(text)
    except ValueError as exc:
        assert str(exc).startswith("not a shared change")
    else:
        assert parse_change(format_change(change)) == change


@pytest.mark.parametrize("payload", ["target 3 2", "merged 1", "embeddings 1 2 x", "label -", "drop 1", "",
                                     "purged", "purged x"])
def test_malformed_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="not a shared change"):
        parse_change(payload)


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def node_matcher(first_id: int) -> IdentityMatcher:
    """A node's matcher drawing ids from its own block of the database's sequence."""
    numbers = iter(range(first_id, first_id + 100))
    return IdentityMatcher(threshold=0.8, allocate_id=lambda: next(numbers))


@pytest.mark.parametrize("a_first", [True, False])
def test_two_nodes_that_make_an_identity_for_one_person_settle_on_the_older_one(a_first: bool) -> None:
    """Each node makes an identity for a new person, then learns the other's: only the younger one's track
    moves, so both end on the same identity whichever node was first (without the rule they trade places)."""
    person = unit(1, 0.1, 0)
    a, b = node_matcher(1), node_matcher(101)
    t_a, t_b = (10.0, 10.2) if a_first else (10.2, 10.0)
    x = a.assign([MatchRequest("a-track", person)], camera="left", timestamp=t_a)[0].identity_id
    y = b.assign([MatchRequest("b-track", person)], camera="right", timestamp=t_b)[0].identity_id
    a.add(x, person[None], np.array([1.0]))
    b.add(y, person[None], np.array([1.0]))
    a.learn(y, person[None], np.array([1.0]), created=t_b, seen={})
    b.learn(x, person[None], np.array([1.0]), created=t_a, seen={})
    again_a = a.assign([MatchRequest("a-track", person, holds=x)], camera="left", timestamp=11.0)[0]
    again_b = b.assign([MatchRequest("b-track", person, holds=y)], camera="right", timestamp=11.0)[0]
    older = x if a_first else y
    assert again_a.identity_id == again_b.identity_id == older


def test_a_track_holding_a_new_identity_still_moves_to_an_established_remote_one() -> None:
    person = unit(0, 1, 0.1)
    node = node_matcher(1)
    mine = node.assign([MatchRequest("t", person)], timestamp=50.0)[0].identity_id
    node.add(mine, person[None], np.array([1.0]))
    node.learn(500, person[None], np.array([1.0]), created=5.0, seen={"other-node-camera": 49.0})
    moved = node.assign([MatchRequest("t", person, holds=mine)], camera="here", timestamp=51.0)[0]
    assert moved.identity_id == 500 and not moved.is_new


def test_what_another_node_saw_counts_where_and_when_it_was_seen() -> None:
    """A person another node sees in its camera right now cannot be in ours too (unless the cameras overlap)."""
    person = unit(1, 0, 0.2)
    node = node_matcher(1)
    node.learn(700, person[None], np.array([1.0]), created=1.0, seen={"far": 100.0})
    assert node.assign([MatchRequest("t", person)], camera="here", timestamp=100.1)[0].identity_id != 700
    assert node.assign([MatchRequest("u", person)], camera="here", timestamp=400.0)[0].identity_id == 700
