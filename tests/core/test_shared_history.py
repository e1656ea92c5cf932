"""What processes on one shared PostgreSQL database tell each other, on a real server: a merge made on a
station cannot be undone by a node that has not heard of it yet, and a node hears every other process's
targets, merges and new embeddings (with where and when they were seen) but not its own."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reid_desktop.core.database_url import parse_postgres_url
from reid_desktop.core.node import ChangeListener
from reid_desktop.core.pg_store import PgSightingStore
from reid_desktop.core.shared_changes import Merged, SharedEmbeddings, TargetChanged
from reid_desktop.core.store import SightingRecord, TrackKey
from tests.pg_server import PASSWORD


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)


def begin(store: PgSightingStore) -> int:
    return store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key="m",
                           warnings=[], config={})


def sight(store: PgSightingStore, run: int, camera: str, track: int, frame: int, identity: int) -> None:
    vector = np.random.default_rng(frame).normal(size=8).astype(np.float32)
    store.record(SightingRecord(
        run_id=run, track=TrackKey(camera, f"rtsp://cameras/{camera}", "rtsp", 0, track), identity_id=identity,
        frame_index=frame, timestamp=2_000_000.0 + frame, media_time=None, box=(10.0, 20.0, 50.0, 120.0),
        confidence=0.9, match_score=None, embedding=vector / np.linalg.norm(vector), model_key="m", quality=0.5))


def identity_rows(store: PgSightingStore) -> dict[int, int]:
    return {int(i): int(n) for i, n in store._db.execute(
        "SELECT identity_id, COUNT(*) FROM sightings GROUP BY identity_id").fetchall()}


def test_a_node_that_has_not_heard_of_a_merge_cannot_bring_the_merged_identity_back(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    node, station = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location)
    try:
        run = begin(node)
        keep, drop, later = (node.allocate_identity_id() for _ in range(3))
        assert keep is not None and drop is not None and later is not None
        for frame in range(10):
            sight(node, run, "gate", 1, frame, keep)
            sight(node, run, "hall", 2, frame, drop)
        assert node.flush()
        station.merge_identities(keep, drop)
        for frame in range(10, 20):  # the node still believes in ``drop``: these wait in its buffer
            sight(node, run, "hall", 2, frame, drop)
        assert node.flush(force=True)
        assert identity_rows(node) == {keep: 30}
        assert node.identity(drop) is None
        sight(node, run, "door", 3, 20, later)
        assert node.flush(force=True)
        station.merge_identities(later, keep)  # merged again: what named ``drop`` follows to ``later``
        sight(node, run, "hall", 2, 21, drop)
        sight(node, run, "gate", 1, 21, keep)
        assert node.flush(force=True)
        assert identity_rows(node) == {later: 33}
        assert [i.identity_id for i in node.identities()] == [later]
    finally:
        node.close()
        station.close()


def test_a_node_that_has_not_heard_of_a_split_writes_the_track_under_its_new_identity(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    node, station = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location)
    try:
        run = begin(node)
        walker, passer = node.allocate_identity_id(), node.allocate_identity_id()
        assert walker is not None and passer is not None
        for frame in range(10):
            sight(node, run, "gate", 1, frame, walker)
            sight(node, run, "gate", 2, frame, passer)  # track 2 is someone else, wrongly given ``walker`` later
        for frame in range(10, 15):
            sight(node, run, "gate", 2, frame, walker)
        assert node.flush()
        track_row = node.track_row(run, "gate", 0, 2)
        assert track_row is not None
        new = station.split_track(track_row)
        for frame in range(15, 25):  # the node still believes track 2 is ``walker``
            sight(node, run, "gate", 2, frame, walker)
            sight(node, run, "gate", 1, frame, walker)  # track 1 is, and stays so
        assert node.flush(force=True)
        by_track = {(int(t), int(i)): int(n) for t, i, n in node._db.execute(
            "SELECT t.track_id, s.identity_id, COUNT(*) FROM sightings s JOIN tracks t ON t.id = s.track_row "
            "GROUP BY t.track_id, s.identity_id").fetchall()}
        assert by_track == {(1, walker): 20, (2, new): 25}
        assert node._db.execute("SELECT identity_id FROM tracks WHERE id = ?", (track_row,)).fetchone()[0] == new
    finally:
        node.close()
        station.close()


def wait_for(received: list, test, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in list(received) if test(c)]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_a_node_hears_other_processes_changes_but_not_its_own(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    node, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard_by_node: list = []
    heard_by_other: list = []
    listeners = [ChangeListener(location, heard_by_node.append, lambda: "m", lambda: node.backend_pid, list),
                 ChangeListener(location, heard_by_other.append, lambda: "m", lambda: other.backend_pid, list)]
    try:
        for store in (node, other):
            store.attach_index("m", 8)
        node_run, other_run = begin(node), begin(other)
        mine, theirs, target = (other.allocate_identity_id() for _ in range(3))
        assert mine is not None and theirs is not None and target is not None
        for frame in range(3):
            sight(other, other_run, "right", 7, frame, theirs)
            sight(other, other_run, "right", 8, frame, mine)
            sight(other, other_run, "right", 9, frame, target)
        assert other.flush()
        for listener in listeners:
            listener.start()
        assert all(listener.listening.wait(10) for listener in listeners)
        other.set_target(target)
        for frame in range(3, 6):
            sight(other, other_run, "right", 7, frame, theirs)
        sight(node, node_run, "left", 1, 0, mine)
        assert other.flush() and node.flush()

        embeddings = wait_for(heard_by_node, lambda c: isinstance(c, SharedEmbeddings))
        other.merge_identities(mine, theirs)  # after they were read: read later, they would be ``mine``'s already
        assert len(embeddings) == 1, "the node hears the other's embeddings"
        shared = embeddings[0]
        assert shared.run_ids == (other_run,) and list(shared.identity_ids) == [theirs] * 3
        assert shared.cameras == ("right",) * 3 and list(shared.timestamps) == [2_000_003.0, 2_000_004.0, 2_000_005.0]
        assert shared.vectors.shape == (3, 8) and shared.created[theirs] == 2_000_000.0
        assert wait_for(heard_by_node, lambda c: c == Merged(mine, theirs))
        assert wait_for(heard_by_node, lambda c: c == TargetChanged(target, True))
        # the other process hears the node's embeddings, and nothing of its own
        from_node = wait_for(heard_by_other, lambda c: isinstance(c, SharedEmbeddings))
        assert [s.run_ids for s in from_node] == [(node_run,)]
        assert not [c for c in heard_by_other if isinstance(c, Merged)]
        assert not [c for c in heard_by_node if isinstance(c, SharedEmbeddings) and node_run in c.run_ids]
        # both indexes: each has what it wrote; the node adds what it heard
        node.index_embeddings("m", shared.embedding_ids, shared.vectors)
        assert len(node.index) == 1 + 3
    finally:
        for listener in listeners:
            listener.stop()
        node.close()
        other.close()


def test_a_listener_back_from_a_lost_connection_catches_up_on_the_embeddings_it_missed(pg_url: str) -> None:
    import psycopg

    location = parse_postgres_url(pg_url)
    node, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    node_run, other_run = begin(node), begin(other)
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, lambda: [node_run])
    try:
        for store in (node, other):
            store.attach_index("m", 8)
        first, second = other.allocate_identity_id(), other.allocate_identity_id()
        mine = node.allocate_identity_id()
        assert first is not None and second is not None and mine is not None
        listener.start()
        assert listener.listening.wait(10)
        sight(other, other_run, "right", 1, 0, first)
        assert other.flush()
        assert wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        heard.clear()
        with psycopg.connect(pg_url, password=PASSWORD, autocommit=True) as admin:  # the network drops it
            admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
        deadline = time.monotonic() + 10
        while listener.listening.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not listener.listening.is_set()
        for frame in range(1, 4):  # announced while nobody listens: lost, as notifications are
            sight(other, other_run, "right", 2, frame, second)
            sight(node, node_run, "left", 3, frame, mine)
        assert other.flush() and node.flush()
        assert listener.listening.wait(10)
        caught = wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        assert caught, "the missed embeddings are read when the listener is back"
        assert set(np.concatenate([c.identity_ids for c in caught]).tolist()) == {second}  # not its own
        assert sum(len(c.embedding_ids) for c in caught) == 3
    finally:
        listener.stop()
        node.close()
        other.close()
