"""Two nodes and a station on one PostgreSQL database while the network slows down and drops every connection
and the server stops and starts again (issue 28): every sighting is stored exactly once, and no node's camera
loop waits on the database: commits run in the store's commit thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

from reid_desktop.core.store.commit_thread import COMMIT_WAIT_S
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.interface import SightingRecord, StorageUnavailable, TrackKey
from reid_desktop.core.store.pg_store import PgSightingStore
from tests.core.test_shared_history import begin
from tests.pg_server import PASSWORD
from tests.tools.pg_relay import PgRelay

FRAME_S = 0.04  # each node's camera loop: 25 frames a second
STALL_LIMIT_S = COMMIT_WAIT_S  # the longest a commit under way may hold the camera loop (once)


class Node:
    """A node's camera loop on its own store: a sighting a frame, a new track (and identity) every 25 frames, the
    store's commit when due; how long each frame's database work held the loop."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.store = PgSightingStore(parse_postgres_url(url), commit_interval_s=0.25, node=name)
        self.run = begin(self.store)
        self.recorded = 0
        self.longest_stall_s = 0.0
        self.identities: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"camera-{name}", daemon=True)

    def _loop(self) -> None:
        identity: int | None = None
        frame = 0
        while not self.stop.is_set():
            started = time.monotonic()
            if frame % 25 == 0:
                identity = self.store.allocate_identity_id()
                if identity is not None:
                    self.identities.append(identity)
            vector = np.random.default_rng(frame).normal(size=8).astype(np.float32)
            self.store.record(SightingRecord(
                run_id=self.run, track=TrackKey(self.name, f"rtsp://{self.name}/1", "rtsp", 0, 1 + frame // 25),
                identity_id=identity, frame_index=frame, timestamp=time.time(), media_time=None,
                box=(10.0, 20.0, 50.0, 120.0), confidence=0.9, match_score=None,
                embedding=vector / np.linalg.norm(vector), model_key="m", quality=0.5))
            self.store.maybe_flush()
            self.recorded += 1
            frame += 1
            self.longest_stall_s = max(self.longest_stall_s, time.monotonic() - started)
            time.sleep(FRAME_S)


class Station:
    """An operator following and naming people as they appear: identity edits, which take the edit lock alone."""

    def __init__(self, url: str, nodes: list[Node]) -> None:
        self.store = PgSightingStore(parse_postgres_url(url), commit_interval_s=0)
        self.nodes = nodes
        self.edits = self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="station", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.3):
            known = [i for node in self.nodes for i in node.identities[-3:]]
            if not known:
                continue
            try:
                self.store.set_label(known[self.edits % len(known)], f"seen {self.edits}")
                self.edits += 1
            except StorageUnavailable:
                self.refused += 1


@pytest.mark.slow
def test_two_nodes_and_a_station_through_a_slow_network_drops_and_a_restart_store_each_sighting_once(
        pg_server, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with PgRelay(pg_server.port) as relay:
        relayed = pg_url.replace(f":{pg_server.port}/", f":{relay.port}/") + "?sslmode=disable"
        nodes = [Node(relayed, "north"), Node(relayed, "south")]
        station = Station(relayed, nodes)
        try:
            for part in (*nodes, station):
                part.thread.start()
            time.sleep(2.0)
            relay.delay_s = 0.05  # a slow link: every message both ways waits 50 ms
            time.sleep(3.0)
            relay.delay_s = 0.0
            assert relay.drop_all() >= 3  # the network drops every connection
            time.sleep(1.0)
            pg_server.stop("fast")
            try:
                time.sleep(3.0)
            finally:
                pg_server.start()
            time.sleep(3.0)
        finally:
            for part in (*nodes, station):
                part.stop.set()
                part.thread.join(timeout=60)
        try:
            deadline = time.monotonic() + 30
            for node in nodes:
                while not node.store.flush(force=True) and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert node.store.pending == 0, node.store.health.message
        finally:
            for store in (*(node.store for node in nodes), station.store):
                store.close()
    stalls = {node.name: round(node.longest_stall_s, 2) for node in nodes}
    print(f"longest camera-loop stall per node: {stalls} s; station edits {station.edits}, refused {station.refused}")
    with psycopg.connect(pg_url) as con:
        per_run = dict(con.execute("SELECT run_id, COUNT(*) FROM sightings GROUP BY run_id").fetchall())
        twice = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM sightings GROUP BY run_id, frame_index "
                            "HAVING COUNT(*) > 1) AS doubled").fetchone()[0]
    assert per_run == {node.run: node.recorded for node in nodes}, "every sighting stored"
    assert twice == 0, "no sighting stored twice"
    assert all(node.recorded > 200 for node in nodes), "the cameras kept going through the faults"
    assert max(stalls.values()) <= STALL_LIMIT_S, stalls
    assert station.edits > 0 and station.refused > 0  # the station worked, and was told when it could not


def test_a_server_gone_silent_mid_commit_never_holds_the_camera_loop(pg_server, pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer and no error: commits run in the store's commit thread, so the camera loop goes on (it held for
    the whole silence when it committed itself), the operator is told, and everything is stored once it answers."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    silent_s = 2 * COMMIT_WAIT_S
    with PgRelay(pg_server.port) as relay:
        node = Node(pg_url.replace(f":{pg_server.port}/", f":{relay.port}/") + "?sslmode=disable", "gate")
        try:
            node.thread.start()
            time.sleep(1.0)
            relay.frozen.set()
            time.sleep(silent_s)
            during = node.store.health
            relay.frozen.clear()
            time.sleep(1.0)
        finally:
            node.stop.set()
            node.thread.join(timeout=60)
        try:
            deadline = time.monotonic() + 30
            while not node.store.flush(force=True) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert node.store.pending == 0, node.store.health.message
        finally:
            node.store.close()
    assert node.longest_stall_s < 1.0, f"the camera loop waited {node.longest_stall_s:.1f} s on the database"
    assert not during.ok and "database not answering (a commit has waited" in during.message
    assert node.recorded > (1.0 + silent_s + 1.0) / FRAME_S / 2
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT frame_index) FROM sightings").fetchone() \
            == (node.recorded, node.recorded)
