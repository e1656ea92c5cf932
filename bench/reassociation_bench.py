"""Background re-association's cost: the cameras' rate with and without it, and its pass time and memory over a
fast-forwarded hour of a busy site; asserts nothing.

    python bench/reassociation_bench.py [--reid MODEL|fallback] [--frames 400] [--hours 1]

1. *Rate*: the app on identity_eval's "halves" cut (vtest.avi's left and right halves as two cameras), runs with
   it off and on alternated in one process, once with the detector running (as the app runs) and once with its
   detections replayed (it ran before the timed runs: the engine then does nothing but track, embed, match and
   store, so re-association's share is as large as it can be). Frames/s is what the engine sustained, both
   cameras together; the passes run in their own thread on the same cores.
2. *An hour, fast-forwarded*: the engine's tracklet window and the re-associator fed as the pipeline feeds them,
   for a site of four cameras in a row where a person comes in every 3 s (about 1,200 tracks an hour, each
   walking through two or three cameras), with a pass every 30 s of footage. Every 10 minutes of footage: the
   tracklets held, the pairs the camera links keep, one pass's time and the Python heap; all must level off.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from identity_eval import CUTS, SHARED, ReplayDetector, configure, cut_cameras  # noqa: E402

from reid_desktop.core.capture.sources import SourceSpec  # noqa: E402
from reid_desktop.core.config import PipelineConfig  # noqa: E402
from reid_desktop.core.engine.pipeline import Pipeline  # noqa: E402
from reid_desktop.core.engine.runner import run  # noqa: E402
from reid_desktop.core.identity.reassociation import ReassociationSettings, Reassociator  # noqa: E402
from reid_desktop.core.identity.tracklets import TrackletWindow  # noqa: E402
from reid_desktop.core.store.interface import TrackKey  # noqa: E402
from reid_desktop.core.store.storage import SightingStore  # noqa: E402
from reid_desktop.core.topology import CameraLinks  # noqa: E402
from reid_desktop.core.types import FrameResult  # noqa: E402
from reid_desktop.core.vision.detection import Detector  # noqa: E402
from reid_desktop.core.vision.detector_runtimes import make_detector  # noqa: E402
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder  # noqa: E402

# -- 1. the cameras' rate ------------------------------------------------------------------------------


def engine_rate(paths: dict[str, Path], embedder: Embedder, detector: Detector, frames: int,
                reassociation: bool, db: Path) -> tuple[float, int]:
    """(frames/s the engine sustained over all cameras, re-association passes taken)."""
    config = PipelineConfig()
    configure(config, "detector", imgsz=640)
    configure(config, "matcher", reassociation=reassociation)
    count = 0
    with SightingStore(db) as store:
        pipeline = Pipeline(config, store, detector=detector, embedder=embedder)
        started = time.perf_counter()
        for event in run([SourceSpec(str(p), name) for name, p in paths.items()], config, store,
                         max_frames=frames, pipeline=pipeline):
            count += isinstance(event, FrameResult)
        seconds = time.perf_counter() - started
        passes = pipeline.regrouping.reassociator.passes if pipeline.regrouping.reassociator is not None else 0
    return count / seconds, passes


def rate(embedder: Embedder, detector_model: Path, frames: int, work: Path) -> None:
    cut = CUTS["halves"]
    paths = cut_cameras(SHARED / "data/vtest.avi", work, frames, cut)
    config = PipelineConfig()
    configure(config, "detector", model=str(detector_model), imgsz=640)
    detector = make_detector(config.detector)
    replayed = ReplayDetector(detector)
    engine_rate(paths, embedder, replayed, frames, False, work / "warm.sqlite")  # fills the detections' cache
    print(f"## the cameras' rate: cut '{cut.name}', {frames} frames x {len(paths)} cameras, re-id {embedder.name}")
    print("| detector | run | re-association | frames/s (all cameras) | passes |")
    print("|---|---|---|---|---|")
    for label, used in (("running", detector), ("replayed", replayed)):
        rates: dict[bool, list[float]] = {False: [], True: []}
        for n, on in enumerate((False, True, False, True)):
            fps, passes = engine_rate(paths, embedder, used, frames, on, work / f"rate-{label}-{n}.sqlite")
            rates[on].append(fps)
            print(f"| {label} | {n + 1} | {'on' if on else 'off'} | {fps:.1f} | {passes} |")
        print(f"| {label} | mean | on / off | {np.mean(rates[True]):.1f} / {np.mean(rates[False]):.1f} "
              f"(ratio {np.mean(rates[True]) / np.mean(rates[False]):.2f}) | |")
    print()


# -- 2. an hour, fast-forwarded -------------------------------------------------------------------------

CAMERAS = ("a", "b", "c", "d")
STEP_S = 0.2  # the engine's analysis rate: 5 frames a second per camera
ARRIVAL_S = 3.0
PASS_EVERY_S = 30.0
REPORT_EVERY_S = 600.0
DIM = 512
CROP_NOISE = 0.035  # per dimension: a crop's cosine with its person's look is about 0.75


@dataclass
class Walker:
    """A person walking through consecutive cameras: stays of 6-12 s with walks of 5-15 s between them."""

    identity: np.ndarray
    stays: list[tuple[str, float, float]]  # camera, from, to
    track_ids: list[int]


def walkers(hours: float, rng: np.random.Generator) -> list[Walker]:
    out, moment, track = [], 0.0, 0
    while moment < hours * 3600:
        first = int(rng.integers(0, len(CAMERAS) - 1))
        visits = CAMERAS[first:first + int(rng.integers(2, 4))]
        stays, at = [], moment
        for camera in visits:
            length = float(rng.uniform(6, 12))
            stays.append((camera, at, at + length))
            at += length + float(rng.uniform(5, 15))
        identity = rng.normal(size=DIM)
        out.append(Walker(identity / np.linalg.norm(identity), stays, list(range(track, track + len(stays)))))
        track += len(stays)
        moment += float(rng.exponential(ARRIVAL_S))
    return out


def hour(hours: float) -> None:
    rng = np.random.default_rng(7)
    people = walkers(hours, rng)
    window = TrackletWindow(600.0, 2000)
    reassociator = Reassociator(ReassociationSettings(), CameraLinks())
    live: dict[int, tuple[str, float, float, Walker]] = {}
    tracemalloc.start()
    print(f"## {hours:g} h of footage, fast-forwarded: {len(CAMERAS)} cameras, a person every {ARRIVAL_S:g} s, "
          f"{sum(len(p.stays) for p in people)} tracks in {hours:g} h, a pass every {PASS_EVERY_S:g} s")
    print("| footage minute | tracks so far | tracklets held | link pairs kept | tracks noted | one pass (ms) "
          "| Python heap (MB) |")
    print("|---|---|---|---|---|---|---|")
    started_tracks = 0
    steps = int(hours * 3600 / STEP_S)
    pending = sorted(((camera, start, end, person, track) for person in people
                      for (camera, start, end), track in zip(person.stays, person.track_ids, strict=True)),
                     key=lambda stay: stay[1])
    next_stay = 0
    for step in range(1, steps + 1):
        moment = step * STEP_S
        while next_stay < len(pending) and pending[next_stay][1] <= moment:
            camera, start, end, person, track = pending[next_stay]
            live[track] = (camera, start, end, person)
            next_stay += 1
            started_tracks += 1
        for track, (camera, start, end, person) in list(live.items()):
            across = (moment - start) / (end - start)  # walking left to right through the picture
            tracklet = window.saw((camera, track), TrackKey(camera, f"rtsp://{camera}", "rtsp", 0, track), camera,
                                  moment, (across, 0.8), track)
            if step % 5 == 0:  # a crop embedded every second
                crop = person.identity + rng.normal(scale=CROP_NOISE, size=DIM)
                tracklet.add_appearance((crop / np.linalg.norm(crop)).astype(np.float32))
            if moment >= end:
                window.end((camera, track))
                del live[track]
        if moment % PASS_EVERY_S < STEP_S / 2 or step == steps:
            reported = moment % REPORT_EVERY_S < STEP_S / 2 or step == steps
            began = time.perf_counter()
            reassociator.settle(window.snapshot(), 0.6)
            pass_ms = (time.perf_counter() - began) * 1000
            if reported:
                heap = tracemalloc.get_traced_memory()[0] / 1e6
                pairs, noted = reassociator.held()
                print(f"| {moment / 60:.0f} | {started_tracks} | {len(window)} | {pairs} | {noted} | {pass_ms:.0f} "
                      f"| {heap:.1f} |")
    reassociator.close()
    tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reid", default=str(SHARED / "models/osnet_x0_25_msmt17.onnx"),
                        help="an ONNX re-id model, or 'fallback' (colour descriptor)")
    parser.add_argument("--detector", type=Path, default=SHARED / "models/yolov8n_int8.onnx")
    parser.add_argument("--frames", type=int, default=400, help="frames of the clip per run")
    parser.add_argument("--hours", type=float, default=1.0, help="footage of the fast-forwarded run")
    args = parser.parse_args(argv)
    if not (SHARED / "data/vtest.avi").exists() or not args.detector.exists():
        print(f"needs {SHARED}/data/vtest.avi and {args.detector}", file=sys.stderr)
        return 2
    embedder: Embedder = ColorTextureEmbedder() if args.reid == "fallback" else OnnxEmbedder(Path(args.reid))
    with tempfile.TemporaryDirectory() as tmp:
        rate(embedder, args.detector, args.frames, Path(tmp))
    hour(args.hours)
    return 0


if __name__ == "__main__":
    sys.exit(main())
