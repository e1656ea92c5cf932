"""The shared database against the SQLite file, and processing nodes side by side; prints figures, asserts nothing.

    python bench/shared_db_bench.py [--embeddings 1000000] [--dim 512] [--nodes 1 2 3] [--seconds 40]

- store: both backends filled with ``--embeddings`` stored embeddings (one sighting each, 512-d like the
  OSNet model; the fill is set-up, in bulk), then what the engine does, measured: sightings written per
  second through the store (``record`` + ``flush``, one commit per 200, every 10th with an embedding,
  as a camera's tracks produce them), the vector index attached from the database, and appearance
  search latency (``store.search``: the index, then the hits' rows from the database).
- network: the same writing on PostgreSQL through a TCP relay that holds every packet 0.5 ms each way (a
  1 ms round trip, as across a site's network), record by record (before batching) and batched (a flush's
  records in a few statements over arrays, ``PgBatchWrites.batch``).
- nodes: 1, 2 and 3 ``reid-desktop node`` processes on this machine, each running the demo clip as one
  camera as fast as it can, into one PostgreSQL database: total frames/s from the nodes' heartbeats.
  On one 2-core machine the total cannot grow much (the detector is CPU-bound); the figure shows that
  nodes add up instead of getting in each other's way, which is what more machines turn into frames/s.

A PostgreSQL 15 server is started for the run in a temporary directory (tests/pg_server.py).
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("REID_DESKTOP_DATA_DIR", tempfile.mkdtemp(prefix="reid-bench-data-"))

import numpy as np  # noqa: E402

from reid_desktop.core.store.database_url import parse_postgres_url  # noqa: E402
from reid_desktop.core.store.interface import SightingRecord, TrackKey  # noqa: E402
from reid_desktop.core.store.pg_schema import open_database  # noqa: E402
from reid_desktop.core.store.pg_store import PgSightingStore  # noqa: E402
from reid_desktop.core.store.sighting_writes import SightingWrites  # noqa: E402
from reid_desktop.core.store.sql_history import SqlHistory  # noqa: E402
from reid_desktop.core.store.storage import SightingStore  # noqa: E402
from tests.pg_server import PASSWORD, start_server  # noqa: E402

MODEL = "bench-model"
CHUNK = 20_000


def vectors(count: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(store: SqlHistory, count: int, dim: int) -> float:
    """``count`` sightings with an embedding each, one identity per 10, in bulk; returns seconds."""
    started = time.perf_counter()
    run = store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key=MODEL,
                          warnings=[], config={})
    store.record(SightingRecord(run, TrackKey("fill", "/fill.mp4", "file", 0, 1), None, 0, 0.0, None,
                                (0.0, 0.0, 1.0, 1.0), 0.5, None))
    assert store.flush()
    source, track, offset = (store._db.execute(sql).fetchone()[0] for sql in (
        "SELECT MAX(id) FROM sources", "SELECT MAX(id) FROM tracks", "SELECT MAX(id) FROM sightings"))
    postgres = isinstance(store, PgSightingStore)
    numbers = ("SELECT g FROM generate_series(1, ?) AS g" if postgres else
               "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < ?) SELECT g FROM n")
    with store._transaction():
        store._db.execute(f"INSERT INTO identities (id, created) SELECT g, 0 FROM ({numbers}) AS ids",
                          (count // 10 + 1,))
    for start in range(0, count, CHUNK):
        block = vectors(min(CHUNK, count - start), dim, start)
        ids = range(start + 1, start + 1 + len(block))
        sightings = [(offset + i, run, source, track, i // 10 + 1, i, 1_000_000.0 + i, 0.0, 0.0, 10.0, 20.0, 0.9)
                     for i in ids]
        embeddings = [(i, track, i // 10 + 1, offset + i, MODEL, 0.5, v.tobytes())
                      for i, v in zip(ids, block, strict=True)]
        with store._transaction():
            if postgres:
                conn = store._db._conn
                with conn.cursor().copy("COPY sightings (id, run_id, source_id, track_row, identity_id, frame_index, "
                                        "timestamp, x1, y1, x2, y2, confidence) FROM STDIN") as copy:
                    for row in sightings:
                        copy.write_row(row)
                with conn.cursor().copy("COPY embeddings (id, track_row, identity_id, sighting_id, model_key, quality, "
                                        "vector) FROM STDIN") as copy:
                    for row in embeddings:
                        copy.write_row(row)
            else:
                store._db.executemany("INSERT INTO sightings (id, run_id, source_id, track_row, identity_id, "
                                      "frame_index, timestamp, x1, y1, x2, y2, confidence) VALUES "
                                      "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", sightings)
                store._db.executemany("INSERT INTO embeddings (id, track_row, identity_id, sighting_id, model_key, "
                                      "quality, vector) VALUES (?, ?, ?, ?, ?, ?, ?)", embeddings)
    if postgres:
        store._db.execute("SELECT setval(pg_get_serial_sequence('sightings', 'id'), (SELECT MAX(id) FROM sightings))")
        store._db.execute("SELECT setval(pg_get_serial_sequence('embeddings', 'id'), "
                          "(SELECT MAX(id) FROM embeddings))")
        store._db.execute("ANALYZE")
    return time.perf_counter() - started


def writes_per_second(store: SqlHistory, dim: int, count: int = 4000) -> float:
    """The engine's writing: sightings of 20 tracks, every 10th with an embedding, a commit per 200."""
    run = store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key=MODEL,
                          warnings=[], config={})
    block = vectors(count, dim, 99)
    started = time.perf_counter()
    for i in range(count):
        store.record(SightingRecord(run, TrackKey("cam", "rtsp://cam", "rtsp", 0, 1 + i % 20), 1 + i % 20, i,
                                    2_000_000.0 + i, None, (1.0, 2.0, 30.0, 60.0), 0.8, 0.7,
                                    embedding=block[i] if i % 10 == 0 else None, model_key=MODEL, quality=0.5))
        if i % 200 == 199:
            assert store.flush()
    assert store.flush()
    return count / (time.perf_counter() - started)


def bench_store(name: str, store: SqlHistory, count: int, dim: int) -> None:
    filled = fill(store, count, dim)
    rate = writes_per_second(store, dim)
    started = time.perf_counter()
    index = store.attach_index(MODEL, dim)
    attached = time.perf_counter() - started
    queries = vectors(50, dim, 7)
    store.search(queries[0], MODEL, 10)  # warm
    latencies = []
    for query in queries:
        started = time.perf_counter()
        hits = store.search(query, MODEL, 10)
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(hits) == 10
    print(f"{name:<11} {count:>11,} {filled:8.0f} s {rate:13.0f} {attached:9.1f} s {len(index):>11,} "
          f"{statistics.median(latencies):10.1f} {sorted(latencies)[int(0.95 * len(latencies))]:8.1f}", flush=True)


class DelayingRelay:
    """A TCP relay to the server on ``port`` that holds everything ``delay_s`` each way: a network's latency."""

    def __init__(self, port: int, delay_s: float) -> None:
        self.target, self.delay_s = port, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            for source, sink in ((client, server), (server, client)):
                source.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                time.sleep(self.delay_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()


def record_by_record(store: PgSightingStore) -> PgSightingStore:
    """The write path before batching: each record's statements in turn."""
    store._writes.batch = functools.partial(SightingWrites.batch, store._writes)  # type: ignore[method-assign]
    return store


def bench_network(server, dim: int) -> None:
    relay = DelayingRelay(server.port, 0.0005)
    url = server.create_database("network_bench")
    location = parse_postgres_url(url.replace(f":{server.port}/", f":{relay.port}/"))
    print("\nwriting through a 1 ms round trip (a TCP relay holding packets 0.5 ms each way), PostgreSQL")
    print(f"{'path':<18} {'sightings/s':>12}")
    for name, make in (("record by record", record_by_record), ("batched", lambda store: store)):
        with make(PgSightingStore(location, commit_interval_s=3600)) as store:
            print(f"{name:<18} {writes_per_second(store, dim, count=2000):12.0f}", flush=True)


def node_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    clip = ROOT / "assets" / "demo" / "vtest_excerpt.mp4"
    path.write_text(f'[node]\nname = "{name}"\n[[cameras]]\nname = "{name}-cam"\nuri = "{clip}"\nloop = true\n'
                    '[detector]\nimgsz = 1280\ndevice = "cpu"\n[reid]\nallow_download = false\n')
    return path


def bench_nodes(server, counts: list[int], seconds: float) -> None:
    print(f"\nprocessing nodes on this machine ({os.cpu_count()} cores), one camera each (the demo clip, looped, as "
          f"fast as it goes), imgsz 1280, one PostgreSQL database; frames/s from the heartbeats over {seconds:.0f} s")
    print(f"{'nodes':>5} {'total frames/s':>14} {'per node':>9}")
    for nodes in counts:
        url = server.create_database(f"nodes_{nodes}")
        folder = Path(tempfile.mkdtemp(prefix="reid-bench-nodes-"))
        env = {**os.environ, "PGPASSWORD": PASSWORD, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nodes))}
        processes = [subprocess.Popen([sys.executable, "-m", "reid_desktop", "node", "--db", url, "--config",
                                       str(node_file(folder, f"n{i}"))], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(nodes)]
        try:
            conn = open_database(parse_postgres_url(url))  # the schema, before the nodes' first heartbeat
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                live = conn.execute("SELECT COUNT(*) FROM cameras WHERE state = 'live' AND frames_per_s > 0").fetchone()
                if live[0] == nodes:
                    break
                time.sleep(1)
            samples = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(2)
                samples.append(conn.execute("SELECT COALESCE(SUM(frames_per_s), 0) FROM cameras").fetchone()[0])
            total = statistics.mean(samples)
            print(f"{nodes:>5} {total:14.1f} {total / nodes:9.1f}", flush=True)
            conn.close()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    server = start_server(Path(tempfile.mkdtemp(prefix="reid-bench-pg-")))
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        print(f"stores at {args.embeddings:,} stored embeddings of {args.dim} dimensions ({os.cpu_count()} cores)")
        print(f"{'backend':<11} {'embeddings':>11} {'fill':>10} {'sightings/s':>13} {'index':>11} {'indexed':>11} "
              f"{'search ms':>10} {'p95 ms':>8}")
        with tempfile.TemporaryDirectory() as tmp, SightingStore(Path(tmp) / "bench.sqlite", 3600) as sqlite_store:
            bench_store("SQLite", sqlite_store, args.embeddings, args.dim)
        url = server.create_database("store_bench")
        with PgSightingStore(parse_postgres_url(url), commit_interval_s=3600) as pg_store:
            bench_store("PostgreSQL", pg_store, args.embeddings, args.dim)
        with record_by_record(PgSightingStore(parse_postgres_url(url), commit_interval_s=3600)) as pg_store:
            print(f"PostgreSQL, record by record (before batching), same database: "
                  f"{writes_per_second(pg_store, args.dim):.0f} sightings/s", flush=True)
        bench_network(server, args.dim)
        if args.nodes:
            bench_nodes(server, args.nodes, args.seconds)
    finally:
        server.stop("immediate")


if __name__ == "__main__":
    main()
