"""Multi-camera identity accuracy, rerunnable: does a person keep one identity across cameras?

Two-camera *cuts* are made from ``../shared/data/vtest.avi`` (people walking across a campus), each camera its own
video file, and the app runs on them (the real pipeline and a real SQLite store):

- ``halves``: the left part (x 0-352) and the right part (x 416-768), a 64-pixel strip between them that neither
  sees, so people leave one camera and enter the other;
- ``overlap-colour``: x 0-448 and 320-768, 128 pixels seen by both (declared: ``left = right``), the second camera
  with another white balance and gamma, as two camera models differ;
- ``scaled``: x 0-384 and 448-768, the second camera at 0.7 of the resolution (a farther, smaller picture).

Its stored sightings are scored against ``bench/data/vtest_people.txt`` (every person in the full frame with one
id, see ``bench/data/README.md``) seen through each camera:

- cross-camera IDF1 (``motmetrics``; one sequence holding both cameras, so an identity that changes at a hand-off
  costs what it costs),
- correct hand-offs: a person's presence moves from one camera to the other and their identity before and after is
  the same one (with overlapping cameras: their first sighting in the camera they move into),
- identities per person and people per identity (one identity covering several people),
- automatic corrections the app made.

"tracks alone" scores the per-camera tracks with no re-identification at all (every track its own person): the
floor. ``--ablation`` runs every technique off in turn. Detections are computed once per cut and replayed in the
other runs of the same invocation (the figures are the identity stages', not the detector's).

Then the identity tests on the mini data sets: ``../shared/data/reid/market_4ids`` (every crop a one-crop track,
cameras as given) and ``mini_mars`` (every tracklet a track, its crops averaged): identities per person and people
per identity, in time order through the app's matcher.

    python bench/identity_eval.py --reid fallback
    python bench/identity_eval.py --reid ../shared/models/osnet_x0_25_msmt17.onnx --ablation

``PYTHONPATH=<checkout of an older commit>`` runs the same evaluation on older code (the "before").
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import run
from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import Detections
from reid_desktop.core.vision.detection import Detector
from reid_desktop.core.vision.detector_runtimes import make_detector
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEOPLE = Path(__file__).with_name("data") / "vtest_people.txt"
MIN_VISIBLE = 0.6  # a person counts in a camera when this much of their box width is inside it
SEGMENT_GAP = 10  # frames without a sighting that end a person's stay in a camera
Box = tuple[float, float, float, float]  # x, y, w, h
Seen = dict[str, dict[int, list[tuple[int, Box]]]]  # camera -> frame index -> (person or identity, box)


@dataclass(frozen=True)
class Look:
    """How a camera sees its part of the frame: scale, white balance (B, G, R gains) and gamma."""

    scale: float = 1.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.scale != 1.0:
            image = cv2.resize(image, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        if self.gains == (1.0, 1.0, 1.0) and self.gamma == 1.0:
            return np.ascontiguousarray(image)
        shifted = np.clip(image.astype(np.float32) / 255.0 * np.asarray(self.gains, np.float32), 0, 1) ** self.gamma
        return np.ascontiguousarray((shifted * 255).astype(np.uint8))


@dataclass(frozen=True)
class Cut:
    name: str
    cameras: dict[str, tuple[int, int]]  # x ranges of the full frame
    looks: dict[str, Look] = field(default_factory=dict)
    topology: str = ""  # what the operator would declare (matcher.camera_links)

    def look(self, camera: str) -> Look:
        return self.looks.get(camera, Look())


CUTS = {cut.name: cut for cut in (
    Cut("halves", {"left": (0, 352), "right": (416, 768)}),
    Cut("overlap-colour", {"left": (0, 448), "right": (320, 768)},
        {"right": Look(gains=(1.15, 1.0, 0.8), gamma=0.8)}, "left = right"),
    Cut("scaled", {"left": (0, 384), "right": (448, 768)}, {"right": Look(scale=0.7)}),
)}


def cut_cameras(video: Path, out_dir: Path, frames: int, cut: Cut) -> dict[str, Path]:
    """Write each camera's part of the clip as its own file (lossless enough: MJPG at high quality)."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    paths = {name: out_dir / f"{cut.name}-{name}.avi" for name in cut.cameras}
    writers: dict[str, cv2.VideoWriter] = {}
    for _ in range(frames):
        ok, image = capture.read()
        if not ok:
            break
        for name, (x1, x2) in cut.cameras.items():
            picture = cut.look(name).apply(image[:, x1:x2])
            if name not in writers:
                writers[name] = cv2.VideoWriter(str(paths[name]), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                                (picture.shape[1], picture.shape[0]))
                writers[name].set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
            writers[name].write(picture)
    for writer in writers.values():
        writer.release()
    return paths


def ground_truth(cut: Cut, frames: int) -> Seen:
    """The people file, seen through each camera: boxes clipped, shifted and scaled; frame numbers from 0."""
    seen: Seen = {name: collections.defaultdict(list) for name in cut.cameras}
    for line in PEOPLE.read_text().splitlines():
        frame, person, x, y, w, h = line.split(",")
        index = int(frame) - 1
        if index >= frames:
            continue
        left, width = float(x), float(w)
        for name, (x1, x2) in cut.cameras.items():
            a, b = max(left, x1), min(left + width, x2)
            if b - a >= MIN_VISIBLE * width:
                s = cut.look(name).scale
                seen[name][index].append((int(person), ((a - x1) * s, float(y) * s, (b - a) * s, float(h) * s)))
    return seen


class ReplayDetector:
    """The real detector, asked once per picture: later runs on the same pictures replay its answers, so a
    comparison of identity settings is not a comparison of detector runs."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.name = getattr(detector, "name", "detector")
        self._known: dict[bytes, Detections] = {}

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        keys = [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self._known]
        if missing:
            for i, found in zip(missing, self.detector.detect([images[i] for i in missing]), strict=True):
                self._known[keys[i]] = found
        return [self._known[key] for key in keys]


def configure(config: PipelineConfig, section: str, **values: object) -> None:
    """Set the keys this version of the app has (older versions lack some)."""
    target = getattr(config, section)
    known = {f.name for f in fields(target)}
    for key, value in values.items():
        if key in known:
            setattr(target, key, value)


@dataclass
class AppRun:
    live: Seen
    stored: Seen
    tracks: Seen
    threshold: float
    seconds: float
    frames: int
    corrections: int | None


def run_app(cut: Cut, paths: dict[str, Path], embedder: Embedder, detector: Detector, db: Path, frames: int,
            settings: dict[str, dict[str, Any]]) -> AppRun:
    """The app on the cut's cameras: what it showed live, what its store holds at the end, its per-camera tracks
    alone (every track its own person: what the cameras give without re-id)."""
    config = PipelineConfig()
    configure(config, "detector", imgsz=640)
    configure(config, "storage", sightings_per_second=0.0)  # every frame stored: scored like the live view
    configure(config, "matcher", camera_links=cut.topology)
    for section, values in settings.items():
        configure(config, section, **values)
    live: Seen = {name: collections.defaultdict(list) for name in cut.cameras}
    tracks: Seen = {name: collections.defaultdict(list) for name in cut.cameras}
    started = time.perf_counter()
    with SightingStore(db) as store:
        pipeline = Pipeline(config, store, detector=detector, embedder=embedder)
        specs = [SourceSpec(str(path), name) for name, path in paths.items()]
        for event in run(specs, config, store, max_frames=frames, pipeline=pipeline):
            for person in getattr(event, "persons", ()):
                x1, y1, x2, y2 = (float(v) for v in person.box[:4])
                box = (x1, y1, x2 - x1, y2 - y1)
                tracks[event.source_id][event.frame_index].append((hash((event.source_id, person.track_id)), box))
                if person.identity_id is not None:
                    live[event.source_id][event.frame_index].append((person.identity_id, box))
    seconds = time.perf_counter() - started
    stored: Seen = {name: collections.defaultdict(list) for name in cut.cameras}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as read:  # the measurement reads the file as it is
        for name, frame, identity, x1, y1, x2, y2 in read.execute(
                "SELECT so.name, s.frame_index, s.identity_id, s.x1, s.y1, s.x2, s.y2 FROM sightings s "
                "JOIN sources so ON so.id = s.source_id WHERE s.identity_id IS NOT NULL"):
            stored[name][frame].append((identity, (x1, y1, x2 - x1, y2 - y1)))
    analysed = sum(len(frames_seen) for frames_seen in tracks.values())
    return AppRun(live, stored, tracks, pipeline.matcher.threshold, seconds, analysed, corrections(db))


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


def stays(matched: list[tuple[int, str, int, int]]) -> dict[int, list[tuple[int, str, list[int]]]]:
    """Per person, their stays in a camera (first frame, camera, identities given), in the order they began: a stay
    ends when the camera has not shown them for ``SEGMENT_GAP`` frames."""
    frames: dict[tuple[int, str], list[tuple[int, int]]] = collections.defaultdict(list)
    for frame, camera, person, identity in sorted(matched):
        frames[(person, camera)].append((frame, identity))
    out: dict[int, list[tuple[int, str, list[int]]]] = collections.defaultdict(list)
    for (person, camera), seen in frames.items():
        previous = None
        for frame, identity in seen:
            if previous is None or frame - previous > SEGMENT_GAP:
                out[person].append((frame, camera, []))
            out[person][-1][2].append(identity)
            previous = frame
    for person_stays in out.values():
        person_stays.sort(key=lambda stay: stay[0])
    return out


def score(truth: Seen, predicted: Seen) -> Scores:
    """IDF1 over all cameras as one sequence, and hand-offs from the matched boxes."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    matched: list[tuple[int, str, int, int]] = []  # (frame, camera, person, identity)
    for order, name in enumerate(truth):
        for frame in sorted(set(truth[name]) | set(predicted[name])):
            gt, pr = truth[name].get(frame, []), predicted[name].get(frame, [])
            distances = iou_distances([b for _, b in gt], [b for _, b in pr])
            frame_id = order * 100_000 + frame
            accumulator.update([p for p, _ in gt], [i for i, _ in pr], distances, frameid=frame_id)
            for event in accumulator.mot_events.loc[frame_id].itertuples():
                if event.Type in ("MATCH", "SWITCH"):
                    matched.append((frame, name, int(event.OId), int(event.HId)))
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1"], name="all")
    identities_of: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    people_of: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for _frame, _name, person, identity in matched:
        identities_of[person][identity] += 1
        people_of[identity][person] += 1
    handoffs = correct = 0
    for person_stays in stays(matched).values():
        for before, after in itertools.pairwise(person_stays):
            if before[1] != after[1]:  # into another camera
                handoffs += 1
                majority = [collections.Counter(ids).most_common(1)[0][0] for ids in (before[2], after[2])]
                correct += majority[0] == majority[1]
    def counted(counts: dict[int, collections.Counter[int]]) -> float:  # ignore one-off mismatches (< 5 boxes)
        return float(np.mean([sum(1 for n in c.values() if n >= 5) or 1 for c in counts.values()]))
    return Scores(float(summary["idf1"].iloc[0]), correct, handoffs, counted(identities_of), counted(people_of))


# -- the mini data sets: identities through the matcher, in time order ------------------------------------

def _matched_in_order(vectors: np.ndarray, people: list[int], threshold: float) -> tuple[float, float]:
    matcher = IdentityMatcher(threshold)
    given: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for n, (person, vector) in enumerate(zip(people, vectors, strict=True)):
        unit = (vector / np.linalg.norm(vector)).astype(np.float32)
        decision = matcher.assign([MatchRequest(n, unit)])[0]
        matcher.add(decision.identity_id, unit[None, :], np.ones(1, np.float32))
        given[person][decision.identity_id] += 1
    holders: dict[int, set[int]] = collections.defaultdict(set)
    for person, counts in given.items():
        for identity in counts:
            holders[identity].add(person)
    return float(np.mean([len(c) for c in given.values()])), float(np.mean([len(p) for p in holders.values()]))


def centred(vectors: np.ndarray, cameras: list[str]) -> np.ndarray:
    """Each camera's mean taken out (the app's camera normalisation, settled)."""
    out = np.array(vectors, np.float32)
    for camera in set(cameras):
        rows = [i for i, c in enumerate(cameras) if c == camera]
        out[rows] -= out[rows].mean(axis=0)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def market(embedder: Embedder, threshold: float, normalise: bool) -> tuple[float, float]:
    """market_4ids, every crop a track, in time order: (identities per person, people per identity)."""
    files = sorted((SHARED / "data/reid/market_4ids/gallery").glob("*.jpg"), key=lambda p: int(p.name.split("_")[2]))
    files = [p for p in files if not p.name.startswith(("0000", "-1"))]
    vectors = embedder.embed([cv2.imread(str(p)) for p in files])
    if normalise:
        vectors = centred(vectors, [p.name.split("_")[1][:2] for p in files])
    return _matched_in_order(vectors, [int(p.name[:4]) for p in files], threshold)


def mini_mars(embedder: Embedder, threshold: float, normalise: bool) -> tuple[float, float]:
    """mini_mars test split, every tracklet a track (the mean of its crops), in time order of its frames."""
    tracklets: dict[tuple[int, str, str], list[Path]] = collections.defaultdict(list)
    for path in sorted((SHARED / "data/reid/mini_mars/bbox_test").glob("*/*.jpg")):
        name = path.name  # PPPPCcTttttFfff.jpg
        tracklets[(int(name[:4]), name[4:6], name[6:11])].append(path)
    keys = sorted(tracklets, key=lambda k: (k[2], k[1], k[0]))
    vectors = []
    for key in keys:
        crops = [cv2.imread(str(p)) for p in tracklets[key][::4]]
        mean = embedder.embed(crops).mean(axis=0)
        vectors.append(mean / np.linalg.norm(mean))
    stacked = np.stack(vectors)
    if normalise:
        stacked = centred(stacked, [k[1] for k in keys])
    return _matched_in_order(stacked, [k[0] for k in keys], threshold)


# -- search: mAP of the ranking, plain and re-ranked ---------------------------------------------------------

CANDIDATES = 100  # what the app's search takes from the vector index before re-ranking


@dataclass
class Crops:
    vectors: np.ndarray
    people: np.ndarray
    cameras: np.ndarray


def market_crops(embedder: Embedder) -> tuple[Crops, Crops]:
    """market_4ids' query and gallery crops (distractors and junk as the Market-1501 protocol has them)."""
    def load(folder: str) -> Crops:
        files = sorted((SHARED / "data/reid/market_4ids" / folder).glob("*.jpg"))
        files = [p for p in files if not p.name.startswith(("0000", "-1"))]
        vectors = embedder.embed([cv2.imread(str(p)) for p in files])
        return Crops(vectors, np.array([int(p.name[:4]) for p in files]),
                     np.array([p.name.split("_")[1][:2] for p in files]))
    return load("query"), load("gallery")


def mars_crops(embedder: Embedder) -> tuple[Crops, Crops]:
    """mini_mars test split: a query crop from the middle of every tracklet; every 4th crop of every tracklet."""
    tracklets: dict[tuple[int, str, str], list[Path]] = collections.defaultdict(list)
    for path in sorted((SHARED / "data/reid/mini_mars/bbox_test").glob("*/*.jpg")):
        tracklets[(int(path.name[:4]), path.name[4:6], path.name[6:11])].append(path)
    def crops(pick: dict[tuple[int, str, str], list[Path]]) -> Crops:
        keys = [k for k, paths in pick.items() for _ in paths]
        paths = [p for ps in pick.values() for p in ps]
        return Crops(embedder.embed([cv2.imread(str(p)) for p in paths]), np.array([k[0] for k in keys]),
                     np.array([k[1] for k in keys]))
    return (crops({k: [v[len(v) // 2]] for k, v in tracklets.items()}),
            crops({k: v[::4] for k, v in tracklets.items()}))


def search_map(query: Crops, gallery: Crops, method: str) -> float:
    """mAP of the gallery's ranking for each query (same person and camera: junk, left out), the top
    ``CANDIDATES`` ordered by ``method`` as the app's search does."""
    from reid_desktop.core.identity.reranking import expanded_query, rerank

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)
    q_all, g_all = unit(query.vectors), unit(gallery.vectors)
    scores = []
    for vector, person, camera in zip(q_all, query.people, query.cameras, strict=True):
        keep = ~((gallery.people == person) & (gallery.cameras == camera))
        g, relevant = g_all[keep], gallery.people[keep] == person
        if not relevant.any():
            continue
        order = np.argsort(-(g @ vector))
        top = order[:CANDIDATES]
        if method in ("expanded", "expanded + k-reciprocal"):
            vector = expanded_query(vector, g[top])
            top = top[np.argsort(-(g[top] @ vector))]
        if method in ("k-reciprocal", "expanded + k-reciprocal"):
            top = top[np.argsort(rerank(vector, g[top]), kind="stable")]
        ranked = relevant[np.concatenate([top, order[CANDIDATES:]])]
        hits = np.flatnonzero(ranked)
        scores.append(float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))))
    return float(np.mean(scores))


# -- the runs ------------------------------------------------------------------------------------------

OFF = {
    "camera normalisation": {"matcher": {"camera_normalisation": False}},
    "mean of all crops": {"reid": {"track_descriptor": "best"}},
    "occlusion-aware quality": {"reid": {"occlusion_aware": False}},
    "background re-association": {"matcher": {"reassociation": False}},
    "learned links as prior": {"matcher": {"link_prior": 0.0}},
    "look checked where a track is taken up": {"tracker": {"relink_similarity": 0.0}},
    "places in overlapping cameras": {"matcher": {"place_links": False}},
}


def merged(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for part in parts:
        for section, values in part.items():
            out[section].update(values)
    return dict(out)


def evaluate_cut(cut: Cut, embedder: Embedder, detector: Detector, frames: int, ablation: bool, work: Path) -> None:
    paths = cut_cameras(SHARED / "data/vtest.avi", work, frames, cut)
    truth = ground_truth(cut, frames)
    runs = [("defaults", {})]
    if ablation:
        runs += [(f"without {name}", settings) for name, settings in OFF.items()]
        runs.append(("none of them (before this work)", merged(*OFF.values())))
    print(f"\n## cut {cut.name}: re-id {embedder.name}, {frames} frames x {len(cut.cameras)} cameras"
          f"{', topology ' + repr(cut.topology) if cut.topology else ''}")
    print("| run | view | cross-camera IDF1 | correct hand-offs | identities per person | people per identity "
          "| automatic corrections | threshold | frames/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    floor = None
    for n, (label, settings) in enumerate(runs):
        app = run_app(cut, paths, embedder, detector, work / f"{cut.name}-{n}.sqlite", frames, settings)
        views = [("stored", app.stored)] + ([("live", app.live)] if n == 0 else [])
        for view, predicted in views:
            s = score(truth, predicted)
            print(f"| {label} | {view} | {s.idf1:.3f} | {s.handoffs_correct}/{s.handoffs} | "
                  f"{s.identities_per_person:.2f} | {s.people_per_identity:.2f} | {app.corrections} | "
                  f"{app.threshold:.2f} | {app.frames / app.seconds:.1f} |")
        floor = floor or app.tracks
    assert floor is not None
    s = score(truth, floor)
    print(f"| per-camera tracks alone (no re-id) | - | {s.idf1:.3f} | {s.handoffs_correct}/{s.handoffs} | "
          f"{s.identities_per_person:.2f} | {s.people_per_identity:.2f} | - | - | - |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reid", default="fallback", help="'fallback' (colour descriptor) or an ONNX re-id model")
    parser.add_argument("--detector", type=Path, default=SHARED / "models/yolov8n_int8.onnx")
    parser.add_argument("--frames", type=int, default=795, help="frames of the clip (795: all of it)")
    parser.add_argument("--cuts", default=",".join(CUTS), help=f"which cuts ({', '.join(CUTS)})")
    parser.add_argument("--ablation", action="store_true", help="also run with each technique off in turn")
    parser.add_argument("--label", default="", help="what this run is (printed with the figures)")
    args = parser.parse_args(argv)
    if not (SHARED / "data/vtest.avi").exists() or not args.detector.exists():
        print(f"needs {SHARED}/data/vtest.avi and {args.detector}", file=sys.stderr)
        return 2
    unknown = set(args.cuts.split(",")) - set(CUTS)
    if unknown:
        print(f"unknown cut {', '.join(sorted(unknown))}; cuts: {', '.join(CUTS)}", file=sys.stderr)
        return 2
    embedder: Embedder = ColorTextureEmbedder() if args.reid == "fallback" else OnnxEmbedder(Path(args.reid))
    config = PipelineConfig()
    configure(config, "detector", model=str(args.detector), imgsz=640)
    detector = ReplayDetector(make_detector(config.detector))
    print(f"# {args.label or 'this checkout'}: re-id {embedder.name}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cuts.split(","):
            evaluate_cut(CUTS[name], embedder, detector, args.frames, args.ablation, Path(tmp))
    print("\n## search on the mini data sets: mAP (top 100 candidates re-ordered, as the app's search)")
    methods = ("cosine", "expanded", "k-reciprocal", "expanded + k-reciprocal")
    print("| data set | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name, crops in (("market_4ids", market_crops), ("mini_mars", mars_crops)):
        query, gallery = crops(embedder)
        print(f"| {name} | " + " | ".join(f"{search_map(query, gallery, m):.3f}" for m in methods) + " |")
    print("\n## mini data sets (model threshold "
          f"{embedder.match_threshold:.2f}): identities per person / people per identity")
    print("| data set | as embedded | each camera's mean taken out |")
    print("|---|---|---|")
    for name, test in (("market_4ids (crops)", market), ("mini_mars (tracklets)", mini_mars)):
        plain, normal = (test(embedder, embedder.match_threshold, flag) for flag in (False, True))
        print(f"| {name} | {plain[0]:.2f} / {plain[1]:.2f} | {normal[0]:.2f} / {normal[1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
