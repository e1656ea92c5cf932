"""Per-camera tracks on the identity cuts: does a track keep one person? ``python bench/tracker_switches.py``.

Each camera of ``bench/identity_eval.py``'s cuts (the real clip cut into two cameras three ways) is tracked by the
app's tracker with the look check off (``tracker.relink_similarity = 0``: motion alone, as before) and at its
default, and scored against ``bench/data/vtest_people.txt``: per-camera IDF1 and ID switches (motmetrics), tracks
that cover two people or more (at least 5 boxes each: the switches every later stage inherits), and tracks (the
fragments re-identification must join). The detector runs once per camera; its detections are replayed. Figures
only, no asserts.
"""

from __future__ import annotations

import collections
import sys
import time

import cv2
import identity_eval as ie  # the cuts and their people, beside this file
import motmetrics as mm
import numpy as np

from reid_desktop.core.config import PipelineConfig, TrackerConfig
from reid_desktop.core.types import Detections
from reid_desktop.core.vision.detector_runtimes import make_detector
from reid_desktop.core.vision.tracking import UltralyticsTracker

FRAMES = 795
Camera = list[tuple[np.ndarray, Detections]]  # pictures with their detections


def cameras() -> dict[str, tuple[ie.Cut, str, Camera]]:
    """Every cut's cameras, their pictures and the detector's answers (asked once)."""
    config = PipelineConfig()
    ie.configure(config, "detector", model=str(ie.SHARED / "models/yolov8n_int8.onnx"), imgsz=640)
    detector = make_detector(config.detector)
    capture = cv2.VideoCapture(str(ie.SHARED / "data/vtest.avi"))
    out: dict[str, tuple[ie.Cut, str, Camera]] = {
        f"{cut.name}/{name}": (cut, name, []) for cut in ie.CUTS.values() for name in cut.cameras}
    for _ in range(FRAMES):
        ok, image = capture.read()
        if not ok:
            break
        for cut, name, frames in out.values():
            x1, x2 = cut.cameras[name]
            picture = cut.look(name).apply(image[:, x1:x2])
            frames.append((picture, detector.detect([picture])[0]))
    return out


def score(cut: ie.Cut, name: str, frames: Camera, config: TrackerConfig) -> tuple[float, int, int, int, float]:
    """IDF1, ID switches, tracks covering two people or more, tracks, seconds."""
    truth = ie.ground_truth(cut, FRAMES)[name]
    tracker = UltralyticsTracker(config)
    accumulator = mm.MOTAccumulator(auto_id=False)
    started = time.perf_counter()
    for index, (picture, detections) in enumerate(frames):
        out = tracker.update(detections, picture, index / 10.0)
        boxes = [(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])) for b in out.boxes]
        people = truth.get(index, [])
        accumulator.update([p for p, _ in people], out.track_ids.tolist(),
                           ie.iou_distances([b for _, b in people], boxes), frameid=index)
    seconds = time.perf_counter() - started
    covered: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for event in accumulator.mot_events.itertuples():
        if event.Type in ("MATCH", "SWITCH"):
            covered[int(event.HId)][int(event.OId)] += 1
    summary = mm.metrics.create().compute(accumulator, metrics=["idf1", "num_switches"], name="camera")
    switched = sum(1 for people in covered.values() if sum(n >= 5 for n in people.values()) >= 2)
    return (float(summary["idf1"].iloc[0]), int(summary["num_switches"].iloc[0]), switched, len(covered), seconds)


def main() -> int:
    if not (ie.SHARED / "data/vtest.avi").exists():
        print(f"needs {ie.SHARED}/data/vtest.avi and models/yolov8n_int8.onnx", file=sys.stderr)
        return 2
    settings = {"motion alone": TrackerConfig(relink_similarity=0.0), "look checked (default)": TrackerConfig()}
    print("| camera | tracker | IDF1 | ID switches | tracks covering 2+ people | tracks | frames/s |")
    print("|---|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {label: [0.0] * 5 for label in settings}
    for key, (cut, name, frames) in cameras().items():
        for label, config in settings.items():
            idf1, switches, switched, tracks, seconds = score(cut, name, frames, config)
            rate = len(frames) / seconds
            print(f"| {key} | {label} | {idf1:.3f} | {switches} | {switched} | {tracks} | {rate:.0f} |")
            for i, value in enumerate((idf1, switches, switched, tracks, seconds)):
                totals[label][i] += value
    count = sum(len(cut.cameras) for cut in ie.CUTS.values())
    for label, (idf1, switches, switched, tracks, seconds) in totals.items():
        print(f"| all {count} | {label} | {idf1 / count:.3f} (mean) | {switches:.0f} | {switched:.0f} | {tracks:.0f} "
              f"| {count * FRAMES / seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
