"""The whole pipeline on real video: identities across 'cameras', persistence, targets, the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import PipelineConfig, load
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.store.exports import export_json
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import FrameResult, PipelineInfo, SourceState, SourceStatus, TargetSighted
from reid_desktop.core.vision.embedding import OnnxEmbedder


def fast_config(**extra) -> PipelineConfig:
    return load(overrides={"detector.imgsz": 960, "detector.device": "cpu", "reid.allow_download": False, **extra})


def collect(events) -> tuple[list[PipelineInfo], list[SourceStatus], list[FrameResult]]:
    infos, statuses, results = [], [], []
    for event in events:
        kept = {PipelineInfo: infos, SourceStatus: statuses, FrameResult: results}.get(type(event))
        if kept is not None:  # stream health and alerts are tested on their own
            kept.append(event)
    return infos, statuses, results


@pytest.fixture(scope="module")
def osnet_pipeline_parts(pose_detector, osnet_path: Path):
    return pose_detector, OnnxEmbedder(osnet_path)


def test_two_cameras_showing_the_same_clip_agree_on_identities(tmp_path: Path, demo_clip: Path,
                                                               osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config(**{"matcher.camera_links": "north = south"})  # they see the same people at once
    specs = [SourceSpec(str(demo_clip), "north"), SourceSpec(str(demo_clip), "south")]
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        infos, _statuses, results = collect(run(specs, cfg, store, max_frames=25, pipeline=pipeline))
        assert infos[0].embedder == embedder.name and not infos[0].embedder_is_fallback
        by_camera: dict[str, dict[int, list]] = {"north": {}, "south": {}}
        for r in results:
            by_camera[r.source_id][r.frame_index] = list(r.persons)
        assert len(by_camera["north"]) == len(by_camera["south"]) == 25
        agree = total = 0
        for index, persons in by_camera["north"].items():
            for p in persons:
                twin = [q for q in by_camera["south"][index] if np.allclose(q.box, p.box, atol=1.0)]
                if twin:
                    total += 1
                    agree += twin[0].identity_id == p.identity_id
        assert total > 100 and agree / total >= 0.95
        identities = store.identities()
        assert len(identities) >= 5
        both = [i for i in identities if i.cameras == ("north", "south")]
        assert len(both) >= 5  # the same people are linked across the two cameras


def test_identities_persist_across_runs_and_targets_get_every_sighting(tmp_path: Path, demo_clip: Path,
                                                                      osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config()
    db = tmp_path / "s.sqlite"
    spec = [SourceSpec(str(demo_clip), "lobby")]
    with SightingStore(db) as store:
        _, _, first = collect(run(spec, cfg, store, max_frames=15,
                                  pipeline=Pipeline(cfg, store, detector=detector, embedder=embedder)))
    first_ids = {p.identity_id for r in first for p in r.persons} - {None}  # None: waiting for a look-up
    with SightingStore(db) as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        control = PipelineControl()
        target = sorted(first_ids)[0]
        control.set_target(target)
        _, _, second = collect(run([SourceSpec(str(demo_clip), "entrance")], cfg, store, control=control,
                                   max_frames=15, pipeline=pipeline))
        second_ids = {p.identity_id for r in second for p in r.persons} - {None}
        # the same clip again, later, on another camera: mostly the people we already know
        assert len(second_ids & first_ids) >= 0.7 * len(second_ids)
        marked = [p for r in second for p in r.persons if p.identity_id == target]
        assert marked and all(p.is_target for p in marked)
        sightings = store.sightings(identity_id=target)
        assert {s.source for s in sightings} == {"lobby", "entrance"}
        assert [s.timestamp for s in sightings] == sorted(s.timestamp for s in sightings)
        assert [i.identity_id for i in store.identities() if i.is_target] == [target]


def test_fallback_run_is_recorded_loudly_and_bad_sources_do_not_stop_good_ones(
        tmp_path: Path, demo_clip: Path, pose_detector) -> None:
    cfg = fast_config()
    specs = [SourceSpec(str(tmp_path / "missing.mp4"), "ghost"), SourceSpec(str(demo_clip), "real")]
    with SightingStore(tmp_path / "s.sqlite") as store:
        infos, statuses, results = collect(run(specs, cfg, store, max_frames=10,
                                               pipeline=Pipeline(cfg, store, detector=pose_detector)))
        assert infos[0].embedder_is_fallback and "NO NEURAL RE-ID MODEL" in infos[0].warnings[0]
        failed = [s for s in statuses if s.state is SourceState.FAILED]
        assert [s.source_id for s in failed] == ["ghost"] and "file not found" in failed[0].reason
        assert len(results) == 10 and {r.source_id for r in results} == {"real"}
        run_row = store.runs()[-1]
        assert run_row["embedder_is_fallback"] and "NO NEURAL RE-ID MODEL" in run_row["warnings"][0]
        assert run_row["status"] == "finished"


def test_embeddings_are_computed_per_track_not_per_detection(tmp_path: Path, demo_clip: Path,
                                                            osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config(**{"reid.embed_every": 10})
    db = tmp_path / "s.sqlite"
    with SightingStore(db) as store:
        collect(run([SourceSpec(str(demo_clip), "cam")], cfg, store, max_frames=30,
                    pipeline=Pipeline(cfg, store, detector=detector, embedder=embedder)))
    con = sqlite3.connect(db)
    sightings = con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0]
    embeddings = con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    tracks = con.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
    assert embeddings >= tracks  # every track got at least one
    assert embeddings < sightings / 2  # but far from one per detection
    assert con.execute("SELECT COUNT(*) FROM tracks WHERE thumbnail IS NULL").fetchone()[0] == 0


def test_appearance_search_finds_the_person_first(tmp_path: Path, demo_clip: Path, osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config()
    with SightingStore(tmp_path / "s.sqlite") as store:
        _, _, results = collect(run([SourceSpec(str(demo_clip), "cam")], cfg, store, max_frames=20,
                                    pipeline=Pipeline(cfg, store, detector=detector, embedder=embedder)))
        frame = results[12]
        person = max(frame.persons, key=lambda p: p.box[3] - p.box[1])
        x1, y1, x2, y2 = person.box.astype(int)
        query = embedder.embed([frame.image[y1:y2, x1:x2]])[0]
        hits = store.search(query, embedder.key, k=5)
        assert len(hits) == 5 and hits[0].score > 0.8
        assert hits[0].sighting.track_id == person.track_id  # the person's own track (its identity may be revised)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("reranking", [False, True])
def test_search_from_the_app_finds_the_persons_own_track(tmp_path: Path, demo_clip: Path, osnet_pipeline_parts,
                                                         reranking: bool) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config(**{"matcher.search_reranking": reranking})
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        _, _, results = collect(run([SourceSpec(str(demo_clip), "cam")], cfg, store, max_frames=20,
                                    pipeline=pipeline))
        frame = results[12]
        person = max(frame.persons, key=lambda p: p.box[3] - p.box[1])
        x1, y1, x2, y2 = person.box.astype(int)
        searcher = pipeline.searcher()
        assert searcher.rerank is reranking
        # the identity the track has now: re-association may have corrected the label shown on frame 12 since
        now = next(s.identity_id for s in store.sightings(source="cam") if s.track_id == person.track_id)
        hits = searcher.search(store, frame.image[y1:y2, x1:x2], k=8, identity_id=now)
        assert len(hits) == 8 and hits[0].sighting.track_id == person.track_id
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_cancel_stops_a_looping_source(tmp_path: Path, demo_clip: Path, pose_detector) -> None:
    cfg = fast_config(**{"sources.loop": True})
    control = PipelineControl()
    count = 0
    with SightingStore(tmp_path / "s.sqlite") as store:
        for event in run([SourceSpec(str(demo_clip))], cfg, store, control=control,
                         pipeline=Pipeline(cfg, store, detector=pose_detector)):
            if isinstance(event, FrameResult):
                count += 1
                if count == 3:
                    control.cancel()
        assert count == 3
        assert store.runs()[-1]["status"] == "cancelled"


def test_clicking_a_track_targets_its_identity(tmp_path: Path, demo_clip: Path, osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config()
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        control = PipelineControl()
        clicked = None
        shown_as_target: set[int] = set()
        for event in run([SourceSpec(str(demo_clip), "cam")], cfg, store, control=control, max_frames=12,
                         pipeline=pipeline):
            if isinstance(event, FrameResult) and event.frame_index == 3:
                clicked = event.persons[0]
                control.target_track("cam", clicked.track_id)
            if isinstance(event, FrameResult) and clicked is not None:
                shown_as_target |= {event.frame_index for p in event.persons
                                    if p.is_target and p.track_id == clicked.track_id}
        assert clicked is not None
        assert pipeline.matcher.targets == {clicked.identity_id}
        # from the click on, the clicked track's every frame is stored under the target (others are sampled a few
        # times a second); another track the matcher linked to the target may be corrected away by re-association
        stored = {s.frame_index for s in store.sightings(identity_id=clicked.identity_id)}
        assert len(shown_as_target) >= 5 and shown_as_target <= stored


def test_a_followed_person_raises_one_alert_per_camera_that_is_stored_and_expires(tmp_path: Path, demo_clip: Path,
                                                                                 osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config(**{"matcher.camera_links": "north = south"})
    specs = [SourceSpec(str(demo_clip), "north"), SourceSpec(str(demo_clip), "south")]
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        control = PipelineControl()
        followed: int | None = None
        alerts: list[TargetSighted] = []
        for event in run(specs, cfg, store, control=control, max_frames=30, pipeline=pipeline):
            if isinstance(event, FrameResult) and event.frame_index == 12 and followed is None:
                person = max((p for p in event.persons if p.identity_id is not None),
                             key=lambda p: float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))
                followed = person.identity_id
                control.set_target(followed)
            elif isinstance(event, TargetSighted):
                alerts.append(event)
        assert followed is not None
        # one alert per track of the followed person, on each camera, not one per frame
        assert alerts and {a.identity_id for a in alerts} == {followed}
        assert {a.source_id for a in alerts} == {"north", "south"}
        assert len(alerts) == len({(a.source_id, a.track_id) for a in alerts})
        assert all(a.thumbnail.startswith(b"\xff\xd8") and a.media_time is not None for a in alerts)
        stored = store.alerts(followed)
        assert len(stored) == len(alerts) and all(a.thumbnail for a in stored)
        assert [a.timestamp for a in stored] == sorted((a.timestamp for a in alerts), reverse=True)
        assert store.alerts(followed + 1000) == []
        exported = tmp_path / "target.json"
        export_json(store, exported, followed)
        assert len(json.loads(exported.read_text())["alerts"]) == len(alerts)
        # alerts go with their sightings: once the person is no longer followed, retention leaves none behind
        store.set_target(followed, False)
        store.purge_older_than(max(a.timestamp for a in alerts) + 1)
        assert store.alerts() == []


class CountingEmbedder:
    """The real embedder, counting the crops it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.crops = inner, 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def embed(self, crops):
        self.crops += len(crops)
        return self.inner.embed(crops)


def test_without_a_store_tracks_are_still_embedded_sparingly(demo_clip: Path, osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    counting = CountingEmbedder(embedder)
    cfg = fast_config(**{"reid.embed_every": 10})
    _, _, results = collect(run([SourceSpec(str(demo_clip), "cam")], cfg, max_frames=30,
                                pipeline=Pipeline(cfg, detector=detector, embedder=counting)))
    confirmed = [p for r in results for p in r.persons if not p.tentative]  # tentative ones are not embedded
    sightings = len(confirmed)
    tracks = len({p.track_id for p in confirmed})
    assert tracks <= counting.crops < sightings / 2


def test_sources_are_added_paused_seeked_and_removed_while_running(tmp_path: Path, demo_clip: Path,
                                                                   osnet_pipeline_parts) -> None:
    """What the GUI does: an open-ended run steered only through the control, from another thread."""
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config(**{"detector.imgsz": 320})  # this test is about the mechanics, not about detections
    control = PipelineControl()
    seen: dict[str, list[FrameResult]] = {"a": [], "b": []}
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=embedder)
        events = run([], cfg, store, control=control, pipeline=pipeline, stay_open=True)
        assert isinstance(next(events), PipelineInfo)
        added = control.add_source(SourceSpec(str(demo_clip), "a"))
        duplicate = control.add_source(SourceSpec(str(demo_clip), "a"))
        for event in events:
            if not isinstance(event, FrameResult):
                continue
            seen[event.source_id].append(event)
            if event.source_id == "a" and len(seen["a"]) == 3:
                control.add_source(SourceSpec(str(demo_clip), "b"))
                paused = control.pause_source("a")
            if event.source_id == "b" and len(seen["b"]) == 5:
                a_before = len(seen["a"])
                control.seek("b", 6.0)
            if event.source_id == "b" and len(seen["b"]) == 10:
                control.remove_source("b")
                removal = control.remove_source("b")
                control.pause_source("a", False)
            if len(seen["a"]) == 8:
                control.cancel()
        assert added.result(0) is None
        with pytest.raises(ValueError, match="already a source named 'a'"):
            duplicate.result(0)
        assert paused.done()
        with pytest.raises(ValueError, match="no source named 'b'"):
            removal.result(0)
        assert len(seen["b"]) == 10  # removed: nothing more came from it
        assert a_before <= 4  # at most the frame already in flight arrived while "a" was paused
        assert len(seen["a"]) == 8  # resumed after "b" was removed
        media_b = [r.media_time for r in seen["b"]]
        assert media_b[5] == pytest.approx(6.0, abs=0.15) and media_b[4] < 1.0
        assert control.submit(lambda p: None).cancelled()  # the run is over: late commands never hang


def test_retention_deletes_old_sightings_when_processing_starts(tmp_path: Path, demo_clip: Path,
                                                                 osnet_pipeline_parts) -> None:
    detector, embedder = osnet_pipeline_parts
    cfg = fast_config()
    with SightingStore(tmp_path / "s.sqlite") as store:
        collect(run([SourceSpec(str(demo_clip), "cam")], cfg, store, max_frames=5,
                    pipeline=Pipeline(cfg, store, detector=detector, embedder=embedder)))
        kept = len(store.sightings())
        assert kept > 10
    with sqlite3.connect(tmp_path / "s.sqlite") as db:  # make half of them 40 days old
        db.execute("UPDATE sightings SET timestamp = timestamp - 40 * 86400 WHERE frame_index < 2")
    with SightingStore(tmp_path / "s.sqlite") as store:
        Pipeline(fast_config(**{"storage.retention_days": 30}), store, detector=detector, embedder=embedder)
        remaining = store.sightings()
        assert 0 < len(remaining) < kept and all(s.frame_index >= 2 for s in remaining)


def test_the_watch_list_finds_a_person_from_a_picture_of_them(tmp_path: Path, demo_clip: Path,
                                                              osnet_pipeline_parts) -> None:
    from reid_desktop.core.identity.watchlist import WatchMatch, WatchPictures
    from reid_desktop.core.vision.crops import crop

    detector, embedder = osnet_pipeline_parts
    cfg = fast_config()
    # a picture of someone, cut from the video as a camera shows them
    _infos, _statuses, results = collect(run([SourceSpec(str(demo_clip), "cam")], cfg, max_frames=12,
                                             pipeline=Pipeline(cfg, detector=detector, embedder=embedder)))
    person = max(results[-1].persons, key=lambda p: float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))
    picture = crop(results[-1].image, person.box)
    assert picture is not None
    noise = np.random.default_rng(0).integers(0, 255, (256, 128, 3), dtype=np.uint8)

    pipeline = Pipeline(cfg, detector=detector, embedder=embedder)
    count = pipeline.commands.set_watch_list([WatchPictures("dark coat", (picture,), 0.75),
                                     WatchPictures("nobody", (noise,), 0.75)])
    assert count == 2
    matches = [e for e in run([SourceSpec(str(demo_clip), "cam")], cfg, max_frames=20, pipeline=pipeline)
               if isinstance(e, WatchMatch)]
    assert matches and {m.name for m in matches} == {"dark coat"}  # the picture finds them; noise finds nobody
    assert all(m.score >= 0.75 and m.source_id == "cam" and m.thumbnail for m in matches)
    assert len(matches) == len({m.track_id for m in matches}) <= 2  # once per track, and only that person
    with pytest.raises(ValueError, match="threshold must be in"):
        pipeline.commands.set_watch_list([WatchPictures("x", (picture,), 1.5)])
