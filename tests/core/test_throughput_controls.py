"""Spending detector time where it matters: the motion gate and the per-camera analysis rate, on real video."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import run
from reid_desktop.core.types import Detections, Frame, FrameResult
from reid_desktop.core.vision.detection import YoloDetector
from reid_desktop.core.vision.detector_runtimes import box_iou
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from reid_desktop.core.vision.motion import MAX_REGION_SHARE, MotionGate, MotionSettings, merge_region, region_size
from tests.core.test_pipeline import fast_config


class CountingDetector:
    """The real detector, counting the pictures it is given and the input sizes asked for."""

    def __init__(self, detector: YoloDetector) -> None:
        self._detector = detector
        self.name = detector.name
        self.pictures = 0
        self.calls = 0
        self.sizes: list[int] = []

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.detect_sized(images, [self._detector.config.imgsz] * len(images))

    def detect_sized(self, images: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Detections]:
        self.pictures += len(images)
        self.calls += 1
        self.sizes += sizes
        return self._detector.detect_sized(images, sizes)


def test_motion_gate_sees_change_and_keeps_people_standing_still_alive(demo_frames) -> None:
    gate = MotionGate(MotionSettings(share=0.002, keepalive_s=1.0))
    still = demo_frames[0]

    def detects(image: np.ndarray, moment: float, has_people: bool) -> bool:
        return gate.decide(image.copy(), moment, has_people).detect

    assert detects(still, 0.00, has_people=False)  # the first frame is always analysed
    assert not detects(still, 0.04, has_people=False)
    assert not detects(still, 5.00, has_people=False)  # an empty still scene: never again
    assert detects(still, 5.04, has_people=True)  # people in view: at least every second
    assert not detects(still, 5.50, has_people=True)
    assert detects(still, 6.05, has_people=True)
    walking = gate.decide(demo_frames[12], 6.09, has_people=False)  # half a second of walking everywhere
    assert walking.detect and walking.region is None  # too much changed for a region: the whole picture
    noisy = np.clip(demo_frames[12].astype(np.int16) + np.random.default_rng(0).integers(-4, 5, still.shape),
                    0, 255).astype(np.uint8)
    assert not detects(noisy, 6.13, has_people=False)  # sensor noise is not motion
    assert gate.skipped == 4
    off = MotionGate(MotionSettings(share=0.0, keepalive_s=1.0))
    assert all(off.decide(still, t, has_people=False).detect for t in (0.0, 0.1, 0.2))


REGION = (560, 200, 768, 460)  # two people walk here in the demo clip; the rest of the picture is held still


def _composed(demo_frames: list[np.ndarray], index: int) -> np.ndarray:
    """Frame 0 everywhere but in REGION, which plays the clip: a scene where only a corner moves."""
    image = demo_frames[0].copy()
    x1, y1, x2, y2 = REGION
    image[y1:y2, x1:x2] = demo_frames[index][y1:y2, x1:x2]
    return image


def test_a_small_change_gives_a_region_and_its_margin(demo_frames) -> None:
    gate = MotionGate(MotionSettings(share=0.002, keepalive_s=10.0))
    assert gate.decide(_composed(demo_frames, 0), 0.0, has_people=True).region is None
    verdict = gate.decide(_composed(demo_frames, 8), 0.32, has_people=True)
    assert verdict.detect and verdict.region is not None
    x1, y1, x2, y2 = verdict.region
    assert x1 >= REGION[0] - 150 and x2 <= 768 and y1 >= REGION[1] - 150 and y2 <= REGION[3] + 150
    assert (x2 - x1) * (y2 - y1) <= MAX_REGION_SHARE * 768 * 576
    assert region_size(verdict.region, (576, 768, 3), 1280) < 1280  # cheaper than the whole picture
    assert region_size((0, 0, 300, 200), (576, 768, 3), 1280) == 512  # 300 px at the whole frame's scale (5/3)
    assert region_size((0, 0, 300, 200), (2160, 3840, 3), 1280) == 320  # a 4K camera: the crop at full resolution


def test_merge_region_keeps_people_outside_and_replaces_those_inside() -> None:
    previous = Detections(np.array([[10, 10, 50, 100, 0.9, 0], [210, 20, 250, 110, 0.8, 0]], np.float32),
                          np.zeros((2, 17, 3), np.float32))
    fresh = Detections(np.array([[5, 5, 45, 95, 0.7, 0]], np.float32), np.ones((1, 17, 3), np.float32))
    merged = merge_region(previous, fresh, (200, 10, 300, 150))
    assert merged.boxes[:, :4].tolist() == [[10, 10, 50, 100], [205, 15, 245, 105]]
    assert merged.keypoints is not None and merged.keypoints.shape == (2, 17, 3)
    assert merged.keypoints[1, 0].tolist() == [201, 11, 1]  # moved into the picture's coordinates
    assert len(merge_region(None, Detections.empty(), (0, 0, 10, 10))) == 0


def test_only_the_changed_corner_is_detected_and_its_people_are_found(pose_detector, demo_frames) -> None:
    counting = CountingDetector(pose_detector)
    cfg = fast_config(**{"detector.motion_share": 0.002, "detector.motion_keepalive_s": 10.0,
                         "detector.imgsz": 1280})
    pipeline = Pipeline(cfg, detector=counting, embedder=ColorTextureEmbedder())
    frames = [Frame("cam", i, 100.0 + i / 25, _composed(demo_frames, i), i / 25) for i in range(0, 40, 2)]
    results = [r for frame in frames for r in pipeline.process([frame])]
    assert pipeline._cameras["cam"].gate.regions >= 10 and sum(size < 1280 for size in counting.sizes) >= 10
    whole = pose_detector.detect([frames[-1].image])[0]
    in_region = whole.boxes[(whole.boxes[:, 4] >= 0.3) & (whole.boxes[:, 0] >= REGION[0])
                            & (whole.boxes[:, 1] >= REGION[1]) & (whole.boxes[:, 3] <= REGION[3])]
    shown = np.array([p.box for p in results[-1].persons]).reshape(-1, 4)
    assert len(in_region) >= 1 and len(shown) >= len(whole.boxes[whole.boxes[:, 4] >= 0.3]) - 1
    for box in in_region:  # every person of the moving corner is where a whole-frame detection puts them
        assert box_iou(box[None, :4], shown).max() >= 0.5
    pipeline.close()


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


def test_analysis_rate_caps_each_camera(demo_clip: Path) -> None:
    cfg = fast_config(**{"sources.analysis_fps": 4.0, "detector.imgsz": 320})
    pipeline = Pipeline(cfg, detector=YoloDetector(cfg.detector), embedder=ColorTextureEmbedder())
    specs = [SourceSpec(str(demo_clip), "a"), SourceSpec(str(demo_clip), "b"),
             SourceSpec(str(demo_clip), "c", analysis_fps=0.0)]  # c: its own rate, no limit
    start = time.monotonic()
    order = []
    for event in run(specs, cfg, max_frames=8, pipeline=pipeline):
        if isinstance(event, FrameResult):
            order.append(event.source_id)
    elapsed = time.monotonic() - start
    assert sorted(order) == ["a"] * 8 + ["b"] * 8 + ["c"] * 8  # every camera served: none starved
    # 8 frames at most 4 a second: the first at once, the others 0.25 s apart at the earliest
    assert elapsed >= 7 * 0.25 * 0.95, elapsed
    last = {name: max(i for i, n in enumerate(order) if n == name) for name in "abc"}
    assert last["c"] < last["a"] and last["c"] < last["b"]  # c, without a limit, did not wait for the others


def test_one_detector_call_and_one_embedding_call_per_step_for_all_cameras(pose_detector, demo_clip: Path) -> None:
    counting = CountingDetector(pose_detector)
    calls: list[int] = []

    class CountingEmbedder(ColorTextureEmbedder):
        def embed(self, crops):
            calls.append(len(crops))
            return super().embed(crops)

    cfg = fast_config(**{"detector.imgsz": 640})
    pipeline = Pipeline(cfg, detector=counting, embedder=CountingEmbedder())
    frames = [Frame(f"cam{i}", 0, 100.0, image, 0.0) for i, image in enumerate(_read_three(demo_clip))]
    pipeline.process(frames)
    assert counting.calls == 1 and counting.pictures == 3
    assert len(calls) == 1 and calls[0] >= 6  # every camera's new tracks in one re-id batch
    pipeline.close()


def _read_three(clip: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(clip))
    images = [capture.read()[1] for _ in range(3)]
    capture.release()
    return images
