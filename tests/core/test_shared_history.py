"""What processes on one shared PostgreSQL database tell each other, on a real server: a merge made on a
station cannot be undone by a node that has not heard of it yet, and a node hears every other process's
targets, merges and new embeddings (with where and when they were seen) but not its own."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reid_desktop.core.store import change_feed
from reid_desktop.core.store.change_feed import ChangeListener
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.interface import SightingRecord, TrackKey
from reid_desktop.core.store.pg_schema import CHANGES_CHANNEL
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.shared_changes import (
    EmbeddingsAdded,
    Labelled,
    Merged,
    SharedEmbeddings,
    Split,
    TargetChanged,
    format_change,
)
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
        assert shared.cameras == ("right",) * 3  # times on this machine's clock (the same machine: the same)
        assert np.allclose(shared.timestamps, [2_000_003.0, 2_000_004.0, 2_000_005.0], atol=0.25)
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


def cut_off(listener: ChangeListener, pg_url: str) -> None:
    """The network drops the listener's connection; returns once it knows (it listens again 0.5 s later)."""
    import psycopg

    with psycopg.connect(pg_url, password=PASSWORD, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    deadline = time.monotonic() + 10
    while listener.listening.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not listener.listening.is_set()


def test_a_listener_back_from_a_lost_connection_catches_up_on_the_embeddings_it_missed(pg_url: str) -> None:
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
        cut_off(listener, pg_url)
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


def test_a_listener_catches_up_on_a_writer_that_drew_its_ids_before_the_outage_and_committed_during_it(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids are drawn when a row is written: a slow writer's older id commits after newer ones were heard."""
    import psycopg

    monkeypatch.setattr(change_feed, "MARK_EVERY_S", 0.1)
    location = parse_postgres_url(pg_url)
    node, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    node_run, other_run = begin(node), begin(other)
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, lambda: [node_run])
    try:
        other.attach_index("m", 8)  # a writer announces the embeddings of its index's model
        first, second = other.allocate_identity_id(), other.allocate_identity_id()
        assert first is not None and second is not None
        listener.start()
        assert listener.listening.wait(10)
        sight(other, other_run, "right", 1, 0, first)
        assert other.flush()
        assert wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        with psycopg.connect(pg_url, password=PASSWORD) as slow:  # one transaction, held open
            (held,) = slow.execute(
                "INSERT INTO embeddings (track_row, identity_id, sighting_id, model_key, quality, vector) "
                "SELECT track_row, identity_id, sighting_id, model_key, quality, vector FROM embeddings "
                "ORDER BY id DESC LIMIT 1 RETURNING id").fetchone()
            sight(other, other_run, "right", 2, 1, second)  # newer ids, committed and heard first
            assert other.flush()
            assert wait_for(heard, lambda c: isinstance(c, SharedEmbeddings) and c.embedding_ids.min() > held)
            moved = listener.horizon
            heard.clear()
            cut_off(listener, pg_url)
            slow.execute("SELECT pg_notify(%s, %s)",
                         (CHANGES_CHANNEL, format_change(EmbeddingsAdded(held, held, (other_run,)))))
            slow.commit()
            assert not listener.listening.is_set(), "committed while the listener was away"
        caught = wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        assert caught, "the slow writer's embedding is read when the listener is back"
        assert [int(i) for c in caught for i in c.embedding_ids] == [held]
        assert all(c.caught_up for c in caught)
        deadline = time.monotonic() + 10  # the markers move the horizon past the slow writer's transaction
        while (listener.horizon or 0) <= (moved or 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.horizon is not None and moved is not None and listener.horizon > moved
    finally:
        listener.stop()
        node.close()
        other.close()


def test_a_listener_started_after_the_index_read_the_database_catches_up_on_what_came_in_between(
        pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    node, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    node_run, other_run = begin(node), begin(other)
    try:
        other.attach_index("m", 8)
        identity = other.allocate_identity_id()
        assert identity is not None
        sight(other, other_run, "right", 1, 0, identity)
        assert other.flush()
        node.attach_index("m", 8)
        assert len(node.index) == 1
        sight(other, other_run, "right", 1, 1, identity)  # after the index read, before anyone listens
        assert other.flush()
        listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, lambda: [node_run],
                                  lambda: node.index_horizon)
        listener.start()
        try:
            caught = wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
            assert caught, "what came in between is read when the listener starts"
            for shared in caught:
                node.index_embeddings("m", shared.embedding_ids, shared.vectors, shared.caught_up)
            assert len(node.index) == 2, "read once, not doubled"
        finally:
            listener.stop()
    finally:
        node.close()
        other.close()


def test_what_a_listener_remembers_having_heard_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction left open on the server holds the horizon back: the newest heard are kept, the rest forgotten."""
    monkeypatch.setattr(change_feed, "HEARD_KEPT", 3)
    listener = ChangeListener(parse_postgres_url("postgresql://reid@127.0.0.1/reid"), lambda change: None,
                              lambda: "m", lambda: 0, list)
    for first in range(0, 10, 2):
        listener._heard_rows([(first, 100 + first), (first + 1, 100 + first)])
    assert listener._heard == {7: 106, 8: 108, 9: 108}


def test_forged_notifications_neither_steer_nor_stop_a_listener(pg_url: str) -> None:
    """Anyone who can connect can NOTIFY: a listener acts on what the database holds, counts only its own marks,
    and never reads rows twice; it still hears the real changes and catches up after an outage."""
    import psycopg

    location = parse_postgres_url(pg_url)
    node, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    node_run, other_run = begin(node), begin(other)
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, lambda: [node_run])
    try:
        for store in (node, other):
            store.attach_index("m", 8)
        person = other.allocate_identity_id()
        assert person is not None
        listener.start()
        assert listener.listening.wait(10)
        sight(other, other_run, "right", 1, 0, person)
        assert other.flush()
        assert wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        with psycopg.connect(pg_url, password=PASSWORD, autocommit=True) as forger:
            for payload in (f"target {person} 1", f"merged 999999 {person}", f"split 1 {person} 999999",
                            f"label {person}", f"embeddings 0 {2**62} {other_run}"):
                forger.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))
            for mark in ("abc", str(2**60)):  # a made-up horizon would hide everything written before it
                forger.execute("SELECT pg_notify(%s, %s)", (f"reid_mark_{listener.backend_pid}", mark))
        time.sleep(1.0)
        assert [c for c in heard if isinstance(c, SharedEmbeddings)] and len(
            [c for c in heard if isinstance(c, SharedEmbeddings)]) == 1, "no row is read twice"
        assert not [c for c in heard if isinstance(c, Merged | Split | Labelled)]
        assert TargetChanged(person, True) not in heard  # applied as recorded: not a target
        assert listener.listening.is_set() and listener.horizon is not None and listener.horizon < 2**59

        other.set_target(person)  # the real thing is heard
        assert wait_for(heard, lambda c: c == TargetChanged(person, True))
        heard.clear()
        cut_off(listener, pg_url)
        for frame in range(1, 4):
            sight(other, other_run, "right", 2, frame, person)
        assert other.flush()
        assert listener.listening.wait(10)
        caught = wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        assert sum(len(c.embedding_ids) for c in caught) == 3, "caught up after the outage"
    finally:
        listener.stop()
        node.close()
        other.close()


def test_a_target_dropped_while_a_node_was_away_is_dropped_when_it_is_back(pg_url: str, pose_detector) -> None:
    """Notifications are not kept for the absent: back from an outage, the listener hands over the targets as the
    database holds them, and the pipeline follows exactly those (it no longer follows the one dropped meanwhile)."""
    from reid_desktop.core.config import load
    from reid_desktop.core.engine.pipeline import Pipeline
    from reid_desktop.core.store.shared_changes import TargetsNow
    from reid_desktop.core.vision.embedding import ColorTextureEmbedder

    location = parse_postgres_url(pg_url)
    node, station = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    node_run, station_run = begin(node), begin(station)
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, lambda: [node_run])
    try:
        kept, dropped = station.allocate_identity_id(), station.allocate_identity_id()
        assert kept is not None and dropped is not None
        for frame, person in enumerate((kept, dropped)):
            sight(station, station_run, "right", frame + 1, frame, person)
        assert station.flush()
        station.set_target(kept)
        station.set_target(dropped)
        listener.start()
        assert listener.listening.wait(10)
        assert wait_for(heard, lambda c: c == TargetsNow(frozenset({kept, dropped})))
        cut_off(listener, pg_url)
        station.set_target(dropped, False)  # the operator stops following while the node is away
        assert listener.listening.wait(10)
        assert wait_for(heard, lambda c: c == TargetsNow(frozenset({kept})))
    finally:
        listener.stop()
        node.close()
        station.close()

    pipeline = Pipeline(load(overrides={"detector.device": "cpu"}), None, detector=pose_detector,
                        embedder=ColorTextureEmbedder())
    gallery = np.eye(1, ColorTextureEmbedder().dim, dtype=np.float32)
    for person in (kept, dropped):
        pipeline.matcher.restore(person, gallery, is_target=True)
    pipeline.commands.apply_change(TargetsNow(frozenset({kept})))
    assert pipeline.matcher.targets == {kept}
