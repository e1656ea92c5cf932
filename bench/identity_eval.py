"""Multi-camera identity accuracy, rerunnable: does a person keep one identity across cameras?

Two "cameras" are cut from ``../shared/data/vtest.avi``: its left part (x 0-352) and its right part
(x 416-768), with a 64-pixel strip between them that neither sees, so people walking across the campus
leave one camera and enter the other. The app runs on both (the real pipeline and a real SQLite store)
and its stored sightings are scored against ``bench/data/vtest_people.txt`` (every person in the full
frame with one id, see ``bench/data/README.md``):

- cross-camera IDF1 (``motmetrics``; one sequence holding both cameras, so an identity that changes at
  a hand-off costs what it costs),
- the share of correct hand-offs (a person's identity before and after crossing is the same one),
- identities per person and people per identity (one identity covering several people),
- automatic corrections the app made (where it records them).

Then ``../shared/data/reid/market_4ids`` (4 people over 6 real cameras): every crop is a one-crop track
matched in time order; identities per person and people per identity.

    python bench/identity_eval.py --reid fallback
    python bench/identity_eval.py --reid ../shared/models/osnet_x0_25_msmt17.onnx

``PYTHONPATH=<checkout of an older commit>`` runs the same evaluation on older code (the "before").
"""

from __future__ import annotations

import argparse
import collections
import itertools
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder
from reid_desktop.core.matching import IdentityMatcher, MatchRequest
from reid_desktop.core.pipeline import Pipeline
from reid_desktop.core.runner import run
from reid_desktop.core.sources import SourceSpec
from reid_desktop.core.storage import SightingStore

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEOPLE = Path(__file__).with_name("data") / "vtest_people.txt"
CAMERAS = {"left": (0, 352), "right": (416, 768)}  # x ranges of the full frame
MIN_VISIBLE = 0.6  # a person counts in a camera when this much of their box width is inside it
Box = tuple[float, float, float, float]  # x, y, w, h
Seen = dict[str, dict[int, list[tuple[int, Box]]]]  # camera -> frame index -> (person or identity, box)


def cut_cameras(video: Path, out_dir: Path, frames: int) -> dict[str, Path]:
    """Write each camera's part of the clip as its own file (lossless enough: MJPG at high quality)."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    paths = {name: out_dir / f"{name}.avi" for name in CAMERAS}
    writers = {name: cv2.VideoWriter(str(paths[name]), cv2.VideoWriter_fourcc(*"MJPG"), fps, (x2 - x1, height))
               for name, (x1, x2) in CAMERAS.items()}
    for writer in writers.values():
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for _ in range(frames):
        ok, image = capture.read()
        if not ok:
            break
        for name, (x1, x2) in CAMERAS.items():
            writers[name].write(np.ascontiguousarray(image[:, x1:x2]))
    for writer in writers.values():
        writer.release()
    return paths


def ground_truth(frames: int) -> Seen:
    """The people file, seen through each camera: boxes clipped and shifted; frame numbers from 0."""
    seen: Seen = {name: collections.defaultdict(list) for name in CAMERAS}
    for line in PEOPLE.read_text().splitlines():
        frame, person, x, y, w, h = line.split(",")
        index = int(frame) - 1
        if index >= frames:
            continue
        left, width = float(x), float(w)
        for name, (x1, x2) in CAMERAS.items():
            a, b = max(left, x1), min(left + width, x2)
            if b - a >= MIN_VISIBLE * width:
                seen[name][index].append((int(person), (a - x1, float(y), b - a, float(h))))
    return seen


def configure(config: PipelineConfig, section: str, **values: object) -> None:
    """Set the keys this version of the app has (older versions lack some)."""
    target = getattr(config, section)
    known = {f.name for f in fields(target)}
    for key, value in values.items():
        if key in known:
            setattr(target, key, value)


def run_app(paths: dict[str, Path], embedder: Embedder, detector: Path, db: Path, frames: int,
            threshold: float) -> tuple[Seen, Seen, Seen, float]:
    """The app on both cameras: what it showed live, what its store holds at the end, its per-camera tracks
    alone (every track its own person: what the cameras give without re-id), its final threshold."""
    config = PipelineConfig()
    configure(config, "detector", model=str(detector), imgsz=640)
    configure(config, "storage", sightings_per_second=0.0)
    configure(config, "matcher", threshold=threshold)  # every frame stored: scored like the live view
    live: Seen = {name: collections.defaultdict(list) for name in CAMERAS}
    tracks: Seen = {name: collections.defaultdict(list) for name in CAMERAS}
    with SightingStore(db) as store:
        pipeline = Pipeline(config, store, embedder=embedder)
        specs = [SourceSpec(str(path), name) for name, path in paths.items()]
        for event in run(specs, config, store, max_frames=frames, pipeline=pipeline):
            for person in getattr(event, "persons", ()):
                x1, y1, x2, y2 = (float(v) for v in person.box[:4])
                box = (x1, y1, x2 - x1, y2 - y1)
                tracks[event.source_id][event.frame_index].append((hash((event.source_id, person.track_id)), box))
                if person.identity_id is not None:
                    live[event.source_id][event.frame_index].append((person.identity_id, box))
    stored: Seen = {name: collections.defaultdict(list) for name in CAMERAS}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as read:  # the measurement reads the file as it is
        for name, frame, identity, x1, y1, x2, y2 in read.execute(
                "SELECT so.name, s.frame_index, s.identity_id, s.x1, s.y1, s.x2, s.y2 FROM sightings s "
                "JOIN sources so ON so.id = s.source_id WHERE s.identity_id IS NOT NULL"):
            stored[name][frame].append((identity, (x1, y1, x2 - x1, y2 - y1)))
    return live, stored, tracks, pipeline.matcher.threshold  # at the end: where calibration took it


def corrections(db: Path) -> int | None:
    """Automatic corrections the app recorded (None: this version does not record them)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as read:
        tables = {r[0] for r in read.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "identity_corrections" not in tables:
            return None
        return int(read.execute("SELECT COUNT(*) FROM identity_corrections WHERE actor = 'auto'").fetchone()[0])


def iou_distances(truth: list[Box], predicted: list[Box], min_iou: float = 0.5) -> np.ndarray:
    """1 - IoU of every pair, NaN below ``min_iou`` (motmetrics' own helper uses a call NumPy 2 removed)."""
    if not truth or not predicted:
        return np.empty((len(truth), len(predicted)))
    a, b = np.asarray(truth, float)[:, None, :], np.asarray(predicted, float)[None, :, :]
    w = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    iou = inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)
    return np.where(iou >= min_iou, 1.0 - iou, np.nan)


@dataclass
class Scores:
    idf1: float
    handoffs_correct: int
    handoffs: int
    identities_per_person: float
    people_per_identity: float


def score(truth: Seen, predicted: Seen) -> Scores:
    """IDF1 over both cameras as one sequence, and hand-offs from the matched boxes."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    matched: list[tuple[int, str, int, int]] = []  # (frame, camera, person, identity)
    for order, name in enumerate(CAMERAS):
        for frame in sorted(set(truth[name]) | set(predicted[name])):
            gt, pr = truth[name].get(frame, []), predicted[name].get(frame, [])
            distances = iou_distances([b for _, b in gt], [b for _, b in pr])
            frame_id = order * 100_000 + frame
            accumulator.update([p for p, _ in gt], [i for i, _ in pr], distances, frameid=frame_id)
            for event in accumulator.mot_events.loc[frame_id].itertuples():
                if event.Type in ("MATCH", "SWITCH"):
                    matched.append((frame, name, int(event.OId), int(event.HId)))
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1"], name="all")
    visits: dict[int, list[tuple[str, list[int]]]] = collections.defaultdict(list)  # person -> camera visits
    identities_of: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    people_of: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for _frame, name, person, identity in sorted(matched):
        if not visits[person] or visits[person][-1][0] != name:
            visits[person].append((name, []))
        visits[person][-1][1].append(identity)
        identities_of[person][identity] += 1
        people_of[identity][person] += 1
    handoffs = correct = 0
    for person_visits in visits.values():
        majority = [collections.Counter(ids).most_common(1)[0][0] for _, ids in person_visits]
        for before, after in itertools.pairwise(majority):
            handoffs += 1
            correct += before == after
    def counted(counts: dict[int, collections.Counter[int]]) -> float:  # ignore one-off mismatches (< 5 boxes)
        return float(np.mean([sum(1 for n in c.values() if n >= 5) or 1 for c in counts.values()]))
    return Scores(float(summary["idf1"].iloc[0]), correct, handoffs, counted(identities_of), counted(people_of))


def market(embedder: Embedder, threshold: float) -> tuple[float, float]:
    """market_4ids, every crop a track, in time order: (identities per person, people per identity)."""
    files = sorted((SHARED / "data/reid/market_4ids/gallery").glob("*.jpg"), key=lambda p: int(p.name.split("_")[2]))
    files = [p for p in files if not p.name.startswith(("0000", "-1"))]
    vectors = embedder.embed([cv2.imread(str(p)) for p in files])
    matcher = IdentityMatcher(threshold)
    given: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for path, vector in zip(files, vectors, strict=True):
        unit = (vector / np.linalg.norm(vector)).astype(np.float32)
        decision = matcher.assign([MatchRequest(path.name, unit)])[0]
        matcher.add(decision.identity_id, unit[None, :], np.ones(1, np.float32))
        given[int(path.name[:4])][decision.identity_id] += 1
    people: dict[int, set[int]] = collections.defaultdict(set)
    for person, counts in given.items():
        for identity in counts:
            people[identity].add(person)
    return (float(np.mean([len(c) for c in given.values()])), float(np.mean([len(p) for p in people.values()])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reid", default="fallback", help="'fallback' (colour descriptor) or an ONNX re-id model")
    parser.add_argument("--detector", type=Path, default=SHARED / "models/yolov8n_int8.onnx")
    parser.add_argument("--frames", type=int, default=795, help="frames of the clip (795: all of it)")
    parser.add_argument("--threshold", type=float, default=0.0, help="matcher threshold (0: the app's own)")
    parser.add_argument("--label", default="", help="what this run is (printed with the figures)")
    args = parser.parse_args(argv)
    if not (SHARED / "data/vtest.avi").exists() or not args.detector.exists():
        print(f"needs {SHARED}/data/vtest.avi and {args.detector}", file=sys.stderr)
        return 2
    embedder: Embedder = ColorTextureEmbedder() if args.reid == "fallback" else OnnxEmbedder(Path(args.reid))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = cut_cameras(SHARED / "data/vtest.avi", work, args.frames)
        started = time.perf_counter()
        live, stored, tracks, threshold = run_app(paths, embedder, args.detector, work / "eval.sqlite", args.frames,
                                           args.threshold)
        elapsed = time.perf_counter() - started
        truth = ground_truth(args.frames)
        fixed = corrections(work / "eval.sqlite")
        print(f"# {args.label or 'this checkout'}: re-id {embedder.name}, threshold {threshold:.2f}, "
              f"{args.frames} frames x 2 cameras in {elapsed:.0f} s")
        print("| view | cross-camera IDF1 | correct hand-offs | identities per person | people per identity |")
        print("|---|---|---|---|---|")
        for view, predicted in (("live", live), ("stored", stored), ("tracks alone (no re-id)", tracks)):
            s = score(truth, predicted)
            print(f"| {view} | {s.idf1:.3f} | {s.handoffs_correct}/{s.handoffs} | {s.identities_per_person:.2f} "
                  f"| {s.people_per_identity:.2f} |")
        print(f"automatic corrections: {'not recorded by this version' if fixed is None else fixed}")
        per_person, per_identity = market(embedder, embedder.match_threshold)
        print(f"market_4ids (threshold {embedder.match_threshold:.2f}): {per_person:.2f} identities per person, "
              f"{per_identity:.2f} people per identity")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
