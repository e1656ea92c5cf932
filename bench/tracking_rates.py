"""Per-camera tracking at the analysis rates a CPU reaches: ``python bench/tracking_rates.py``.

The whole of ``../shared/data/vtest.avi`` (10 frames/s) is analysed every 1st, 3rd and 6th frame (10, 3.3 and
1.7 analysed frames/s) by the app's tracker, with plain IoU matching (``tracker.buffer_per_s = 0``, as before
issue 29) and with today's default buffer, and scored against ``bench/data/vtest_people.txt`` with motmetrics:
IDF1 and recall of the confirmed tracks, and recall and precision with the tentative boxes drawn too. The detector
runs once (``detector.runtime auto``: the fastest prepared in ``bench/.cache``) and its detections are replayed.
Figures only, no asserts.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REID_DESKTOP_DATA_DIR", str(ROOT / "bench" / ".cache"))  # prepared runtimes kept
os.environ.setdefault("REID_DESKTOP_BACKGROUND_PREPARE", "0")

import motmetrics as mm  # noqa: E402

from reid_desktop.core.capture.sources import read_frames  # noqa: E402
from reid_desktop.core.config import PipelineConfig, TrackerConfig  # noqa: E402
from reid_desktop.core.types import Detections  # noqa: E402
from reid_desktop.core.vision.detector_runtimes import make_detector  # noqa: E402
from reid_desktop.core.vision.tracking import UltralyticsTracker  # noqa: E402

if not hasattr(np, "asfarray"):  # motmetrics 1.4.0 still calls this NumPy 1 alias
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]

CLIP = ROOT.parent / "shared" / "data" / "vtest.avi"
PEOPLE = ROOT / "bench" / "data" / "vtest_people.txt"
FPS = 10.0


def score(detections: list[Detections], truth: np.ndarray, every: int, config: TrackerConfig,
          tentative: bool) -> dict[str, float]:
    tracker = UltralyticsTracker(config)
    accumulator = mm.MOTAccumulator(auto_id=True)
    blank = np.zeros((576, 768, 3), np.uint8)
    for index in range(0, len(detections), every):
        out = tracker.update(detections[index], blank, index / FPS)
        ids, boxes = list(out.track_ids), list(out.boxes)
        if tentative and out.tentative is not None:
            ids += list(out.tentative.track_ids)
            boxes += list(out.tentative.boxes)
        shown = np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes]).reshape(-1, 4)
        people = truth[truth[:, 0] == index + 1]
        accumulator.update(people[:, 1].astype(int).tolist(), ids,
                           mm.distances.iou_matrix(people[:, 2:6], shown, max_iou=0.5))
    metrics = mm.metrics.create().compute(accumulator, metrics=["idf1", "recall", "precision", "num_switches"])
    return {k: float(v) for k, v in metrics.iloc[0].items()}


def main() -> None:
    config = PipelineConfig()
    detector = make_detector(config.detector)
    detections = [detector.detect([frame])[0] for frame in read_frames(str(CLIP))]
    truth = np.loadtxt(PEOPLE, delimiter=",")
    print(f"per-camera tracking on vtest.avi ({len(detections)} frames), detector {detector.name}, "
          f"{config.tracker.kind}")
    print(f"  {'analysed/s':>10}  {'matching':<22} {'IDF1':>6} {'recall':>7} {'ID sw.':>6} | {'recall':>7} "
          f"{'precision':>9} (with tentative boxes)")
    for every in (1, 3, 6):
        for label, buffer in (("plain IoU", 0.0), (f"buffer {config.tracker.buffer_per_s}/s", None)):
            tracker = config.tracker if buffer is None else dataclasses.replace(config.tracker, buffer_per_s=buffer)
            confirmed = score(detections, truth, every, tracker, tentative=False)
            drawn = score(detections, truth, every, tracker, tentative=True)
            print(f"  {FPS / every:10.1f}  {label:<22} {confirmed['idf1']:6.3f} {confirmed['recall']:7.3f} "
                  f"{confirmed['num_switches']:6.0f} | {drawn['recall']:7.3f} {drawn['precision']:9.3f}")


if __name__ == "__main__":
    main()
