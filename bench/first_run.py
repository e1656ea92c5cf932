"""A new user's first run: ``python bench/first_run.py [--seconds 300]``.

From an empty user data folder, ``reid-desktop process --demo`` as it runs by default (the window's two demo
cameras, looping at their own pace; the detector on ``auto``, so PyTorch until the background preparation has a
faster runtime): frames analysed per second over time, when each faster detector took over, and the recall of the
drawn boxes before and after the switch (the people plain Ultralytics finds on the same pictures, IoU >= 0.5).
The baseline runs first in the same process: plain Ultralytics PyTorch ``predict`` on the same pictures at the same
size. Figures only, no asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid_desktop.core import config as config_mod  # noqa: E402
from reid_desktop.core.capture.sources import DEMO_LINKS, demo_sources, read_frames  # noqa: E402
from reid_desktop.core.config import DetectorConfig  # noqa: E402
from reid_desktop.core.engine.pipeline import Pipeline  # noqa: E402
from reid_desktop.core.engine.runner import PipelineControl, run  # noqa: E402
from reid_desktop.core.store.history import open_store  # noqa: E402
from reid_desktop.core.types import FrameResult, PipelineInfo  # noqa: E402
from reid_desktop.core.vision.detection import YoloDetector, bundled_detector_path  # noqa: E402
from reid_desktop.core.vision.detector_preparation import SWITCH_VARIABLE, DetectorPreparation  # noqa: E402
from reid_desktop.core.vision.detector_runtimes import box_iou  # noqa: E402
from trainer.default_model import default_embedder  # noqa: E402

BUCKET_S = 15.0
SAMPLE_EVERY = 10  # every 10th analysed picture is kept to score the drawn boxes
SAMPLES_KEPT = 120  # per detector
PERSON = 0.3  # the reference's boxes that count as people


@dataclass
class Timeline:
    """What the run did, second by second."""

    started: float = field(default_factory=time.monotonic)
    frames: dict[int, int] = field(default_factory=dict)  # bucket -> analysed frames
    switches: list[tuple[float, str]] = field(default_factory=list)  # (seconds, detector)
    prepared_at: float | None = None
    samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # detector -> (image, boxes)

    def at(self) -> float:
        return time.monotonic() - self.started


def plain_ultralytics_fps(images: list[np.ndarray], imgsz: int) -> float:
    """Ultralytics' own PyTorch predict, one picture per call, after a warm-up."""
    from ultralytics import YOLO

    model = YOLO(str(bundled_detector_path()))
    model.predict(images[0], imgsz=imgsz, classes=[0], verbose=False)
    start = time.perf_counter()
    for image in images:
        model.predict(image, imgsz=imgsz, classes=[0], verbose=False)
    return len(images) / (time.perf_counter() - start)


def demo_pictures() -> list[np.ndarray]:
    """The two demo cameras' pictures (the clip's halves), as the pipeline sees them."""
    pictures = []
    for frame in read_frames(str(demo_sources()[0].uri))[::8]:
        height, width = frame.shape[:2]
        for spec in demo_sources():
            left, top, right, bottom = spec.region or (0.0, 0.0, 1.0, 1.0)
            pictures.append(frame[round(top * height):round(bottom * height), round(left * width):round(right * width)])
    return pictures


def first_run(seconds: float) -> Timeline:
    """``process --demo`` with the default settings, in this process, for ``seconds``."""
    cfg = config_mod.load(None, {"matcher.camera_links": DEMO_LINKS})
    timeline = Timeline()
    detector = ""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "sightings.sqlite"), cfg.storage.commit_interval_s,
                           embeddings_per_track=cfg.storage.embeddings_per_track)
        embedder, warnings = default_embedder(cfg.reid)
        pipeline = Pipeline(cfg, store, embedder=embedder, embedder_warnings=warnings)
        control = PipelineControl()
        analysed = 0
        for event in run(demo_sources(), cfg, store, control=control, pipeline=pipeline, stay_open=True):
            if isinstance(event, PipelineInfo) and event.detector != detector:
                detector = event.detector
                timeline.switches.append((timeline.at(), detector))
            elif isinstance(event, DetectorPreparation) and event.finished:
                timeline.prepared_at = timeline.at()
            elif isinstance(event, FrameResult):
                bucket = int(timeline.at() // BUCKET_S)
                timeline.frames[bucket] = timeline.frames.get(bucket, 0) + 1
                analysed += 1
                kept = timeline.samples.setdefault(detector, [])
                if analysed % SAMPLE_EVERY == 0 and len(kept) < SAMPLES_KEPT:
                    boxes = np.array([p.box for p in event.persons], dtype=np.float32).reshape(-1, 4)
                    kept.append((event.image, boxes))
            if timeline.at() >= seconds:
                control.cancel()
        store.close()
    return timeline


def recall(samples: list[tuple[np.ndarray, np.ndarray]], reference: YoloDetector) -> tuple[float, int]:
    """The share of the people the plain checkpoint finds on each kept picture that carry a drawn box."""
    found = total = 0
    for image, drawn in samples:
        people = reference.detect([image])[0].boxes
        people = people[people[:, 4] >= PERSON, :4]
        total += len(people)
        if len(people) and len(drawn):
            found += int((box_iou(people, drawn).max(axis=1) >= 0.5).sum())
    return (found / total if total else float("nan")), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the first run is watched")
    args = parser.parse_args()
    imgsz = DetectorConfig().imgsz
    baseline = plain_ultralytics_fps(demo_pictures()[:16], imgsz)
    print(f"baseline: plain Ultralytics PyTorch predict at {imgsz} px on the demo's pictures: {baseline:.2f} "
          "pictures/s")
    with tempfile.TemporaryDirectory() as data:
        os.environ["REID_DESKTOP_DATA_DIR"] = data  # a new user: nothing prepared
        os.environ.setdefault(SWITCH_VARIABLE, "1")
        timeline = first_run(args.seconds)
        reference = YoloDetector(DetectorConfig(runtime="pytorch"))
        scores = {name: recall(samples, reference) for name, samples in timeline.samples.items()}
    print(f"\nfirst run of process --demo (defaults), {args.seconds:.0f} s from an empty data folder:")
    print(f"  {'seconds':>9}  {'frames/s':>8}  {'x baseline':>10}  detector")
    switches = list(timeline.switches)
    for bucket in range(int(args.seconds // BUCKET_S)):
        start = bucket * BUCKET_S
        running = [name for at, name in switches if at <= start + BUCKET_S][-1]
        rate = timeline.frames.get(bucket, 0) / BUCKET_S
        print(f"  {start:4.0f}-{start + BUCKET_S:<4.0f}  {rate:8.2f}  {rate / baseline:10.2f}  {running}")
    for at, name in switches:
        print(f"  {at:6.1f} s: {name}")
    if timeline.prepared_at is not None:
        print(f"  {timeline.prepared_at:6.1f} s: background preparation finished")
    first_3_min = sum(n for b, n in timeline.frames.items() if (b + 1) * BUCKET_S <= 180) / 180
    print(f"  first 3 minutes: {first_3_min:.2f} frames/s on average ({first_3_min / baseline:.2f} x baseline)")
    print("recall of the drawn boxes (people plain Ultralytics finds on the same pictures, IoU >= 0.5):")
    for name, (share, people) in scores.items():
        print(f"  {name:<36} {share:6.1%} of {people} people")


if __name__ == "__main__":
    main()
