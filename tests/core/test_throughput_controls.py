"""Spending detector time where it matters: the motion gate and the per-camera analysis rate, on real video."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid_desktop.core.detection import Detector
from reid_desktop.core.embedding import ColorTextureEmbedder
from reid_desktop.core.motion import MotionGate, MotionSettings
from reid_desktop.core.pipeline import Pipeline
from reid_desktop.core.runner import run
from reid_desktop.core.sources import SourceSpec
from reid_desktop.core.types import Detections, Frame, FrameResult
from tests.core.test_pipeline import fast_config


class CountingDetector:
    """The real detector, counting the pictures it is given."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.name = detector.name
        self.pictures = 0

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.pictures += len(images)
        return self._detector.detect(images)


def test_motion_gate_sees_change_and_keeps_people_standing_still_alive(demo_frames) -> None:
    gate = MotionGate(MotionSettings(share=0.002, keepalive_s=1.0))
    still = demo_frames[0]
    assert gate.should_detect(still, 0.00, has_people=False)  # the first frame is always analysed
    assert not gate.should_detect(still.copy(), 0.04, has_people=False)
    assert not gate.should_detect(still.copy(), 5.00, has_people=False)  # an empty still scene: never again
    assert gate.should_detect(still.copy(), 5.04, has_people=True)  # people in view: at least every second
    assert not gate.should_detect(still.copy(), 5.50, has_people=True)
    assert gate.should_detect(still.copy(), 6.05, has_people=True)
    assert gate.should_detect(demo_frames[12], 6.09, has_people=False)  # half a second of walking: a change
    noisy = np.clip(demo_frames[12].astype(np.int16) + np.random.default_rng(0).integers(-4, 5, still.shape),
                    0, 255).astype(np.uint8)
    assert not gate.should_detect(noisy, 6.13, has_people=False)  # sensor noise is not motion
    assert gate.skipped == 4
    off = MotionGate(MotionSettings(share=0.0, keepalive_s=1.0))
    assert all(off.should_detect(still, t, has_people=False) for t in (0.0, 0.1, 0.2))


def test_frozen_stretch_costs_no_detection_and_shows_the_last_people(pose_detector, demo_frames) -> None:
    counting = CountingDetector(pose_detector)
    cfg = fast_config(**{"detector.motion_share": 0.002, "detector.motion_keepalive_s": 1.0})
    pipeline = Pipeline(cfg, detector=counting, embedder=ColorTextureEmbedder())
    moving = [Frame("cam", i, 100.0 + i / 25, demo_frames[i], i / 25) for i in range(10)]
    frozen = [Frame("cam", 10 + i, 100.4 + i / 25, demo_frames[9], (10 + i) / 25) for i in range(50)]  # 2 s still
    results: list[FrameResult] = []
    analysed: list[bool] = []
    for frame in [*moving, *frozen]:
        before = counting.pictures
        results += pipeline.process([frame])
        analysed.append(counting.pictures > before)
    # 10 moving frames, then the frozen picture only when the keep-alive second is due (twice in 2 s)
    assert all(analysed[:10]) and 1 <= sum(analysed[10:]) <= 3, analysed
    assert len(results[9].persons) >= 4
    for previous, result, fresh in zip(results, results[1:], analysed[1:], strict=False):
        if not fresh:  # a skipped frame shows the people of the last analysed one, on its own picture
            assert [p.track_id for p in result.persons] == [p.track_id for p in previous.persons]
            assert result.frame_index == previous.frame_index + 1
    pipeline.close()


def test_analysis_rate_caps_each_camera(pose_detector, demo_clip: Path) -> None:
    cfg = fast_config(**{"sources.analysis_fps": 4.0, "detector.imgsz": 320})
    pipeline = Pipeline(cfg, detector=pose_detector, embedder=ColorTextureEmbedder())
    specs = [SourceSpec(str(demo_clip), "a"), SourceSpec(str(demo_clip), "b")]
    start = time.monotonic()
    counts = {"a": 0, "b": 0}
    for event in run(specs, cfg, max_frames=8, pipeline=pipeline):
        if isinstance(event, FrameResult):
            counts[event.source_id] += 1
    elapsed = time.monotonic() - start
    assert counts == {"a": 8, "b": 8}  # both cameras served: none starved
    # 8 frames at most 4 a second: the first at once, the others 0.25 s apart at the earliest
    assert elapsed >= 7 * 0.25 * 0.95, elapsed
