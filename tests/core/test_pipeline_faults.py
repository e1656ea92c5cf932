"""Faults stay local: seeks and restarts never mix people in a stored track, a bad crop or a failing tracker
costs one frame of one camera, and a database that is locked or full stops the saving, not the cameras, then
catches up with nothing committed lost. All on the real demo clip, the real detector and a real SQLite file."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.capture.sources import SourceSpec, VideoSource
from reid_desktop.core.config import PipelineConfig, load
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.store.interface import StorageHealth
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import Detections, FrameResult
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from reid_desktop.core.vision.tracking import UltralyticsTracker


def config(**extra: object) -> PipelineConfig:
    return load(overrides={"detector.device": "cpu", "reid.allow_download": False,
                           "storage.commit_interval_s": 0.2, **extra})


def stored_sightings(db: Path) -> int:
    con = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])
    finally:
        con.close()


def assert_sound(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def test_seeking_back_and_forth_never_mixes_people_in_a_stored_track(tmp_path: Path, demo_clip: Path,
                                                                     pose_detector) -> None:
    cfg = config()
    control = PipelineControl()
    db = tmp_path / "s.sqlite"
    seeks = iter([0.0, 4.0, 1.0, 0.5])
    with SightingStore(db, cfg.storage.commit_interval_s) as store:
        pipeline = Pipeline(cfg, store, detector=pose_detector, embedder=ColorTextureEmbedder())
        taken = 0
        for event in run([SourceSpec(str(demo_clip), "demo")], cfg, store, control, max_frames=60,
                         pipeline=pipeline):
            if isinstance(event, FrameResult):
                taken += 1
                if taken % 12 == 0:
                    target = next(seeks, None)
                    if target is not None:
                        control.seek("demo", target)  # runs between frames, in the pipeline thread
    con = sqlite3.connect(db)
    tracks = con.execute("SELECT id FROM tracks").fetchall()
    assert con.execute("SELECT COUNT(DISTINCT segment) FROM tracks").fetchone()[0] >= 4  # a tracker per seek
    for (track,) in tracks:
        rows = con.execute("SELECT media_time, (x1 + x2) / 2, (y1 + y2) / 2, identity_id FROM sightings "
                           "WHERE track_row = ? ORDER BY id", (track,)).fetchall()
        times = [r[0] for r in rows]
        assert times == sorted(times), f"track {track} goes back in time: two tracker lifetimes in one row"
        for before, after in itertools.pairwise(rows):
            jump = np.hypot(after[1] - before[1], after[2] - before[2])
            assert jump < 80, f"track {track} jumps {jump:.0f} px between consecutive sightings"
        identities = {r[3] for r in rows} - {None}
        stored = con.execute("SELECT identity_id FROM tracks WHERE id = ?", (track,)).fetchone()[0]
        assert identities <= {stored}, f"track {track} was re-labelled from {identities} to {stored}"
    con.close()


class NanForTallCrops:
    """Fault injection around the real embedder: crops taller than 100 px come back as NaN."""

    def __init__(self) -> None:
        self.inner = ColorTextureEmbedder()
        self.name, self.key, self.dim, self.provider = "nan-test", self.inner.key, self.inner.dim, "numpy"
        self.precision = "fp32"
        self.is_fallback, self.match_threshold = False, self.inner.match_threshold
        self.poisoned = 0

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        vectors = self.inner.embed(crops)
        for i, crop in enumerate(crops):
            if crop.shape[0] > 100:
                vectors[i] = np.nan
                self.poisoned += 1
        return vectors


class FailingTracker:
    """Fault injection around the real ByteTrack: the 5th update raises (if ``fails``)."""

    def __init__(self, cfg: PipelineConfig, fails: bool) -> None:
        self.inner = UltralyticsTracker(cfg.tracker)
        self.updates = 0
        self.fails = fails

    def update(self, detections: Detections, image: np.ndarray, moment: float | None = None):
        self.updates += 1
        if self.fails and self.updates == 5:
            raise RuntimeError("injected tracker fault")
        return self.inner.update(detections, image, moment)


def test_bad_crops_and_a_failing_tracker_cost_one_frame_of_one_camera(tmp_path: Path, demo_clip: Path,
                                                                      pose_detector, caplog) -> None:
    cfg = config()
    embedder = NanForTallCrops()
    made: list[FailingTracker] = []

    def tracker_factory() -> FailingTracker:
        made.append(FailingTracker(cfg, fails=len(made) < 2))  # the first tracker of each camera
        return made[-1]

    db = tmp_path / "s.sqlite"
    specs = [SourceSpec(str(demo_clip), "north"), SourceSpec(str(demo_clip), "south")]
    with SightingStore(db, cfg.storage.commit_interval_s) as store:
        pipeline = Pipeline(cfg, store, detector=pose_detector, embedder=embedder, tracker_factory=tracker_factory)
        results = [e for e in run(specs, cfg, store, max_frames=12, pipeline=pipeline) if isinstance(e, FrameResult)]
    assert embedder.poisoned > 0
    assert "not a finite, non-zero vector" in caplog.text and "injected tracker fault" in caplog.text
    assert len(results) == 24  # every frame of both cameras came out
    empty = [(r.source_id, r.frame_index) for r in results if not r.persons]
    assert sorted(empty) == [("north", 4), ("south", 4)]  # the frame each tracker failed on, nothing else
    assert len(made) == 4  # each camera's tracker was replaced once
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] > 0
    vectors = [np.frombuffer(v, np.float32) for (v,) in con.execute("SELECT vector FROM embeddings")]
    assert all(np.isfinite(v).all() for v in vectors)
    con.close()
    assert_sound(db)


def _run_through_a_fault(db: Path, clip: Path, detector, start_fault, end_fault, fault_s: float = 3.0
                         ) -> tuple[list[StorageHealth], int, int, int, int]:
    """Run on ``clip`` (looped); after 10 frames start the fault, end it ``fault_s`` later, stop 10 frames after.

    Returns the health events, frames processed during the fault, persons shown, sightings stored before the
    fault (committed) and sightings stored at the end.
    """
    cfg = config(**{"sources.loop": True, "storage.sightings_per_second": 0})  # every person of every frame: countable
    control = PipelineControl()
    health: list[StorageHealth] = []
    frames = during = persons = committed_before = 0
    fault_started = fault_ended = None
    with SightingStore(db, cfg.storage.commit_interval_s) as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=ColorTextureEmbedder())
        for event in run([SourceSpec(str(clip), "cam")], cfg, store, control, pipeline=pipeline, stay_open=True):
            if isinstance(event, StorageHealth):
                health.append(event)
            if not isinstance(event, FrameResult):
                continue
            frames += 1
            persons += sum(not p.tentative for p in event.persons)  # tentative ones are drawn, not stored
            if frames == 10:
                store.flush()
                committed_before = stored_sightings(db)
                start_fault()
                fault_started = time.monotonic()
            elif fault_started is not None and fault_ended is None:
                during += 1
                if time.monotonic() - fault_started > fault_s:
                    end_fault()
                    fault_ended = frames
            elif fault_ended is not None and frames >= fault_ended + 10 and (
                    (health and health[-1].ok) or frames >= fault_ended + 400):
                control.cancel()  # recovered, or given up on: the assertions say which
    return health, during, persons, committed_before, stored_sightings(db)


def test_a_locked_database_stops_saving_not_the_cameras(tmp_path: Path, demo_clip: Path, pose_detector) -> None:
    db = tmp_path / "s.sqlite"
    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        holder.append(con)

    def unlock() -> None:
        holder.pop().execute("ROLLBACK")

    health, during, persons, before, after = _run_through_a_fault(db, demo_clip, pose_detector, lock, unlock)
    assert during >= 3, "the camera stalled while the database was locked"
    assert not health[0].ok and "database locked by another program: sightings are not being saved" \
        in health[0].message
    assert health[-1].ok
    assert before > 0 and after == persons  # everything seen, before, during and after, is in the database
    assert_sound(db)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip() or 'needs root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_stops_saving_then_catches_up(tmp_path: Path, demo_clip: Path, pose_detector) -> None:
    with small_tmpfs(tmp_path / "small", "24m") as disk:
        db = disk / "s.sqlite"
        filler = (disk / "filler").open("wb")  # made before the run: creating it must not be what meets a full disk
        free_at_fault: list[str] = []

        def fill() -> None:
            files = sorted(p.name for p in disk.iterdir())
            free_at_fault.append(f"{shutil.disk_usage(disk).free} bytes free, files {files}")
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
                    os.fsync(filler.fileno())

        def free() -> None:
            with contextlib.suppress(OSError):
                filler.close()  # its last buffered bytes may not fit: the file goes anyway
            (disk / "filler").unlink()

        health, during, persons, before, after = _run_through_a_fault(db, demo_clip, pose_detector, fill, free)
        assert during >= 3, f"the camera stalled while the disk was full ({free_at_fault})"
        assert not health[0].ok and health[0].message.startswith("database full")
        assert "sightings are not being saved" in health[0].message
        assert health[-1].ok
        assert before > 0 and after == persons  # nothing committed before was lost, nothing waiting either
        assert_sound(db)


def test_removed_cameras_leave_nothing_behind(demo_clip: Path, pose_detector) -> None:
    cfg = config(**{"sources.queue_size": 8})
    control = PipelineControl()
    pipeline = Pipeline(cfg, None, detector=pose_detector, embedder=ColorTextureEmbedder())
    events = run([], cfg, None, control, pipeline=pipeline, stay_open=True)
    next(events)  # what the pipeline runs on

    def frames_of(name: str, count: int) -> None:
        shown = 0
        while shown < count:
            event = next(events)
            shown += isinstance(event, FrameResult) and event.source_id == name

    for _ in range(15):  # an operator adding and removing a camera all day
        control.add_source(SourceSpec(str(demo_clip), "cam"))
        frames_of("cam", 2)
        control.remove_source("cam")
    control.add_source(SourceSpec(str(demo_clip), "other"))
    frames_of("other", 10)  # the loop ran on: stopped readers ended and were let go
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on every object touches torch's deprecated attributes
        warnings.simplefilter("ignore")
        readers = [o for o in gc.get_objects() if isinstance(o, VideoSource)]
    control.cancel()
    for _ in events:
        pass
    assert [r.source_id for r in readers] == ["other"], "removed cameras' readers (and their frames) are kept"


def test_retention_runs_during_a_long_run_not_only_at_the_start(tmp_path: Path, demo_frames, pose_detector,
                                                                monkeypatch) -> None:
    from reid_desktop.core.engine import persistence
    from reid_desktop.core.store.interface import SightingRecord, TrackKey
    from reid_desktop.core.types import Frame

    monkeypatch.setattr(persistence, "RETENTION_EVERY_S", 0.0)  # "an hour later", now
    cfg = config(**{"storage.retention_days": 1})
    with SightingStore(tmp_path / "s.sqlite", cfg.storage.commit_interval_s) as store:
        pipeline = Pipeline(cfg, store, detector=pose_detector, embedder=ColorTextureEmbedder())
        week_ago = time.time() - 7 * 86400
        store.record(SightingRecord(run_id=pipeline.run_id or 0, track=TrackKey("old", "/old.mp4", "file", 0, 1),
                                    identity_id=None, frame_index=0, timestamp=week_ago, media_time=0.0,
                                    box=(1, 2, 30, 80), confidence=0.9, match_score=None))
        store.flush()
        rounds_ran_in: list[str] = []
        purge_expired = store.purge_expired
        monkeypatch.setattr(store, "purge_expired", lambda days: (
            rounds_ran_in.append(threading.current_thread().name), purge_expired(days))[1])
        for index, image in enumerate(demo_frames[:3]):
            pipeline.process([Frame("cam", index, time.time(), image, index / 10)])
        store.in_commit_thread(lambda: None).result(timeout=60)  # after the rounds the frames started
        store.flush()
        assert [s.source for s in store.sightings(source="old")] == []
        assert store.sightings(source="cam")  # what is recent stays
        # in the store's commit thread, never the engine's: a long purge does not hold the cameras
        assert rounds_ran_in and all(name.startswith("store-commit") for name in rounds_ran_in)


def test_commands_to_a_stalled_pipeline_are_bounded(pose_detector) -> None:
    """A pipeline stuck in a long step takes no commands: the GUI's clicks wait, up to a bound; past it a command
    fails at once with one clear line, and all that waited run when the pipeline is back."""
    import threading

    from reid_desktop.core.engine.runner import MAX_PENDING_COMMANDS, PipelineBusy

    cfg = config()
    control = PipelineControl()
    pipeline = Pipeline(cfg, None, detector=pose_detector, embedder=ColorTextureEmbedder())
    thread = threading.Thread(target=lambda: list(run([], cfg, None, control, pipeline=pipeline, stay_open=True)))
    thread.start()
    gate = threading.Event()
    try:
        stalled = control.submit(lambda p: gate.wait(60))
        deadline = time.monotonic() + 30
        while not stalled.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stalled.running()
        waiting = [control.submit(lambda p, n=n: n) for n in range(MAX_PENDING_COMMANDS)]
        refused = control.submit(lambda p: "one too many")
        assert isinstance(refused.exception(timeout=1), PipelineBusy)
        assert "commands behind" in str(refused.exception())
        gate.set()
        assert [f.result(timeout=30) for f in waiting] == list(range(MAX_PENDING_COMMANDS))
        assert control.submit(lambda p: "taken again").result(timeout=30) == "taken again"
    finally:
        gate.set()
        control.cancel()
        thread.join(timeout=30)
