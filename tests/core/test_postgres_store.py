"""The shared database under faults, on a real PostgreSQL server: a server restart mid-run, two stores
(two nodes) writing at once. Sightings are counted: none lost, none written twice."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.interface import SightingRecord, TrackKey
from reid_desktop.core.store.pg_store import PgSightingStore
from tests.core.test_shared_history import begin
from tests.pg_server import PASSWORD


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)


def record(store: PgSightingStore, run: int, camera: str, frame: int, identity: int | None) -> None:
    vector = np.random.default_rng(frame).normal(size=8).astype(np.float32)
    store.record(SightingRecord(
        run_id=run, track=TrackKey(camera, f"rtsp://cameras/{camera}", "rtsp", 0, 1 + frame // 25),
        identity_id=identity, frame_index=frame, timestamp=1_000_000.0 + frame, media_time=None,
        box=(10.0, 20.0, 50.0, 120.0), confidence=0.9, match_score=None,
        embedding=vector / np.linalg.norm(vector), model_key="m", quality=0.5))


def counted(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as con:
        total, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (run_id, source_id, frame_index)) FROM sightings").fetchone()
    return int(total), int(distinct)


def test_a_server_restart_mid_run_loses_and_duplicates_nothing(pg_server, pg_url: str) -> None:
    store = PgSightingStore(parse_postgres_url(pg_url), commit_interval_s=0)
    try:
        run = begin(store)
        identity = store.allocate_identity_id()
        for frame in range(50):
            record(store, run, "gate", frame, identity)
        assert store.flush()
        pg_server.stop("fast")
        try:
            for frame in range(50, 120):
                record(store, run, "gate", frame, store.allocate_identity_id())  # ids come from the reserved block
            assert not store.flush(force=True)
            health = store.health
            assert not health.ok and health.pending == 70
            assert "cannot connect to the database" in health.message and "Connection refused" in health.message
        finally:
            pg_server.start()
        assert store.flush(force=True), store.health.message
        assert store.health.ok and store.pending == 0
    finally:
        store.close()
    assert counted(pg_url) == (120, 120)


def test_two_nodes_write_one_history_with_disjoint_identities(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    stores = [PgSightingStore(location, commit_interval_s=0) for _ in range(2)]
    identities: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def node(index: int) -> None:
        store = stores[index]
        try:
            run = begin(store)
            for frame in range(200):
                if frame % 10 == 0:
                    identities[index].append(store.allocate_identity_id())  # type: ignore[arg-type]
                record(store, run, f"camera-{index}", frame, identities[index][-1])
                if frame % 20 == 19:
                    assert store.flush()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in stores:
        store.close()
    assert errors == []
    assert not set(identities[0]) & set(identities[1]), "two nodes never hand out one identity id"
    assert counted(pg_url) == (400, 400)
    reader = PgSightingStore(location, readonly=True)
    try:
        assert {i.identity_id for i in reader.identities()} == set(identities[0]) | set(identities[1])
        with pytest.raises(Exception, match="read-only"):
            reader.set_label(identities[0][0], "x")
    finally:
        reader.close()


def test_a_station_reading_an_unreachable_server_gets_one_clear_line(pg_server) -> None:
    from reid_desktop.core.store.database_url import PostgresLocation
    from reid_desktop.core.store.interface import StoreError

    port = pg_server.port + 1
    closed = PostgresLocation(f"postgresql://reid@127.0.0.1:{port}/x", "reid", "127.0.0.1", port, "x")
    for readonly in (True, False):
        with pytest.raises(StoreError, match=r"cannot connect to the database x on 127\.0\.0\.1.*refused"):
            PgSightingStore(closed, readonly=readonly)


def test_a_stations_reads_reuse_pooled_connections_and_survive_a_server_restart(pg_server, pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    PgSightingStore(location).close()  # the schema
    served_by = set()
    for _ in range(20):  # a panel refreshing: one read after the other
        with PgSightingStore(location, readonly=True) as reader:
            served_by.add(reader.backend_pid)
    assert len(served_by) <= 2, "reads one after the other take pooled connections (the pool keeps one or two)"
    with PgSightingStore(location, readonly=True) as one, PgSightingStore(location, readonly=True) as other:
        assert one.backend_pid != other.backend_pid  # two reads at once: two connections
    pg_server.stop("fast")
    pg_server.start()
    with PgSightingStore(location, readonly=True) as after:  # the pool's connections died with the server
        assert after.identities() == [] and after.backend_pid not in served_by


def test_node_local_indexes_of_other_databases_do_not_pile_up(pg_url: str) -> None:
    import os

    from reid_desktop.core.paths import data_dir
    from reid_desktop.core.store.pg_store import INDEXES_KEPT

    folder = data_dir() / "indexes"
    folder.mkdir(parents=True, exist_ok=True)
    for age in range(12):  # indexes of databases used long ago, oldest first
        old = folder / f"gone{age}.0123456789abcdef.faiss"
        for path in (old, old.with_name(old.name + ".json")):
            path.write_bytes(b"x")
            os.utime(path, (1_000_000 + age, 1_000_000 + age))
    store = PgSightingStore(parse_postgres_url(pg_url), commit_interval_s=0)
    try:
        store.attach_index("m", 8)
        assert store.flush(force=True)
    finally:
        store.close()
    kept = sorted(p.name for p in folder.glob("*.faiss"))
    assert len(kept) == INDEXES_KEPT and store.index_path("m").name in kept
    assert "gone11.0123456789abcdef.faiss" in kept and "gone0.0123456789abcdef.faiss" not in kept
    assert len(list(folder.glob("*.json"))) == INDEXES_KEPT


def varied_records(run: int, count: int) -> list[SightingRecord]:
    """What a camera's tracks produce: identities found mid-track, embeddings of changing quality, best crops,
    an alert, recordings and live cameras."""
    rng = np.random.default_rng(5)
    records = []
    for frame in range(count):
        track = 1 + frame % 7
        vector = rng.normal(size=8).astype(np.float32)
        records.append(SightingRecord(
            run_id=run, track=TrackKey("gate" if track % 2 else "hall", f"rtsp://cameras/{track % 2}", "rtsp", 0,
                                       track),
            identity_id=None if frame < 10 else 100 + track % 4, frame_index=frame, timestamp=1_000_000.0 + frame,
            media_time=frame / 25 if track % 2 else None, box=(10.0 + frame, 20.0, 50.0, 120.0),
            confidence=0.5 + (frame % 5) / 10, match_score=None if frame % 3 else 0.7,
            embedding=vector / np.linalg.norm(vector) if frame % 2 == 0 else None, model_key="m",
            quality=float(rng.uniform()), thumbnail=b"jpeg%d" % frame if frame % 4 == 0 else None,
            alert=b"alert" if frame == 33 else None))
    return records


def table_rows(store: PgSightingStore) -> dict[str, list[tuple]]:
    return {table: store._db.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall() for table, columns in (
        ("identities", "id, created, first_seen, last_seen, best_quality, thumbnail"),
        ("tracks", "id, run_id, source_id, segment, track_id, identity_id, first_seen, last_seen, best_quality, "
                   "thumbnail"),
        ("sightings", "id, run_id, source_id, track_row, identity_id, frame_index, timestamp, media_time, x1, y1, "
                      "x2, y2, confidence, match_score"),
        ("embeddings", "id, track_row, identity_id, sighting_id, model_key, quality, vector"),
        ("alerts", "sighting_id, thumbnail"))}


def test_a_flush_is_a_few_statements_whatever_its_size_and_writes_what_record_by_record_writes(pg_server) -> None:
    import functools

    from reid_desktop.core.store.sighting_writes import SightingWrites

    stores = [PgSightingStore(parse_postgres_url(pg_server.create_database(name)), commit_interval_s=60,
                              embeddings_per_track=3) for name in ("batched", "one_by_one")]
    batched, one_by_one = stores
    one_by_one._writes.batch = functools.partial(SightingWrites.batch, one_by_one._writes)  # the per-record path
    statements = {id(store): 0 for store in stores}

    def counted_statements(store: PgSightingStore) -> None:
        execute = store._db.execute

        def counting(sql: str, params=()):
            statements[id(store)] += 1
            return execute(sql, params)

        store._db.execute = counting

    for store in stores:
        counted_statements(store)
    try:
        for store in stores:
            store.attach_index("m", 8)
            run = begin(store)
            records = varied_records(run, 240)
            spent = []
            for part in (records[:40], records[40:]):  # 40, then 200 records a flush
                before = statements[id(store)]
                for r in part:
                    store.record(r)
                assert store.flush(force=True)
                spent.append(statements[id(store)] - before)
            if store is batched:
                assert spent[1] <= spent[0] <= 20, "200 records cost no more statements than 40 (new cameras: one each)"
            else:
                assert spent[1] > 4 * 200
        assert table_rows(batched) == table_rows(one_by_one)
        assert len(table_rows(batched)["embeddings"]) == 7 * 3  # the best three of each track
        indexed = [set(store.index.search(np.ones((1, 8), np.float32), 100)[1][0].tolist()) - {-1} for store in stores]
        assert indexed[0] == indexed[1] == {row[0] for row in table_rows(batched)["embeddings"]}
    finally:
        for store in stores:
            store.close()


def test_camera_names_with_commas_stay_whole_in_identity_summaries(pg_url: str, tmp_path) -> None:
    """Both backends: an identity seen on "gate, north" and "hall" was seen on two cameras, not three."""
    from reid_desktop.core.store.storage import SightingStore

    for store in (SightingStore(tmp_path / "s.sqlite"), PgSightingStore(parse_postgres_url(pg_url))):
        with store:
            run = begin(store)
            seen = store.allocate_identity_id()
            record(store, run, "gate, north", 0, seen)
            record(store, run, "hall", 30, seen)
            assert store.flush()
            store.set_target(seen)
            assert [i.cameras for i in store.identities(run)] == [("gate, north", "hall")]
            assert store.identity(seen).cameras == ("gate, north", "hall")
            assert [t.cameras for t in store.targets()] == [("gate, north", "hall")]


def test_a_commit_whose_answer_is_lost_is_written_once(pg_server, pg_url: str) -> None:
    """The relay passes a flush's COMMIT to the server and cuts the connection before its answer: the store cannot
    tell whether it committed and writes the batch again. The rows are there once, and so are the index's."""
    from tests.tools.pg_relay import PgRelay

    with PgRelay(pg_server.port) as relay:
        relayed = pg_url.replace(f":{pg_server.port}/", f":{relay.port}/") + "?sslmode=disable"
        store = PgSightingStore(parse_postgres_url(relayed), commit_interval_s=60)
        try:
            store.attach_index("m", 8)
            run = begin(store)
            identity = store.allocate_identity_id()
            for frame in range(100):
                record(store, run, "gate", frame, identity)
            relay.lose_next_commit_reply()
            assert not store.flush(force=True)  # no answer: for all the store knows, nothing was written
            assert relay.commits_cut == 1 and store.pending == 100
            assert store.flush(force=True), store.health.message
            assert store.pending == 0 and len(store.index or []) == 100
        finally:
            store.close()
    assert counted(pg_url) == (100, 100)
    import psycopg

    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT sighting_id) FROM embeddings").fetchone() == (100, 100)


def test_reads_reconnect_after_a_server_restart_and_recall_waits_out_an_outage(pg_server, pg_url: str) -> None:
    """After a restart a look-up works without waiting for a write to reopen the connection; while the server is
    down a look-up says so as a storage error, and the matcher decides with the identities it holds (a camera's
    tracks are not dropped for it)."""
    from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
    from reid_desktop.core.store.interface import StorageUnavailable, StoreDirectory

    store = PgSightingStore(parse_postgres_url(pg_url), commit_interval_s=0)
    try:
        store.attach_index("m", 8)
        run = begin(store)
        person = store.allocate_identity_id()
        assert person is not None
        for frame in range(10):
            record(store, run, "gate", frame, person)
        assert store.flush()

        pg_server.stop("fast")
        pg_server.start()
        assert len(store.identity_gallery(person, "m", 4)) == 4  # a read first: it reconnects by itself

        matcher = IdentityMatcher(threshold=0.5, directory=StoreDirectory(store, "m", 8, 4))
        query = store.identity_gallery(person, "m", 4)[0]
        pg_server.stop("fast")
        try:
            with pytest.raises(StorageUnavailable):
                store.identities()
            decisions = []
            for _ in range(2):  # the first ask starts the index look-up (in memory); the second recalls
                decisions = matcher.assign([MatchRequest("t1", query)])
            assert decisions and decisions[0].is_new and matcher.directory_failing
        finally:
            pg_server.start()
        again = IdentityMatcher(threshold=0.5, directory=StoreDirectory(store, "m", 8, 4))
        for _ in range(2):
            answer = again.assign([MatchRequest("t2", query)])
        assert answer and answer[0].identity_id == person  # back: the stored person is recalled again
    finally:
        store.close()


def test_a_long_edit_elsewhere_fails_a_flush_in_seconds_and_its_sightings_wait(pg_url: str) -> None:
    """A station holding the edit lock (a long merge or retention) must not hold every node's flush, and with it
    the engine, for as long as it likes: the flush gives up after LOCK_WAIT_S and its records wait in memory."""
    import time

    import psycopg

    from reid_desktop.core.store.pg_schema import EDIT_LOCK
    from reid_desktop.core.store.pg_store import LOCK_WAIT_S

    store = PgSightingStore(parse_postgres_url(pg_url), commit_interval_s=0)
    try:
        run = begin(store)
        identity = store.allocate_identity_id()
        for frame in range(20):
            record(store, run, "gate", frame, identity)
        with psycopg.connect(pg_url) as station:  # a transaction holding the edit lock alone
            station.execute("SELECT pg_advisory_xact_lock(%s)", (EDIT_LOCK,))
            started = time.monotonic()
            assert not store.flush(force=True)
            waited = time.monotonic() - started
            assert "another process's edit" in store.health.message and store.pending == 20
        assert waited < LOCK_WAIT_S + 5
        assert store.flush(force=True), store.health.message
        assert store.pending == 0
    finally:
        store.close()
    assert counted(pg_url) == (20, 20)
