"""Storage that does not grow with every frame: sampled sightings, a cap on embeddings per track, a size
budget with pages given back to the disk, and a long run of synthetic traffic held to its bounds."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
from reid_desktop.core.store.interface import SightingRecord, StoreDirectory, TrackKey
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.store.write_buffer import PendingRecords
from reid_desktop.core.types import Detections, Frame
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_identity_engine import decided
from tests.core.test_pipeline_faults import config
from tests.core.test_store_edits import DIM, MODEL, direction


def record(run: int, track: int, t: float, identity: int | None, vector: np.ndarray | None = None,
           quality: float = 0.5, source: str = "cam") -> SightingRecord:
    return SightingRecord(run_id=run, track=TrackKey(source, source, "file", 0, track), identity_id=identity,
                          frame_index=int(t * 10), timestamp=t, media_time=None, box=(1, 2, 30, 80), confidence=0.9,
                          match_score=None, embedding=vector, model_key=MODEL, quality=quality)


def begin(store: SightingStore) -> int:
    return store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key=MODEL,
                           warnings=[], config={})


def test_a_track_keeps_only_its_best_embeddings_in_the_database_and_the_index(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite", embeddings_per_track=3) as store:
        store.attach_index(MODEL, DIM)
        run = begin(store)
        qualities = [0.2, 0.9, 0.1, 0.5, 0.8, 0.3, 0.7]
        for i, quality in enumerate(qualities):
            store.record(record(run, 1, float(i), 1, direction(i), quality))
            if i % 3 == 2:
                assert store.flush()  # across commits and within one
        assert store.flush()
        kept = sorted(r[0] for r in store._db.execute("SELECT quality FROM embeddings"))
        assert kept == pytest.approx([0.7, 0.8, 0.9])
        assert len(store.index or []) == store.embedding_stamp(MODEL)["count"] == 3
        assert len(store.sightings()) == len(qualities)  # positions stay; only embeddings are capped


def test_the_database_stays_under_its_size_budget_and_gives_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SightingStore(path) as store:
        store.attach_index(MODEL, DIM)
        run = begin(store)
        for i in range(4000):
            store.record(record(run, i // 20, 1000.0 + i, i // 20, direction(i) if i % 5 == 0 else None))
        assert store.flush()
        full = store.live_bytes
        deleted = store.enforce_size(full // 2)
        store.reclaim()
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert 0 < deleted < 4000 and store.live_bytes <= full // 2
        oldest_left = min(s.timestamp for s in store.sightings())
        assert oldest_left > 1000.0 and max(s.timestamp for s in store.sightings()) == 4999.0  # the newest stay
        assert len(store.index or []) == store.embedding_stamp(MODEL)["count"]
    assert path.stat().st_size < full * 0.75  # the file shrank: the pages went back to the disk
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class Replay:
    """Detections computed once by the real detector, handed out again: the same input for two runs."""

    def __init__(self, detections: Sequence[Detections]) -> None:
        self.detections, self.position = list(detections), 0
        self.name = "replay"

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = self.detections[self.position:self.position + len(images)]
        self.position += len(images)
        return out


def stored_tracks(db: Path) -> dict[int, tuple[int, int, int]]:
    """Per stored track id: (first frame, last frame, sightings)."""
    with sqlite3.connect(db) as con:
        return {r[0]: (r[1], r[2], r[3]) for r in con.execute(
            "SELECT t.track_id, MIN(s.frame_index), MAX(s.frame_index), COUNT(*) FROM sightings s "
            "JOIN tracks t ON t.id = s.track_row GROUP BY t.id")}


@pytest.mark.slow
def test_sightings_are_sampled_per_track_keeping_first_last_and_embedded_ones(tmp_path: Path, demo_frames,
                                                                              pose_detector) -> None:
    frames = demo_frames[:60]
    detections = [pose_detector.detect([image])[0] for image in frames]
    results = {}
    for per_second in (0.0, 1.0):
        db = tmp_path / f"{per_second}.sqlite"
        cfg = config(**{"storage.sightings_per_second": per_second})
        with SightingStore(db) as store:
            pipeline = Pipeline(cfg, store, detector=Replay(detections), embedder=ColorTextureEmbedder())
            for index, image in enumerate(frames):  # 10 frames a second
                pipeline.process([Frame("cam", index, 1000.0 + index / 10, image, index / 10)])
            pipeline.close()
        results[per_second] = stored_tracks(db)
    every, sampled = results[0.0], results[1.0]
    assert every.keys() == sampled.keys() and len(every) >= 3
    for track, (first, last, _count) in every.items():
        assert sampled[track][:2] == (first, last)  # the timeline keeps each track's whole span
    assert sum(c for *_, c in sampled.values()) < 0.5 * sum(c for *_, c in every.values())


@pytest.mark.slow
def test_hours_of_traffic_stay_within_memory_and_disk_bounds(tmp_path: Path) -> None:
    """Six fast-forwarded hours of four cameras: people come and go every few seconds, some return hours
    later; age retention keeps one hour. The working set, the index and the database stay bounded, and
    returning people are recognised through the index."""
    path = tmp_path / "s.sqlite"
    rng = np.random.default_rng(0)
    with SightingStore(path, commit_interval_s=0, embeddings_per_track=4) as store:
        store.attach_index(MODEL, DIM)
        matcher = IdentityMatcher(0.8, gallery_size=4, allocate_id=store.allocate_identity_id, active_limit=16,
                                  directory=StoreDirectory(store, MODEL, DIM, 4))
        run = begin(store)
        start, track_id = 0.0, 0
        bounds: list[tuple[int, int, int]] = []
        regulars: dict[int, tuple[int, float]] = {}  # person -> (identity, last seen), for people who come back
        recognised = returns = 0
        for minute in range(6 * 60):
            now = start + minute * 60.0
            for camera in range(4):
                person = int(rng.integers(0, 40)) if rng.random() < 0.3 else 10_000 + minute * 4 + camera
                track_id += 1
                view = direction(person) + 0.05 * rng.standard_normal(DIM).astype(np.float32)
                view /= np.linalg.norm(view)
                decision = decided(matcher, MatchRequest(track_id, view))
                if person < 40:
                    identity, seen = regulars.get(person, (None, -1e9))
                    if now - seen <= 3000.0:  # back while their history is kept (retention keeps an hour)
                        returns += 1
                        recognised += decision.identity_id == identity
                    regulars[person] = (decision.identity_id, now)
                matcher.add(decision.identity_id, view[None], np.array([0.5]))
                for step in range(6):  # a few seconds on camera, sampled
                    store.record(record(run, track_id, now + step, decision.identity_id,
                                        view if step % 2 == 0 else None, 0.3 + 0.1 * step, f"cam{camera}"))
            store.flush()
            if minute % 10 == 9:  # the pipeline's retention round
                store.purge_older_than(now - 3600.0)
                store.reclaim()
                bounds.append((matcher.memory_bytes, len(store.index or []), store.live_bytes))
        hour_in = bounds[6]  # after the first hour, history is at its steady size
        for memory, indexed, live in bounds[6:]:
            assert memory <= hour_in[0]
            assert indexed <= 1.2 * hour_in[1]
            assert live <= 1.3 * hour_in[2]
        assert returns > 100 and recognised / returns > 0.9
        assert len(store.index or []) == store.embedding_stamp(MODEL)["count"]


def test_retention_round_deletes_beyond_the_size_budget(tmp_path: Path, monkeypatch) -> None:
    from reid_desktop.core.engine import persistence

    monkeypatch.setattr(persistence, "RETENTION_EVERY_S", 0.0)
    cfg = config(**{"storage.max_database_gb": 200e3 / 1e9})  # 200 kB
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=Replay([]), embedder=ColorTextureEmbedder())
        run = pipeline.run_id or 0
        for i in range(3000):
            store.record(record(run, i // 50, time.time() - 3000 + i, None))
        assert store.flush()
        assert store.live_bytes > 200e3
        pipeline.writer.apply_retention()
        assert store.live_bytes <= 200e3
        assert max(s.timestamp for s in store.sightings()) > time.time() - 5  # the newest stay


def test_an_embedding_id_freed_over_a_tracks_cap_is_not_reused_and_the_index_keeps_the_new_row(
        tmp_path: Path) -> None:
    """One commit: a weak row is deleted over the cap, then a better one comes. Reusing the freed id told the index
    "added 2, removed 2" and it dropped the new row (database [2], index []) until a restart rebuilt it."""
    with SightingStore(tmp_path / "s.sqlite", embeddings_per_track=1) as store:
        store.attach_index(MODEL, DIM)
        run = begin(store)
        for i, quality in enumerate((0.9, 0.1, 0.95)):  # kept; dropped over the cap (the highest id); kept
            store.record(record(run, 1, float(i), 1, direction(i), quality))
        assert store.flush()
        ids = [r[0] for r in store._db.execute("SELECT id FROM embeddings")]
        assert len(ids) == 1 and ids[0] == 3  # a new id, never one handed out before
        assert len(store.index or []) == 1
        hits = store.index.search(direction(2)[None], 1) if store.index is not None else None
        assert hits is not None and int(np.asarray(hits[1]).ravel()[0]) == ids[0]


def test_a_commit_forgets_what_it_wrote_not_what_came_or_went_meanwhile() -> None:
    """The engine adds while the commit thread writes a snapshot; the bound may drop the oldest meanwhile."""
    pending = PendingRecords(max_records=4, max_bytes=10**9)
    for t in range(3):
        pending.append(record(1, 1, float(t), 1))
    written, newest = pending.snapshot()  # the commit thread takes three
    for t in range(3, 5):  # two arrive while it writes: over the bound, the oldest (being written) is dropped
        pending.append(record(1, 1, float(t), 1))
    pending.discard_through(newest)
    assert [r.timestamp for r in written] == [0.0, 1.0, 2.0]
    assert [r.timestamp for r in pending.snapshot()[0]] == [3.0, 4.0] and pending.dropped == 1
