"""Learned camera links: the walk between two cameras is found among many unrelated pairs, whatever the footage's
length; overlapping cameras link at once; what is learned is bounded and shown as suggestions that parse."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from reid_desktop.core.identity.camera_transitions import SUPPORT, CameraTransitions, LinkSuggestion, where
from reid_desktop.core.topology import CameraLinks, parse

THRESHOLD = 0.7


def crossings(model: CameraTransitions, rng: np.random.Generator, walk_s: float, count: int, span_s: float,
              triangular: bool = False) -> None:
    """``count`` people walk from ``gate`` to ``yard`` in about ``walk_s`` (alike pairs), among 20 times as many
    unrelated pairs spread over ``span_s`` (a short clip spreads them as a triangle: few long gaps fit in it)."""
    for _ in range(count):
        model.note("gate", "yard", float(rng.normal(walk_s, 0.1 * walk_s)), 0.9, (0.97, 0.5), (0.05, 0.5))
    for _ in range(20 * count):
        gap = float(span_s * (1 - np.sqrt(rng.random())) if triangular else rng.uniform(0, span_s))
        likeness = 0.9 if rng.random() < 0.15 else 0.3  # some unrelated people look alike too
        model.note("gate", "yard", gap, likeness, tuple(rng.random(2)), tuple(rng.random(2)))


def test_the_walk_between_two_cameras_stands_out_among_unrelated_pairs() -> None:
    model = CameraTransitions(horizon_s=60.0)
    crossings(model, np.random.default_rng(0), walk_s=4.0, count=30, span_s=60.0)
    evidence = model.evidence(THRESHOLD, CameraLinks())
    assert evidence.evidence("gate", "yard", 4.0) >= SUPPORT
    assert evidence.evidence("gate", "yard", 20.0) < SUPPORT and evidence.evidence("gate", "yard", 45.0) < SUPPORT
    assert evidence.evidence("yard", "gate", 4.0) == 0.0  # the other way round: nothing learned
    assert evidence.evidence("gate", "yard", 400.0) == 0.0  # past the horizon: no opinion


def test_a_short_clip_does_not_make_every_short_gap_look_like_a_walk() -> None:
    """In a short clip long gaps are rare among all pairs, not only among the alike ones: comparing with all pairs
    (not with a uniform spread) keeps the evidence where the walk is."""
    model = CameraTransitions(horizon_s=120.0)
    crossings(model, np.random.default_rng(1), walk_s=10.0, count=40, span_s=80.0, triangular=True)
    evidence = model.evidence(THRESHOLD, CameraLinks())
    assert evidence.evidence("gate", "yard", 10.0) >= SUPPORT
    assert all(evidence.evidence("gate", "yard", gap) < SUPPORT for gap in (1.0, 2.0, 30.0, 60.0))


def test_a_few_alike_pairs_are_no_evidence() -> None:
    model = CameraTransitions()
    for _ in range(4):
        model.note("gate", "yard", 3.0, 0.95, (0.9, 0.5), (0.1, 0.5))
    assert model.evidence(THRESHOLD, CameraLinks()).evidence("gate", "yard", 3.0) == 0.0


def test_overlapping_cameras_link_people_seen_at_once() -> None:
    evidence = CameraTransitions().evidence(THRESHOLD, parse("gate = yard"))
    assert evidence.evidence("gate", "yard", 0.0) >= SUPPORT and evidence.evidence("yard", "gate", 0.2) >= SUPPORT
    assert evidence.evidence("gate", "yard", 5.0) == 0.0


def test_learned_links_are_suggested_as_topology_entries_until_declared() -> None:
    model = CameraTransitions(horizon_s=60.0)
    rng = np.random.default_rng(2)
    crossings(model, rng, walk_s=4.0, count=30, span_s=60.0)
    for _ in range(40):  # hall and stairs: the same people at once, far more alike than any two people usually are
        model.note_together("hall", "stairs", 0.95, (0.9, 0.6), (0.1, 0.6))
        model.note("hall", "stairs", float(rng.uniform(0, 60)), 0.2, (0.5, 0.5), (0.5, 0.5))
    found = {(s.first, s.second): s for s in model.suggestions(THRESHOLD, CameraLinks())}
    walk = found[("gate", "yard")]
    assert not walk.overlap and 3.0 <= walk.typical_s <= 5.0 and walk.shortest_s <= walk.typical_s
    assert walk.leave == "right edge" and walk.enter == "left edge"
    assert "right edge" in walk.describe() and parse(walk.entry).min_transit_s
    assert found[("hall", "stairs")].overlap and parse(found[("hall", "stairs")].entry).overlapping
    declared = parse(f"{walk.entry}; hall = stairs")
    assert model.suggestions(THRESHOLD, declared) == []  # what the operator declared is not suggested again


def test_what_is_learned_stays_bounded() -> None:
    model = CameraTransitions(reservoir=100, max_pairs=5)
    rng = np.random.default_rng(3)
    for n in range(20_000):
        model.note(f"cam{n % 9}", f"cam{(n * 7) % 9}", float(rng.uniform(0, 60)), 0.5, (0.5, 0.5), (0.5, 0.5))
    assert model.pairs_noted() <= 5 * 100


names = st.text(st.characters(blacklist_characters=";=~:", blacklist_categories=("Cs", "Zl", "Zp", "Cc")),
                min_size=1, max_size=8).map(str.strip).filter(bool)


@given(names, names, st.floats(0.0, 3600.0), st.booleans())
def test_a_suggestion_is_an_entry_the_topology_reads_back(first: str, second: str, shortest: float,
                                                          overlap: bool) -> None:
    assume(first != second)
    suggestion = LinkSuggestion(first, second, overlap, shortest, shortest, 10, "left edge", "right edge")
    links = parse(suggestion.entry)
    pair = frozenset((first, second))
    if overlap:
        assert pair in links.overlapping
    else:
        assert links.min_transit_s[pair] <= shortest + 1e-9


def test_positions_in_words() -> None:
    assert [where(0.05, 0.5), where(0.95, 0.5), where(0.5, 0.1), where(0.5, 0.95), where(0.5, 0.5)] == [
        "left edge", "right edge", "top", "bottom", "middle"]
