"""Per-frame processing: frames -> detections -> per-camera tracks -> embeddings -> identities.

Embeddings are computed when a track is new, then every ``embed_every`` frames or as soon as the crop
is clearly better than the best one so far. A track's identity is tentative until it has enough crops
(see :mod:`~reid_desktop.core.engine.track_state`). What is kept of all this is
:mod:`~reid_desktop.core.engine.persistence`'s job, and :mod:`~reid_desktop.core.engine.runner` feeds the frames in.

Faults stay local: a failing detector batch, tracker, crop or embedding is logged (rate-limited)
and skipped, the other cameras and frames go on; database faults are the store's to buffer and
retry, and arrive as :class:`StorageHealth` events for the operator.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.alerts import Alerts
from reid_desktop.core.engine.camera_state import CameraState
from reid_desktop.core.engine.commands import Commands
from reid_desktop.core.engine.crop_embedding import CropEmbedding, FreshEmbeddings, keypoints_of
from reid_desktop.core.engine.detect_stage import DetectStage
from reid_desktop.core.engine.identity_setup import (
    model_searcher,
    new_calibration,
    new_matcher,
    restore_identities,
    restored_normaliser,
    save_camera_means,
)
from reid_desktop.core.engine.link_stage import LinkStage, LiveTrack
from reid_desktop.core.engine.persistence import SightingWriter
from reid_desktop.core.engine.regrouping import PassChange, Regrouping
from reid_desktop.core.engine.track_stage import TrackStage
from reid_desktop.core.engine.track_state import TrackState
from reid_desktop.core.faults import FaultLog
from reid_desktop.core.identity.matching import IdAllocator
from reid_desktop.core.identity.search import Searcher
from reid_desktop.core.identity.tracklets import Normalise
from reid_desktop.core.identity.watchlist import WatchMatch
from reid_desktop.core.store.interface import (
    HistoryStore,
    StorageHealth,
    StorageUnavailable,
    TrackKey,
)
from reid_desktop.core.types import (
    Detections,
    Frame,
    FrameResult,
    PipelineInfo,
    TargetSighted,
    TrackedPerson,
)
from reid_desktop.core.vision.detection import Detector
from reid_desktop.core.vision.detector_runtimes import make_detector
from reid_desktop.core.vision.embedding import Embedder
from reid_desktop.core.vision.models import load_embedder
from reid_desktop.core.vision.motion import Region
from reid_desktop.core.vision.tracking import Tracker, TrackOutput, UltralyticsTracker

log = logging.getLogger(__name__)

CAMERA_MEANS_SAVED_EVERY_S = 60.0



class Pipeline:
    """Per-frame processing for any number of cameras. Use from one thread only."""

    def __init__(self, config: PipelineConfig, store: HistoryStore | None = None,
                 detector: Detector | None = None, embedder: Embedder | None = None,
                 embedder_warnings: Sequence[str] = (), tracker_factory: Callable[[], Tracker] | None = None) -> None:
        self.config = config
        self.detection = DetectStage(detector or make_detector(config.detector), config.detector)
        if embedder is None:
            embedder, embedder_warnings = load_embedder(config.reid)
        self.embedder = embedder
        self.warnings = tuple(embedder_warnings)
        self.store = store
        self._allocate_id: IdAllocator = (store.allocate_identity_id if store is not None
                                          else itertools.count(1).__next__)
        self._cameras: dict[str, CameraState] = {}
        self.tracks: dict[LiveTrack, TrackState] = {}
        # tracker restarts per source (kept when its record is dropped): a restarted tracker counts its ids from
        # 1 again, so stored tracks are told apart by (source, segment, track id)
        self.segments: dict[str, int] = {}
        self.writer = SightingWriter(store, config.storage) if store is not None else None
        self.faults = FaultLog(log)
        self.tracking = TrackStage(tracker_factory or (lambda: UltralyticsTracker(config.tracker)), self.faults)
        self.embedding = CropEmbedding(config.reid, self.faults)
        self.linking = LinkStage(config, self.tracks, self.writer, self._track_key,
                                 self.stored_gallery if store is not None else None)
        self._model_identities()
        self.alerts = Alerts()
        self.commands = Commands(self)
        self.regrouped = 0  # identities corrected by the background re-association
        if self.writer is not None:
            self.writer.apply_retention()
            self._restore_identities()
            self._begin_run()

    def _model_identities(self) -> None:
        """The matcher, calibration, camera means and re-association window of the current model."""
        config = self.config.matcher
        self.matcher = new_matcher(config, self.store, self.embedder, self._allocate_id)
        self.linking.use(self.matcher, new_calibration(config))
        self.normaliser = restored_normaliser(config, self.store, self.embedder)
        self.regrouping = Regrouping(config, self.matcher.links)
        self._means_saved_at = time.monotonic()

    def _restore_identities(self, also_targets: set[int] | None = None) -> None:
        if self.store is not None:
            restore_identities(self.config.matcher, self.store, self.embedder, self.matcher, also_targets)

    def _save_camera_means(self) -> None:
        self._means_saved_at = time.monotonic()
        save_camera_means(self.store, self.embedder, self.normaliser)

    def _begin_run(self) -> None:
        assert self.writer is not None
        embedder = self.embedder
        self.writer.begin_run(detector=self.detection.name, embedder=embedder.name,
                              embedder_is_fallback=embedder.is_fallback, provider=embedder.provider,
                              model_key=embedder.key, warnings=self.warnings, config=self.config.to_dict())

    @property
    def corrections(self) -> int:
        """Identities corrected automatically: tentative ones by better crops, and by the re-association."""
        return self.linking.corrections + self.regrouped

    @property
    def run_id(self) -> int | None:
        return self.writer.run_id if self.writer is not None else None

    @property
    def info(self) -> PipelineInfo:
        return PipelineInfo(
            detector=self.detection.name, detector_device=self.detection.device,
            embedder=self.embedder.name, embedder_key=self.embedder.key, provider=self.embedder.provider,
            embedder_precision=self.embedder.precision, embedder_is_fallback=self.embedder.is_fallback,
            match_threshold=self.matcher.threshold,
            warnings=self.warnings, run_id=self.run_id,
            embedder_description=info.describe() if (info := getattr(self.embedder, "info", None)) else "",
            embedder_imagenet_only=bool(info and info.imagenet_only))

    def stored_gallery(self, identity_id: int) -> np.ndarray:
        assert self.store is not None
        return self.store.identity_gallery(identity_id, self.embedder.key, self.config.matcher.identity_gallery_size)

    def regallery(self, *identity_ids: int | None) -> None:
        """Rebuild these identities' galleries from the store (an identity left without embeddings goes)."""
        for identity_id in identity_ids:
            if identity_id is not None:
                self.matcher.replace_gallery(identity_id, self.stored_gallery(identity_id))

    def set_embedder(self, embedder: Embedder, warnings: Sequence[str] = ()) -> PipelineInfo:
        """Hot-swap the re-id model (e.g. one just trained) without stopping the cameras.

        Embeddings of different models are not comparable: live tracks are re-embedded, the matcher
        is rebuilt from what the store holds for the new model, and a new run records the change.
        Identity numbers go on from where they were, so nothing an operator named is lost.
        """
        for key in list(self.tracks):  # the next sightings are the new run's tracks
            self._drop_track(key)
        self.embedder = embedder
        self.warnings = tuple(warnings)
        self.alerts.watch_list = self.alerts.watch_list.rebuilt(embedder)
        targets = self.matcher.targets
        self.matcher.close()
        self._save_camera_means()
        self.regrouping.close()  # the new model's embeddings do not compare with the old ones: a new window
        self._model_identities()
        if self.writer is not None:
            self._restore_identities(targets)
            self.writer.end_run("model changed")
            self._begin_run()
        log.info("re-id model swapped to %s (%s)", embedder.name, embedder.provider)
        return self.info

    def set_detector(self, detector: Detector) -> PipelineInfo:
        """Run another runtime of the same detector (one prepared in the background) from the next frame on.

        Its boxes agree with the running one's (every export is checked against the checkpoint before it is
        offered), so trackers, tracks and the run go on as they were.
        """
        before, self.detection.detector = self.detection.name, detector
        log.info("detector switched from %s to %s", before, self.detection.name)
        return self.info

    def forget_source(self, source_id: str) -> None:
        """Drop a camera's tracker and tracks (it was removed, or jumped in time); its next tracks are new rows."""
        self._cameras.pop(source_id, None)
        for key in [k for k in self.tracks if k[0] == source_id]:
            self._drop_track(key)
        self.segments[source_id] = self.segments.get(source_id, 0) + 1

    # -- processing ------------------------------------------------------------------------------

    def process(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Analyse the frames (or the changed regions) the motion gate lets through; the others show their
        camera's last people."""
        for frame in frames:
            self._follow_media_time(frame)
        cameras = [self._camera(f.source_id) for f in frames]
        verdicts = [camera.gate.decide(f.image, f.moment, bool(camera.last_persons))
                    for f, camera in zip(frames, cameras, strict=True)]
        analysed = [(f, v.region) for f, v in zip(frames, verdicts, strict=True) if v.detect]
        results = dict(zip([id(f) for f, _ in analysed], self._analyse(analysed), strict=True))
        if frames:
            self._regroup(self.regrouping.step(max(f.moment for f in frames), self.matcher, self._normalise))
        if self.writer is not None:
            self.writer.after_frames()
        if time.monotonic() - self._means_saved_at >= CAMERA_MEANS_SAVED_EVERY_S:
            self._save_camera_means()
        return [results.get(id(frame)) or replace(self._bare_result(frame),
                                                  persons=self._camera(frame.source_id).last_persons)
                for frame in frames]

    def _follow_media_time(self, frame: Frame) -> None:
        """A looping file that starts again is a jump in time: the people at its end are not those at its start,
        so its tracks end there (as on a seek) instead of being matched to whoever stands where they stood."""
        if frame.media_time is None:
            return
        last = self._camera(frame.source_id).media_time
        if last is not None and frame.media_time < last:
            self.forget_source(frame.source_id)
        self._camera(frame.source_id).media_time = frame.media_time

    def _camera(self, source_id: str) -> CameraState:
        camera = self._cameras.get(source_id)
        if camera is None:
            camera = self._cameras[source_id] = CameraState.new(self.config.detector)
        return camera

    def _analyse(self, work: Sequence[tuple[Frame, Region | None]]) -> list[FrameResult]:
        """Detect in all frames at once, then track, embed and match camera by camera.

        Every frame gets a result: a stage that fails for one frame or camera leaves that frame without
        persons (and that camera's tracker restarted), never the others without theirs.
        """
        if not work:
            return []
        frames = [frame for frame, _ in work]
        try:
            detections = self.detection.detect([(frame, region, self._camera(frame.source_id))
                                                for frame, region in work])
        except Exception as exc:
            self.faults.report("detect", f"detector failed on {len(frames)} frames; they are shown unprocessed: "
                                         f"{type(exc).__name__}: {exc}", exc)
            return [self._bare_result(frame) for frame in frames]
        for frame, dets in zip(frames, detections, strict=True):
            self._camera(frame.source_id).last_detections = dets
        tracked: list[TrackOutput | None] = []
        for frame, dets in zip(frames, detections, strict=True):
            tracked.append(self.tracking.step(frame, dets, self._camera(frame.source_id)))
            if tracked[-1] is None:  # the tracker failed: the camera's next one starts a new segment
                self.forget_source(frame.source_id)
        fresh = self.embedding.embed(frames, detections, tracked, self.tracks, self.embedder, self.normaliser)
        results = []
        for frame, dets, tracks in zip(frames, detections, tracked, strict=True):
            if tracks is None:
                results.append(self._bare_result(frame))
                continue
            try:
                results.append(self._link_and_store(frame, dets, tracks, fresh))
            except StorageUnavailable as exc:  # the history is out of reach: the live tracks go on, as they are
                self.faults.report(f"link:{frame.source_id}", f"source {frame.source_id}: the history cannot be "
                                   f"read ({exc}); this frame is shown without identities", exc)
                results.append(self._bare_result(frame))
            except Exception as exc:
                self.faults.report(f"link:{frame.source_id}", f"source {frame.source_id}: matching failed; its "
                                   f"tracker restarts: {type(exc).__name__}: {exc}", exc)
                self.forget_source(frame.source_id)
                results.append(self._bare_result(frame))
        for result in results:
            self._camera(result.source_id).last_persons = result.persons
        self._forget_stale_tracks()
        return results

    @staticmethod
    def _bare_result(frame: Frame) -> FrameResult:
        return FrameResult(frame.source_id, frame.index, frame.timestamp, frame.image, (), frame.media_time)

    def _link_and_store(self, frame: Frame, dets: Detections, tracks: TrackOutput,
                        fresh: FreshEmbeddings) -> FrameResult:
        source = frame.source_id
        keys = [(source, int(t)) for t in tracks.track_ids]
        self.linking.link(source, keys, fresh, frame.moment)
        persons = []
        targets = self.matcher.targets
        for row, key in enumerate(keys):
            state = self.tracks[key]
            det_index = int(tracks.det_index[row])
            person = TrackedPerson(
                track_id=key[1], box=tracks.boxes[row].copy(), confidence=float(tracks.scores[row]),
                identity_id=state.identity_id, match_score=state.match_score,
                keypoints=keypoints_of(dets, det_index), is_target=state.identity_id in targets)
            persons.append(person)
            self._follow_tracklet(frame, key, person, state if key in fresh else None)
            alert = self.alerts.target_sighted(frame, state, person) if person.is_target else None
            if key in fresh:
                self.alerts.watch(frame, state, person)
            if self.writer is not None:
                self.writer.write(frame, self._track_key(key), person, fresh.get(key), self.embedder.key,
                                  alert.thumbnail if alert is not None else None)
        if tracks.tentative is not None:  # drawn from the first frame; matched and stored once confirmed
            persons += [TrackedPerson(track_id=int(t), box=box.copy(), confidence=float(score), identity_id=None,
                                      match_score=None, keypoints=keypoints_of(dets, int(index)), tentative=True)
                        for t, box, score, index in zip(tracks.tentative.track_ids, tracks.tentative.boxes,
                                                        tracks.tentative.scores, tracks.tentative.det_index,
                                                        strict=True)]
        return FrameResult(source, frame.index, frame.timestamp, frame.image, tuple(persons), frame.media_time)

    def _settle(self) -> None:
        """At the end of a run: the last pass, waited for (see :meth:`Regrouping.settle`)."""
        try:
            self._regroup(self.regrouping.settle(self.matcher, self._normalise))
        except Exception:
            log.exception("the last re-association pass failed; the run's identities stay as they were")

    @property
    def _normalise(self) -> Normalise | None:
        """How a pass takes each camera's mean, as known now, out of its tracks' appearance."""
        return self.normaliser.apply if self.normaliser is not None else None

    def _regroup(self, changes: Sequence[PassChange]) -> None:
        """Correct the identities a pass regrouped, through the store's correction path; live tracks take the new
        identity at once."""
        touched: set[int] = set()
        for change in changes:
            source, segment, track_id = change.key
            live = self.tracks.get((source, track_id)) if segment == self.segments.get(source, 0) else None
            if live is not None:
                live.identity_id, live.match_score = change.identity_id, change.score
                live.committed, live.owns_identity = True, False
            if self.writer is not None:
                self.writer.correct(change.track, change.identity_id, change.previous, change.score)
            self.regrouped += 1
            touched |= {change.identity_id, change.previous}
            log.info("%s track %d: identity %d -> %d (re-association)", source, track_id, change.previous,
                     change.identity_id)
        if touched and self.store is not None:
            self.regallery(*sorted(touched))

    def tracklet_key(self, key: LiveTrack) -> tuple[str, int, int]:
        """A track in the re-association window: a restarted tracker counts its ids from 1 again."""
        return key[0], self.segments.get(key[0], 0), key[1]

    def _follow_tracklet(self, frame: Frame, key: LiveTrack, person: TrackedPerson,
                         embedded: TrackState | None) -> None:
        """Keep the track's summary for the background re-association up to date."""
        if not self.regrouping.active:
            return
        track = self._track_key(key) if self.writer is not None else TrackKey(key[0], key[0], "file",
                                                                              self.segments.get(key[0], 0), key[1])
        self.regrouping.follow(self.tracklet_key(key), track, frame, person, embedded,
                               self.config.reid.track_descriptor == "all")

    def take_alerts(self) -> list[TargetSighted | WatchMatch]:
        """The alerts raised since the last call (the run loop passes them on after each step)."""
        return self.alerts.take()

    def _track_key(self, key: LiveTrack) -> TrackKey:
        assert self.writer is not None
        return self.writer.track_key(key[0], self.segments.get(key[0], 0), key[1])

    def _forget_stale_tracks(self) -> None:
        horizon = 4 * self.config.tracker.track_buffer
        newest: dict[str, int] = {}
        for (source, _), state in self.tracks.items():
            newest[source] = max(newest.get(source, 0), state.last_seen)
        for key in [k for k, s in self.tracks.items() if newest[k[0]] - s.last_seen > horizon]:
            self._drop_track(key)

    def _drop_track(self, key: LiveTrack) -> None:
        """The track has ended: a tentative identity becomes final, and its last sighting, if held back by
        sampling, is written now."""
        self.linking.commit(self.tracks.pop(key))
        self.regrouping.ended(self.tracklet_key(key))
        self.matcher.withdraw(key)  # a later track with the same number must not take its look-up's answer
        if self.writer is not None:
            self.writer.track_ended(self._track_key(key))

    def register_source(self, spec: SourceSpec) -> None:
        """Record how a source is described in the store (its URI without credentials, its kind)."""
        if self.writer is not None:
            self.writer.register_source(spec)

    def searcher(self) -> Searcher:
        """Appearance search for other threads (the GUI's readers): this model and the store's live index."""
        return model_searcher(self.config.matcher, self.store, self.embedder, self.normaliser)

    @property
    def storage_health(self) -> StorageHealth | None:
        return self.store.health if self.store is not None else None

    def close(self, status: str = "finished") -> bool:
        """End the run in the store; False when not everything could be saved (logged). Never raises."""
        self.matcher.close()
        self._save_camera_means()
        if self.writer is None or self.run_id is None:
            self.regrouping.close()
            return True
        try:
            for key in list(self.tracks):
                self._drop_track(key)
            self._settle()
            return self.writer.end_run(status)
        except Exception:
            log.exception("could not end run %s", self.run_id)
            return False
