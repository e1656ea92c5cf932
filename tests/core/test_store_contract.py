"""The store's contract: every member of ``HistoryStore`` (store/interface.py) exercised through the interface, on both
backends (a SQLite file, a database on a real PostgreSQL server), with the same expectations unless the interface
says a backend differs. Operator edits, the timeline, retention by age and the exports are in test_store_edits.py
(same fixtures, both backends); ``CONTRACT`` says where every member is, and a member added to the interface
without a contract test fails here."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.store.exports import export_csv, export_json
from reid_desktop.core.store.interface import HistoryStore, SightingRecord, TrackKey
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.sql_history import SqlHistory
from reid_desktop.core.types import CameraMean
from tests.core import test_store_edits as edits
from tests.core.test_store_edits import DIM, MODEL, Builder, direction, jpeg
from tests.core.test_store_interface import protocol_members


def _record(build: Builder, source: str, track_id: int, identity: int | None, t: float, *, person: int = 0,
            alert: bytes | None = None) -> SightingRecord:
    return SightingRecord(run_id=build.run, track=TrackKey(source, f"/videos/{source}.mp4", "file", 0, track_id),
                          identity_id=identity, frame_index=int(t), timestamp=t, media_time=t - 1000.0,
                          box=(1.0, 2.0, 30.0, 80.0), confidence=0.9, match_score=0.8, embedding=direction(person),
                          model_key=MODEL, quality=0.5, thumbnail=jpeg(track_id), alert=alert)


def test_a_run_is_opened_committed_and_closed(store: SqlHistory, build: Builder) -> None:
    assert store.health.ok and store.pending == 0 and store.location
    store.record(_record(build, "door", 1, None, 1000.0))
    assert store.pending == 1
    store.commit_interval_s = 0.0
    store.maybe_flush()  # in the store's own thread: the caller does not wait
    deadline = time.monotonic() + 10
    while store.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.pending == 0 and len(edits.rows(store, "SELECT id FROM sightings")) == 1
    store.record(_record(build, "door", 1, None, 1001.0))
    assert store.end_run(build.run, "finished")  # what waited is committed with the run's end
    assert store.pending == 0 and len(edits.rows(store, "SELECT id FROM sightings")) == 2
    (run,) = [r for r in store.runs() if r["id"] == build.run]
    assert run["status"] == "finished" and run["finished"] is not None and run["model_key"] == MODEL
    assert store.flush() and store.health.ok


def test_a_store_says_what_keeps_it_and_whether_other_processes_write_it(store: SqlHistory) -> None:
    """What the command line prints and what the engine's assembly asks, without asking which class it has."""
    if isinstance(store, PgSightingStore):
        assert (store.backend, store.address) == ("PostgreSQL", str(store.postgres))
        assert "FAISS index" in store.vector_search() and "pgvector" in store.vector_search()
        shared = store.shared
        assert shared is not None and shared.postgres == store.postgres and shared.backend_pid > 0
    else:
        assert (store.backend, store.address, store.shared) == ("SQLite", str(store.path), None)
        assert store.vector_search() == "a FAISS index saved beside the database file"
        assert store.location == store.path.name  # the window's short name; the full path is the address


def test_identity_ids_are_never_handed_out_twice(store: SqlHistory) -> None:
    drawn = [store.allocate_identity_id() for _ in range(300)]  # more than one block of ids
    assert None not in drawn and len(set(drawn)) == 300


def test_sightings_read_back_through_every_view(store: SqlHistory, build: Builder) -> None:
    person = store.allocate_identity_id()
    assert person is not None
    added = build.track("door", person, [1000.0, 1001.0, 1002.0], person=1)
    build.track("hall", person, [1010.0, 1011.0], person=1)
    (summary,) = store.identities(build.run)
    assert summary.identity_id == person and summary.sightings == 5 and set(summary.cameras) == {"door", "hall"}
    assert (summary.first_seen, summary.last_seen) == (1000.0, 1011.0)
    assert store.identity(person) == summary and store.identity(person + 10_000) is None
    door = store.sightings(source="door")
    assert [s.id for s in door] == added.sighting_ids and all(s.identity_id == person for s in door)
    assert len(store.sightings(identity_id=person)) == 5
    assert store.sighting_track_row(added.sighting_ids[0]) == added.track_row
    assert store.track_identity(added.track_row) == person
    assert store.track_key(added.track_row) == (build.run, "door", 0, 1)
    assert store.track_thumbnail(added.track_row) == added.thumbnail
    assert store.thumbnail(person) is not None
    assert [s.source for s in store.track_segments(person)] == ["door", "hall"]
    assert store.node_cameras() == [] or isinstance(store, PgSightingStore)  # nodes exist on a shared database only


def test_a_label_and_a_target_are_kept_and_listed(store: SqlHistory, build: Builder) -> None:
    person = store.allocate_identity_id()
    assert person is not None
    build.track("door", person, [1000.0, 1001.0], person=1)
    store.set_label(person, "Courier")
    store.set_target(person)
    summary = store.identity(person)
    assert summary is not None and summary.label == "Courier" and summary.is_target
    assert [t.identity_id for t in store.targets()] == [person]
    store.set_target(person, False)
    assert store.targets() == []


def test_an_automatic_correction_moves_the_track_and_is_audited(store: SqlHistory, build: Builder) -> None:
    first, second = store.allocate_identity_id(), store.allocate_identity_id()
    assert first is not None and second is not None
    added = build.track("door", first, [1000.0, 1001.0], person=1)
    key = TrackKey("door", "/videos/door.mp4", "file", 0, 1)
    assert store.correct_track(build.run, key, second, first, 0.77)
    assert store.track_identity(added.track_row) == second
    assert {s.identity_id for s in store.sightings(source="door")} == {second}
    (correction,) = store.corrections()
    assert (correction.actor, correction.from_identity, correction.to_identity) == ("auto", first, second)
    assert correction.score == pytest.approx(0.77)
    assert not store.correct_track(build.run, TrackKey("door", "/videos/door.mp4", "file", 0, 99), second, first, 0.5)


def test_an_alert_is_the_sighting_it_was_raised_on(store: SqlHistory, build: Builder) -> None:
    person = store.allocate_identity_id()
    assert person is not None
    store.record(_record(build, "door", 1, person, 1000.0, alert=b"picture of the moment"))
    store.record(_record(build, "door", 1, person, 1001.0))
    assert store.flush()
    (alert,) = store.alerts(person)
    assert (alert.source, alert.timestamp, alert.thumbnail) == ("door", 1000.0, b"picture of the moment")
    assert store.alerts() == [alert] and store.alerts(person + 10_000) == []


def test_the_vector_index_galleries_and_search_agree_with_the_rows(store: SqlHistory, build: Builder) -> None:
    one, two = store.allocate_identity_id(), store.allocate_identity_id()
    assert one is not None and two is not None
    build.track("door", one, [1000.0, 1001.0, 1002.0], person=1)
    build.track("hall", two, [1010.0, 1011.0], person=2)
    index = store.attach_index(MODEL, DIM)
    assert len(index) == 5
    hits = store.search(direction(2), MODEL, k=2, vectors=True)
    assert [h.sighting.identity_id for h in hits] == [two, two] and all(h.vector is not None for h in hits)
    _, ids = index.search(direction(1)[None], 3)
    assert set(store.embedding_identities([int(i) for i in ids[0]]).values()) == {one}
    assert store.identity_gallery(one, MODEL, per_identity=2).shape == (2, DIM)
    galleries = {identity: (target, named, len(vectors))
                 for identity, target, named, vectors in store.identity_galleries(MODEL, per_identity=8, recent=10)}
    assert galleries == {one: (False, False, 3), two: (False, False, 2)}
    # another process's embeddings join this process's index, and leave it when that process deletes them
    store.index_embeddings(MODEL, np.array([900_001]), direction(7)[None])
    assert index.search(direction(7)[None], 1)[1][0][0] == 900_001
    store.index_embeddings(MODEL, np.array([900_001]), direction(7)[None], known=True)  # read again: not doubled
    assert len(index) == 6
    store.unindex_embeddings(np.array([900_001]))
    assert len(index) == 5


def test_camera_means_are_kept_per_camera_and_model(store: SqlHistory) -> None:
    assert store.camera_means(MODEL) == {}
    store.save_camera_means(MODEL, {"door": CameraMean(direction(1), 40), "hall": CameraMean(direction(2), 7)})
    store.save_camera_means(MODEL, {"door": CameraMean(direction(3), 41)})  # a newer mean replaces the old
    kept = store.camera_means(MODEL)
    assert set(kept) == {"door", "hall"} and kept["door"].count == 41
    assert np.allclose(kept["door"].vector, direction(3)) and store.camera_means("another model") == {}


def test_confirmed_tracks_are_those_the_operator_vouched_for(store: SqlHistory, build: Builder) -> None:
    named, unknown = store.allocate_identity_id(), store.allocate_identity_id()
    assert named is not None and unknown is not None
    build.track("door", named, [1000.0 + i for i in range(10)], person=1)
    build.track("hall", unknown, [1010.0, 1011.0], person=2)
    store.set_label(named, "Guard")
    labels, tracks = store.confirmed_tracks(max_per_track=4)
    assert labels == {named: "Guard"}
    (track,) = tracks
    assert track.identity == named and track.source == "door" and len(track.samples) == 4


def test_retention_rounds_run_where_the_store_commits(store: SqlHistory, build: Builder) -> None:
    person = store.allocate_identity_id()
    assert person is not None
    old = time.time() - 40 * 86400
    build.track("door", person, [old, old + 1], person=1)
    build.track("door", person, [time.time()], person=1)
    done: Future[None] = store.in_commit_thread(lambda: None)
    done.result(timeout=30)
    if isinstance(store, PgSightingStore):
        # a shared database's retention is its policy (``db retention``), never one machine's setting; its disk is
        # its administrator's: no size limit, nothing to give back
        assert store.purge_expired(30) == 0 and store.enforce_size(1) == 0
    else:
        assert store.purge_expired(30) == 2 and len(store.sightings(identity_id=person)) == 1
        assert store.enforce_size(1) == 1 and store.sightings() == []
    store.reclaim()
    assert store.health.ok


def test_exports_over_either_history_hold_every_sighting(store: SqlHistory, build: Builder, tmp_path: Path) -> None:
    person = store.allocate_identity_id()
    assert person is not None
    build.track("door", person, [1000.0, 1001.0], person=1)
    build.track("hall", None, [1010.0], person=2)
    assert export_csv(store, tmp_path / "all.csv") == 3
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 4  # a header and the rows
    assert export_json(store, tmp_path / "one.json", identity_id=person) == 2
    assert len(json.loads((tmp_path / "one.json").read_text())["sightings"]) == 2


def test_a_closed_store_has_committed_everything(store: SqlHistory, build: Builder) -> None:
    store.record(_record(build, "door", 1, None, 1000.0))
    store.close()
    assert len(edits.rows(store, "SELECT id FROM sightings")) == 1


# where each member of the interface is held to its contract, on both backends
CONTRACT = {
    test_a_run_is_opened_committed_and_closed: {"begin_run", "end_run", "runs", "record", "flush", "maybe_flush",
                                                "pending", "health", "location"},
    test_a_store_says_what_keeps_it_and_whether_other_processes_write_it: {"address", "backend", "shared",
                                                                           "vector_search"},
    test_identity_ids_are_never_handed_out_twice: {"allocate_identity_id"},
    test_sightings_read_back_through_every_view: {"identities", "identity", "sightings", "sighting_track_row",
                                                   "track_identity", "track_key", "track_thumbnail", "thumbnail",
                                                   "track_segments", "node_cameras"},
    test_a_label_and_a_target_are_kept_and_listed: {"set_label", "set_target", "targets"},
    test_an_automatic_correction_moves_the_track_and_is_audited: {"correct_track", "corrections"},
    test_an_alert_is_the_sighting_it_was_raised_on: {"alerts"},
    test_the_vector_index_galleries_and_search_agree_with_the_rows: {
        "attach_index", "search", "embedding_identities", "identity_gallery", "identity_galleries",
        "index_embeddings", "unindex_embeddings"},
    test_camera_means_are_kept_per_camera_and_model: {"camera_means", "save_camera_means"},
    test_confirmed_tracks_are_those_the_operator_vouched_for: {"confirmed_tracks"},
    test_retention_rounds_run_where_the_store_commits: {"in_commit_thread", "purge_expired", "enforce_size",
                                                         "reclaim"},
    test_a_closed_store_has_committed_everything: {"close"},
    edits.test_merge_moves_every_row_and_search_finds_the_kept_identity: {"merge_identities"},
    edits.test_split_gives_one_track_a_new_identity: {"split_track"},
    edits.test_purge_deletes_old_rows_and_keeps_the_galleries_of_named_and_followed_people: {"purge_older_than"},
}


def test_every_member_of_the_interface_has_a_contract_test() -> None:
    covered = set().union(*CONTRACT.values())
    assert covered == set(protocol_members(HistoryStore)), (
        f"without a contract test: {set(protocol_members(HistoryStore)) - covered}; "
        f"not in the interface: {covered - set(protocol_members(HistoryStore))}")
