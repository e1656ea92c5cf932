"""Cost of the identity engine at any history size; prints figures, asserts nothing.

    python bench/scale_bench.py [--identities 1000 10000 100000 1000000] [--embeddings 100000 1000000]

Synthetic 2048-d unit vectors shaped like re-id embeddings (each identity a random direction, each
embedding that direction plus noise: cosine ~0.6 to its own identity, ~0 to others), 2 cores.

- matcher: ``assign`` of 8 tracks of one frame (4 people in the working set, 2 returning after a long
  time, i.e. found through the index, 2 new), then of the tracks that waited for their look-up in the
  index on the next frame, and the process's resident memory, at each history size; "returning": the
  share of returning people given their own identity back.
  Baseline, in the same run: every identity in the working set (the old matcher's strategy), where
  it fits in memory.
- search: top-10 through the vector index (IVF-SQ8) vs an exact scan of float32 vectors, its build
  time, and the rebuild of an index from a real SQLite store (100k embeddings).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the app does (reid_desktop/app.py)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from reid_desktop.core.config import MatcherConfig  # noqa: E402
from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest  # noqa: E402
from reid_desktop.core.store.interface import SightingRecord, StoreDirectory, TrackKey  # noqa: E402
from reid_desktop.core.store.storage import SightingStore  # noqa: E402
from reid_desktop.core.store.vector_index import EXACT_LIMIT, NLIST, VectorIndex, lists_for, trained_ivf  # noqa: E402

DIM = 2048
NOISE = 0.8  # per-dimension noise relative to the identity direction: same-person cosine ~0.6
CHUNK = 50_000
SEARCH_VIEWS = 10  # stored embeddings per person in the search figures: the true top-10 is that person's


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Population:
    """Identity directions generated from their id, so nothing of size N is held to produce them."""

    def direction(self, ids: np.ndarray) -> np.ndarray:
        distinct, where = np.unique(ids, return_inverse=True)
        return unit(np.stack([np.random.default_rng(int(i)).standard_normal(DIM, dtype=np.float32)
                              for i in distinct]))[where]

    def views(self, ids: np.ndarray, seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).standard_normal((len(ids), DIM), dtype=np.float32)
        return unit(self.direction(ids) + noise * (NOISE / np.sqrt(DIM)))

    def stored(self, lo: int, hi: int, seed: int, per_identity: int = 1) -> np.ndarray:
        """Stored embeddings lo..hi, ``per_identity`` consecutive ones of each identity: the same vectors
        every time they are asked for."""
        return self.views(np.arange(lo, hi) // per_identity, seed + lo)


class SyntheticDirectory:
    """The store's look-up (:class:`StoreDirectory`'s search of the index), with the index over one stored
    embedding per identity (embedding id = identity id); times each search, which runs in the look-up thread."""

    def __init__(self, population: Population, index: VectorIndex) -> None:
        self.population, self.index = population, index
        self.search_ms: list[float] = []

    def __len__(self) -> int:
        return len(self.index)

    def nearest(self, embeddings: np.ndarray, k: int, min_score: float) -> list[list[int]]:
        start = time.perf_counter()
        found = StoreDirectory.nearest(self, embeddings, k, min_score)  # type: ignore[arg-type]
        self.search_ms.append((time.perf_counter() - start) * 1000)
        return found

    def owners(self, embedding_ids: Sequence[int]) -> dict[int, int]:
        return {int(i): int(i) for i in embedding_ids}

    def gallery(self, identity_id: int) -> np.ndarray:  # a primary-key read in the real store
        return self.population.views(np.full(4, identity_id), seed=identity_id + 7)


def build_index(population: Population, count: int, seed: int, per_identity: int = 1) -> tuple[VectorIndex, float]:
    start = time.perf_counter()
    index = VectorIndex(DIM)
    if count > EXACT_LIMIT:  # as the store builds a large index: train on the first vectors, then add
        first = np.concatenate([population.stored(lo, min(count, lo + CHUNK), seed, per_identity)
                                for lo in range(0, min(count, 64 * NLIST), CHUNK)])
        index = VectorIndex(DIM, index=trained_ivf(DIM, first, lists_for(count)))
    for lo in range(0, count, CHUNK):
        index.add(np.arange(lo, min(count, lo + CHUNK)),
                  population.stored(lo, min(count, lo + CHUNK), seed, per_identity))
    index.wait_until_settled()
    return index, time.perf_counter() - start


FRAME_INTERVAL_S = 0.04  # a camera's next frame at 25 fps: tracks still without an identity ask again then


def bench_matcher(population: Population, sizes: list[int], working_set: int, gallery: int,
                  baseline_up_to: int) -> None:
    print(f"\nmatcher: assign of 8 tracks (4 in the working set, 2 returning, 2 new); working set {working_set}, "
          f"gallery {gallery}.\n'next frame': the tracks that waited for their look-up ask again "
          f"{FRAME_INTERVAL_S * 1000:.0f} ms later; 'look-up': the index search, in the matcher's look-up thread")
    print(f"{'identities':>11} {'strategy':<20} {'assign median':>14} {'p95':>8} {'next frame':>11} {'p95':>8} "
          f"{'look-up':>8} {'matcher MiB':>12} {'RSS MiB':>8} {'index build':>12} {'returning':>9}")
    for size in sizes:
        for exhaustive in ([True, False] if size <= baseline_up_to else [False]):
            gc.collect()
            directory = None
            build_s = 0.0
            if not exhaustive:
                index, build_s = build_index(population, size, seed=1)
                directory = SyntheticDirectory(population, index)
            matcher = IdentityMatcher(0.45, gallery_size=gallery, active_limit=size if exhaustive else working_set,
                                      directory=directory)
            resident = np.arange(size - (size if exhaustive else working_set), size)
            for lo in range(0, len(resident), CHUNK):
                ids = resident[lo:lo + CHUNK]
                views = population.views(np.repeat(ids, 3), seed=lo + 3)
                for j, identity_id in enumerate(ids):
                    matcher.restore(int(identity_id), views[3 * j:3 * j + 3])
            first_ms: list[float] = []
            next_ms: list[float] = []
            returned = 0
            rng = np.random.default_rng(5)
            reps = 30
            for rep in range(reps):
                present = rng.choice(resident, 4, replace=False)
                returning = rng.integers(0, max(size - working_set, 1), 2)
                new = np.array([10**9 + 2 * rep, 10**9 + 2 * rep + 1])
                queries = population.views(np.concatenate([present, returning, new]), seed=1000 + rep)
                requests = [MatchRequest(i, q) for i, q in enumerate(queries)]
                start = time.perf_counter()
                decisions = matcher.assign(requests)
                first_ms.append((time.perf_counter() - start) * 1000)
                decided = {d.key for d in decisions}
                waiting = [r for r in requests if r.key not in decided]
                if waiting:
                    time.sleep(FRAME_INTERVAL_S)
                    start = time.perf_counter()
                    decisions += matcher.assign(waiting)
                    next_ms.append((time.perf_counter() - start) * 1000)
                found = {d.key: d.identity_id for d in decisions}
                returned += sum(found.get(4 + j) == returning[j] for j in range(2))
            matcher.close()
            first_ms, next_ms = first_ms[3:], next_ms[3:]  # warm-up
            searches = directory.search_ms[3:] if directory else []
            label = "all in working set" if exhaustive else "working set + index"
            later = (f"{statistics.median(next_ms):>8.1f} ms {np.percentile(next_ms, 95):>5.1f} ms" if next_ms
                     else f"{'-':>11} {'-':>8}")
            search = f"{statistics.median(searches):>5.1f} ms" if searches else f"{'-':>8}"
            print(f"{size:>11,} {label:<20} {statistics.median(first_ms):>11.1f} ms "
                  f"{np.percentile(first_ms, 95):>5.1f} ms {later} {search} {matcher.memory_bytes / 2**20:>12.1f} "
                  f"{rss_mib():>8.0f} {build_s:>10.1f} s {returned / (2 * reps):>9.0%}", flush=True)
            del matcher, directory
            gc.collect()


def bench_search(population: Population, sizes: list[int], exact_up_to: int) -> None:
    print("\nsearch: top-10 of one query")
    print(f"{'embeddings':>11} {'index (IVF-SQ8)':>16} {'exact scan':>12} {'recall@10':>10} {'build':>9} "
          f"{'index MiB':>10}")
    for size in sizes:
        gc.collect()
        before = rss_mib()
        index, build_s = build_index(population, size, seed=2, per_identity=SEARCH_VIEWS)
        index_mib = rss_mib() - before
        queries = population.views(np.random.default_rng(9).integers(0, size // SEARCH_VIEWS, 20), seed=99)
        for q in queries[:3]:
            index.search(q[None], 10)
        t = time.perf_counter()
        found = [index.search(q[None], 10)[1][0] for q in queries]
        index_ms = (time.perf_counter() - t) / len(queries) * 1000
        exact = "-"
        recall = "-"
        if size <= exact_up_to:
            matrix = np.concatenate([population.stored(lo, min(size, lo + CHUNK), 2, SEARCH_VIEWS)
                                     for lo in range(0, size, CHUNK)])
            t = time.perf_counter()
            truth = [np.argsort(-(matrix @ q))[:10] for q in queries]
            exact = f"{(time.perf_counter() - t) / len(queries) * 1000:.1f} ms"
            recall = f"{np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]):.2f}"
            del matrix
        print(f"{size:>11,} {index_ms:>13.1f} ms {exact:>12} {recall:>10} {build_s:>7.1f} s {index_mib:>10.0f}",
              flush=True)
        del index


def bench_rebuild(population: Population, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.sqlite"
        with SightingStore(path, commit_interval_s=3600) as store:
            run = store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu",
                                  model_key="m", warnings=[], config={})
            for lo in range(0, count, 10_000):
                vectors = population.views(np.arange(lo, lo + 10_000) // 30, seed=lo)
                for j, vector in enumerate(vectors):
                    i = lo + j
                    store.record(SightingRecord(run, TrackKey("cam", "cam", "file", 0, i // 30), i // 30, i, float(i),
                                                None, (0, 0, 10, 20), 0.9, None, vector, "m", 0.5))
                store.flush(force=True)
            t = time.perf_counter()
            store.attach_index("m", DIM)
            attach_s = time.perf_counter() - t
        size_mib = path.stat().st_size / 2**20
        index_file = next(Path(tmp).glob("*.faiss"))
        with SightingStore(path) as store:
            t = time.perf_counter()
            store.attach_index("m", DIM)
            load_s = time.perf_counter() - t
        index_file.unlink()
        with SightingStore(path) as store:
            t = time.perf_counter()
            store.attach_index("m", DIM)
            rebuild_s = time.perf_counter() - t
    print(f"\nindex of a real store with {count:,} embeddings ({size_mib:.0f} MiB SQLite): built on first attach "
          f"{attach_s:.1f} s, loaded from its file {load_s:.1f} s, rebuilt after the file was deleted "
          f"{rebuild_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--embeddings", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--working-set", type=int, default=MatcherConfig.active_identities)
    parser.add_argument("--gallery", type=int, default=MatcherConfig.identity_gallery_size)
    parser.add_argument("--baseline-up-to", type=int, default=10_000, help="largest size for the baselines")
    parser.add_argument("--rebuild", type=int, default=100_000, help="embeddings in the store-rebuild figure")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {DIM}-d vectors, 2 threads")
    population = Population()
    bench_matcher(population, args.identities, args.working_set, args.gallery, args.baseline_up_to)
    bench_search(population, args.embeddings, exact_up_to=max(args.baseline_up_to, 100_000))
    if args.rebuild:
        bench_rebuild(population, args.rebuild)


if __name__ == "__main__":
    main()
