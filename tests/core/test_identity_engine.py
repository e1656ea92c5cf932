"""The identity engine at any history size: the store's vector index stays in step with the database,
survives restarts and damage, and lets a bounded matcher recognise people who return after a long time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.identity.matching import IdentityMatcher, MatchDecision, MatchRequest
from reid_desktop.core.store.interface import StoreDirectory
from reid_desktop.core.store.storage import SightingStore
from tests.core.test_store_edits import DIM, MODEL, Builder, direction


def decided(matcher: IdentityMatcher, request: MatchRequest) -> MatchDecision:
    """A track without an identity asks every frame: the first ask may only start its look-up in the index."""
    for _ in range(2):
        decisions = matcher.assign([request])
        if decisions:
            return decisions[0]
    raise AssertionError(f"{request.key} got no decision on its second ask")


def brute_force(store: SightingStore, query: np.ndarray, k: int) -> list[int]:
    ids, vectors = zip(*store.iter_embeddings(MODEL), strict=True)
    ids_all, matrix = np.concatenate(ids), np.concatenate(vectors)
    return [int(i) for i in ids_all[np.argsort(-(matrix @ query))[:k]]]


def hit_embedding_ids(store: SightingStore, query: np.ndarray, k: int) -> list[int]:
    hits = store.search(query, MODEL, k)
    by_sighting = {r[1]: r[0] for r in store._db.execute("SELECT id, sighting_id FROM embeddings")}
    return [by_sighting[h.sighting.id] for h in hits]


def fill(store: SightingStore, people: int, start: float = 1000.0) -> Builder:
    builder = Builder(store)
    for person in range(people):
        builder.track("cam1", person + 1, [start + person + i * 0.1 for i in range(5)], person=person)
    return builder


def test_index_follows_commits_and_retention_and_answers_like_brute_force(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        store.attach_index(MODEL, DIM)
        fill(store, 20)
        assert len(store.index or []) == 100
        query = direction(3)
        assert hit_embedding_ids(store, query, 5) == brute_force(store, query, 5)
        store.purge_older_than(1010.0)  # the first ten people go
        assert len(store.index or []) == store.embedding_stamp(MODEL)["count"] == 50
        assert all(h.sighting.identity_id > 10 for h in store.search(direction(3), MODEL, 10))


def test_index_is_saved_on_close_caught_up_after_a_crash_and_rebuilt_when_damaged(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.sqlite"
    with SightingStore(path) as store:
        store.attach_index(MODEL, DIM)
        fill(store, 10)
        index_file = store.index_path(MODEL)
    assert index_file.is_file()

    # a crash: more rows committed after the index was saved, and the index never saved again
    store = SightingStore(path)
    store.attach_index(MODEL, DIM)
    fill(store, 5, start=5000.0)
    store._db.close()
    store._lock.release()  # type: ignore[union-attr]
    with SightingStore(path) as store:
        index = store.attach_index(MODEL, DIM)
        assert len(index) == store.embedding_stamp(MODEL)["count"] == 75
        query = direction(12)  # later people reuse the first ones' noise: equal scores come in either order
        assert set(hit_embedding_ids(store, query, 5)) == set(brute_force(store, query, 5))

    index_file.write_bytes(b"garbage" + index_file.read_bytes()[7:])  # damaged on disk
    with SightingStore(path) as store:
        index = store.attach_index(MODEL, DIM)
        assert len(index) == 75
        assert set(hit_embedding_ids(store, direction(2), 4)) == set(brute_force(store, direction(2), 4))
    assert "not the file that was saved" in caplog.text

    # rows deleted by a program that did not keep the index (an older version's retention): rebuilt
    with SightingStore(path) as store:
        store.indexed.model = "another-model"  # this store does not hold the index while it deletes
        store.purge_older_than(1005.0)
    with SightingStore(path) as store:
        assert len(store.attach_index(MODEL, DIM)) == store.embedding_stamp(MODEL)["count"] == 50


def test_search_in_a_reader_thread_while_the_writer_records(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SightingStore(path) as writer:
        index = writer.attach_index(MODEL, DIM)
        builder = fill(writer, 5)
        results: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                with SightingStore(path, readonly=True) as store:
                    for _ in range(50):
                        results.append(len(store.search(direction(1), MODEL, 5, index=index)))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        for person in range(5, 25):
            builder.track("cam2", person + 1, [2000.0 + person], person=person)
        thread.join(30)
        assert not errors and len(results) == 50 and min(results) == 5


def test_matcher_memory_is_bounded_and_a_returning_person_is_recognised_through_the_index(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        store.attach_index(MODEL, DIM)
        matcher = IdentityMatcher(0.8, gallery_size=4, allocate_id=store.allocate_identity_id, active_limit=8,
                                  directory=StoreDirectory(store, MODEL, DIM, 4))
        builder = Builder(store)
        first = decided(matcher, MatchRequest("t0", direction(0)))
        matcher.add(first.identity_id, direction(0)[None], np.array([1.0]))
        builder.track("cam1", first.identity_id, [0.0, 0.1], person=0)
        sizes = []
        for person in range(1, 60):  # 59 other people pass by; the first one leaves the working set
            decision = decided(matcher, MatchRequest(f"t{person}", direction(person)))
            assert decision.is_new
            matcher.add(decision.identity_id, direction(person)[None], np.array([1.0]))
            builder.track("cam1", decision.identity_id, [float(person)], person=person)
            sizes.append(matcher.memory_bytes)
        assert len(matcher) <= 8 and first.identity_id not in matcher
        assert sizes[-1] == sizes[20]  # flat once the working set is full
        again = decided(matcher, MatchRequest("back", direction(0)))
        assert not again.is_new and again.identity_id == first.identity_id and matcher.recalled == 1


def test_targets_and_named_people_never_leave_the_working_set() -> None:
    matcher = IdentityMatcher(0.9, gallery_size=2, active_limit=4)
    target = matcher.create()
    assert target is not None
    matcher.add(target, direction(100)[None], np.array([1.0]))
    matcher.set_target(target)
    named = matcher.create()
    assert named is not None
    matcher.add(named, direction(101)[None], np.array([1.0]))
    matcher.pin(named)
    for person in range(30):
        decision = matcher.assign([MatchRequest(person, direction(person))])[0]
        matcher.add(decision.identity_id, direction(person)[None], np.array([1.0]))
    assert target in matcher and named in matcher and len(matcher) == 6
    assert matcher.assign([MatchRequest("t", direction(100))])[0].identity_id == target


class SlowDirectory:
    """A directory whose index search waits for the test: it stands for a search over a huge history."""

    def __init__(self, gallery: np.ndarray, fail: bool = False) -> None:
        self.release, self.searched = threading.Event(), threading.Event()
        self.stored, self.fail = gallery, fail
        self.searches = 0

    def __len__(self) -> int:
        return 1_000_000

    def nearest(self, embeddings: np.ndarray, k: int, min_score: float) -> list[list[int]]:
        self.searches += 1
        self.searched.set()
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("index damaged")
        return [[7] if float(e @ self.stored[0]) >= min_score else [] for e in embeddings]

    def owners(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        return {7: 42} if 7 in embedding_ids else {}

    def gallery(self, identity_id: int) -> np.ndarray:
        return self.stored


def test_the_index_look_up_runs_beside_the_engine_and_is_taken_on_the_next_ask() -> None:
    """A search through history never holds up the frame that asked: the track gets no decision yet, the
    frame goes on, and the next ask takes the answer (here: a person last seen long ago, identity 42)."""
    directory = SlowDirectory(direction(5)[None])
    matcher = IdentityMatcher(0.8, gallery_size=4, directory=directory)
    try:
        assert matcher.assign([MatchRequest("back", direction(5)), MatchRequest("new", direction(6))]) == []
        assert directory.searched.wait(30)  # under way while the engine went on
        directory.release.set()
        decisions = {d.key: d for d in matcher.assign([MatchRequest("back", direction(5)),
                                                        MatchRequest("new", direction(6))])}
        assert decisions["back"].identity_id == 42 and not decisions["back"].is_new and matcher.recalled == 1
        assert decisions["new"].is_new
    finally:
        directory.release.set()
        matcher.close()
    assert not any(t.name.startswith("identity-lookup") for t in threading.enumerate())


def test_a_failing_look_up_leaves_the_track_to_the_working_set(caplog: pytest.LogCaptureFixture) -> None:
    directory = SlowDirectory(direction(5)[None], fail=True)
    directory.release.set()
    matcher = IdentityMatcher(0.8, gallery_size=4, directory=directory)
    with caplog.at_level(logging.ERROR):
        decision = decided(matcher, MatchRequest("back", direction(5)))
    matcher.close()
    assert decision.is_new and "identity look-up failed" in caplog.text


def test_a_search_no_track_waits_for_any_more_is_not_run() -> None:
    directory = SlowDirectory(direction(5)[None])
    matcher = IdentityMatcher(0.8, gallery_size=4, directory=directory)
    try:
        matcher.assign([MatchRequest("a", direction(5))])
        assert directory.searched.wait(30)  # a's search runs (and waits for the test)
        matcher.assign([MatchRequest("b", direction(6))])  # b's is queued behind it
        matcher.withdraw("b")  # b's track ended at once
        directory.release.set()
        assert decided(matcher, MatchRequest("a", direction(5))).identity_id == 42
        decided(matcher, MatchRequest("c", direction(7)))  # searched after where b's search stood
    finally:
        directory.release.set()
        matcher.close()
    assert directory.searches == 2  # a and c
