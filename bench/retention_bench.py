"""Retention on a shared PostgreSQL database while a node writes: how long the purge holds the other writers.

    python bench/retention_bench.py [--sightings 20000] [--per-track 10] [--rounds 2]

A station's purge deletes ``--sightings`` old sightings (with their embeddings and tracks) while a node records a
sighting every 20 ms and commits every 100 ms; printed: the purge's time and the node's longest commit during it
(a commit waits while the purge holds the edit lock). Each round runs the purge a block of
``retention.PURGE_BLOCK`` sightings per transaction (the app) and in one transaction (the baseline: every
sighting under the lock at once), alternated in one process. A PostgreSQL 15 server is started for the run
in a temporary directory (tests/pg_server.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REID_DESKTOP_DATA_DIR", tempfile.mkdtemp(prefix="reid-bench-data-"))

import numpy as np  # noqa: E402

from reid_desktop.core.store import retention  # noqa: E402
from reid_desktop.core.store.database_url import parse_postgres_url  # noqa: E402
from reid_desktop.core.store.interface import SightingRecord, TrackKey  # noqa: E402
from reid_desktop.core.store.pg_store import PgSightingStore  # noqa: E402
from tests.pg_server import PASSWORD, start_server  # noqa: E402

OLD = 1_000_000.0  # the old sightings' times (1970): far beyond any cutoff


def sighting(run: int, camera: str, track: int, frame: int, at: float, identity: int | None) -> SightingRecord:
    vector = np.random.default_rng(frame).normal(size=8).astype(np.float32)
    return SightingRecord(run_id=run, track=TrackKey(camera, f"rtsp://{camera}", "rtsp", 0, track),
                          identity_id=identity, frame_index=frame, timestamp=at, media_time=None,
                          box=(10.0, 20.0, 50.0, 120.0), confidence=0.9, match_score=None,
                          embedding=vector / np.linalg.norm(vector), model_key="m", quality=0.5)


def begin(store: PgSightingStore) -> int:
    return store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key="m",
                           warnings=[], config={})


def fill(store: PgSightingStore, count: int, per_track: int) -> None:
    run = begin(store)
    for frame in range(count):
        track = frame // per_track
        store.record(sighting(run, "old", track + 1, frame, OLD + frame, track + 1))
        if frame % 2000 == 1999:
            assert store.flush(), store.health.message
    assert store.flush(), store.health.message


class Node:
    """A node writing beside the purge: the longest commit it sees."""

    def __init__(self, store: PgSightingStore) -> None:
        self.store, self.run = store, begin(store)
        self.longest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        frame = 0
        while not self.stop.is_set():
            for _ in range(5):
                self.store.record(sighting(self.run, "gate", 1 + frame // 25, frame, time.time(), None))
                frame += 1
                time.sleep(0.02)
            started = time.perf_counter()
            self.store.flush()
            self.longest = max(self.longest, time.perf_counter() - started)


def purge_beside_a_node(url: str, count: int, per_track: int, block: int) -> tuple[float, float, int]:
    """(purge seconds, the node's longest commit during it, sightings purged)."""
    location = parse_postgres_url(url)
    with PgSightingStore(location, commit_interval_s=0) as station, \
            PgSightingStore(location, commit_interval_s=0, node="gate") as writer:
        fill(station, count, per_track)
        node = Node(writer)
        time.sleep(0.5)
        node.longest = 0.0
        retention.PURGE_BLOCK = block
        started = time.perf_counter()
        purged = station.purge_older_than(OLD + count)
        took = time.perf_counter() - started
        node.stop.set()
        node.thread.join()
    return took, node.longest, purged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sightings", type=int, default=20_000)
    parser.add_argument("--per-track", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = start_server(Path(tempfile.mkdtemp(prefix="reid-bench-pg-")))
    os.environ["PGPASSWORD"] = PASSWORD
    app_block = retention.PURGE_BLOCK
    try:
        print(f"{args.sightings} old sightings ({args.per_track} per track) purged while a node commits every 0.1 s")
        print("| purge | round | purge time (s) | node's longest commit during it (s) | sightings purged |")
        print("|---|---|---|---|---|")
        for round_ in range(1, args.rounds + 1):
            for label, block in ((f"a block of {app_block} per transaction (the app)", app_block),
                                 ("all in one transaction (baseline)", 10**9)):
                url = server.create_database(f"retention_{round_}_{block}")
                took, longest, purged = purge_beside_a_node(url, args.sightings, args.per_track, block)
                print(f"| {label} | {round_} | {took:.2f} | {longest:.2f} | {purged} |", flush=True)
    finally:
        retention.PURGE_BLOCK = app_block
        server.stop("immediate")


if __name__ == "__main__":
    main()
