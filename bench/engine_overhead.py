"""Engine overhead: frames/s of the engine with a detector and re-id that cost nothing, against decoding alone.

    python bench/engine_overhead.py [--streams 1,4,16] [--frames 200] [--imgsz 1280] [--dim 2048]

Figures only, no asserts. A stub detector (six fixed people, found after the real letterbox and batch that an
exported detector makes on the CPU) and a stub re-id model (fixed unit vectors) are injected into the app's own
engine: ``runner.run`` with file sources read as fast as analysis goes, ByteTrack, the identity matcher,
re-association and a real SQLite store in a temporary folder, as ``reid-desktop process`` runs them. What is
left is the engine's own cost. The baseline, in the same run, decodes the same streams with nothing else:
N ``ffmpeg`` processes (frames as decoded, and converted to BGR as the app receives them), the app's OpenCV
capture in N threads, the app's readers (``VideoSource``) drained, and PyAV when it is installed.

The clip is made at start from ../shared/data/vtest.avi (else the bundled demo clip): scaled to 1920x1080 and
encoded as an IP camera sends it (H.264 main, 25 fps, 4 Mb/s, a key frame every 2 s, no B-frames); the N
streams open the same file. ``ffmpeg`` must be on PATH.

Stage times are wall-clock and the stage's own thread's processor time, exclusive (a nested stage is not counted in
its caller), from spans wrapped around the engine's methods, over the steady part of a run (first result to last):
wall well above processor time means the stage waited for a core or the GIL.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from unittest import mock

import cv2
import numpy as np

from reid_desktop.app import one_blas_thread
from reid_desktop.core.capture import sources
from reid_desktop.core.capture.sources import SourceSpec, VideoSource, open_capture
from reid_desktop.core.config import PipelineConfig, load
from reid_desktop.core.engine import runner
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.store.history import open_store
from reid_desktop.core.types import Detections, FrameResult, PreparedPicture
from reid_desktop.core.vision.letterbox import letterbox_batches, letterbox_bytes
from reid_desktop.core.vision.tracking import UltralyticsTracker

P = ParamSpec("P")
R = TypeVar("R")

ROOT = Path(__file__).resolve().parents[1]
SOURCE_CLIPS = (ROOT.parent / "shared" / "data" / "vtest.avi", ROOT / "assets" / "demo" / "vtest_excerpt.mp4")
WIDTH, HEIGHT, FPS = 1920, 1080, 25

# six standing people of different heights (so the stub re-id tells them apart by crop height): x1 y1 x2 y2 conf cls
PEOPLE_HEIGHTS = np.array([200 + 60 * i for i in range(6)], np.float32)
PEOPLE = np.array([[80 + 300 * i, 200, 80 + 300 * i + 0.4 * h, 200 + h, 0.9, 0] for i, h in enumerate(PEOPLE_HEIGHTS)],
                  np.float32)

# stages, in the order of the table; the thread each runs on
DECODE = "decode (OpenCV read)"
PREPARE = "letterbox beside decoding (prepared input)"
LETTERBOX = "letterbox + batch (detector pre-processing)"
TRACKER = "tracker (ByteTrack)"
CROPS = "crops, quality, embedding bookkeeping"
MATCHER = "matcher (assign, galleries, calibration)"
TRACKLETS = "re-association bookkeeping (tracklets)"
LINKING = "linking: track state, persons, results"
PERSIST = "persistence: sightings (writer, store queue)"
PIPELINE = "pipeline, other (gate, stale tracks, loop)"
TAKE = "runner: taking frames from the readers"
HAND_OVER = "result delivery: runner loop, yields"
CONSUMER = "result delivery: consumer (counts results)"
IDLE = "idle: waiting for decoded frames"
COMMIT = "persistence: commits"
LOOKUP = "matcher: index look-ups"
REASSOCIATE = "re-association passes"
STAGES = ((DECODE, "readers"), (PREPARE, "readers"), (LETTERBOX, "engine"), (TRACKER, "engine"), (CROPS, "engine"),
          (MATCHER, "engine"), (TRACKLETS, "engine"), (LINKING, "engine"), (PERSIST, "engine"), (PIPELINE, "engine"),
          (TAKE, "engine"), (HAND_OVER, "engine"), (CONSUMER, "engine"), (IDLE, "engine"), (COMMIT, "store"),
          (LOOKUP, "look-up"), (REASSOCIATE, "re-assoc."))
ENGINE_BUSY = [name for name, thread in STAGES if thread == "engine" and name != IDLE]


class Stages:
    """Exclusive wall and thread processor time per stage, from spans on any thread: a span's nested spans are
    taken out of it, so the stages of one thread add up to that thread's time. Processor time is the calling
    thread's: work a stage hands to other threads (OpenCV's and FFmpeg's pools) is not in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.cpu: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.cpu.clear()
            self.calls.clear()

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], int]:
        """Wall seconds and processor seconds per stage, and the spans counted."""
        with self._lock:
            return dict(self.seconds), dict(self.cpu), sum(self.calls.values())

    @contextmanager
    def span(self, stage: str) -> Iterator[None]:
        stack: list[list[float]] = self._local.__dict__.setdefault("stack", [])
        stack.append([0.0, 0.0])  # wall and processor time of the spans nested in this one
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            elapsed, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
            nested = stack.pop()
            if stack:
                stack[-1][0] += elapsed
                stack[-1][1] += cpu
            with self._lock:
                self.seconds[stage] += elapsed - nested[0]
                self.cpu[stage] += cpu - nested[1]
                self.calls[stage] += 1

    def wrap(self, stage: str, fn: Callable[P, R]) -> Callable[P, R]:
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.span(stage):
                return fn(*args, **kwargs)

        return timed


def span_cost(stages: Stages, spans: int = 20000) -> float:
    """Seconds one span adds to what it measures (the bench's own share of the figures)."""
    start = time.perf_counter()
    for _ in range(spans):
        with stages.span("calibration"):
            pass
    stages.reset()
    return (time.perf_counter() - start) / spans


@dataclass
class StubDetector:
    """Six standing people in every picture, found after the letterbox (and the 8-bit batch that travels to a
    GPU) an exported detector makes on the CPU: what detection costs the engine besides the model. This one
    letterboxes on the engine thread, as the app did before its readers prepared the pictures."""

    imgsz: int
    stages: Stages
    name: str = "stub detector (letterbox, fixed boxes)"
    device: str = "none"
    has_keypoints: bool = False
    uploaded_bytes: int = 0

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.detect_sized(images, [self.imgsz] * len(images))

    def detect_sized(self, images: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Detections]:
        return self._found(images, sizes, ())

    def _found(self, images: Sequence[np.ndarray], sizes: Sequence[int],
               prepared: Sequence[PreparedPicture | None]) -> list[Detections]:
        with self.stages.span(LETTERBOX):
            for _, batch in letterbox_batches(images, sizes, prepared):  # as ExportedDetector does
                self.uploaded_bytes += batch.nbytes
        return [Detections(PEOPLE * np.array([image.shape[1] / WIDTH, image.shape[0] / HEIGHT] * 2 + [1, 1],
                                             np.float32), None) for image in images]


@dataclass
class PreparingStubDetector(StubDetector):
    """The stub with an exported detector's route of today: each reader letterboxes its pictures beside decoding
    (``ExportedDetector.prepare``), the engine thread takes them as they are."""

    def prepare(self, image: np.ndarray) -> PreparedPicture:
        with self.stages.span(PREPARE):
            return PreparedPicture(self.imgsz, letterbox_bytes(image, self.imgsz))

    def detect_prepared(self, images: Sequence[np.ndarray],
                        prepared: Sequence[PreparedPicture | None]) -> list[Detections]:
        return self._found(images, [self.imgsz] * len(images), prepared)


@dataclass
class StubEmbedder:
    """One fixed unit vector per stub person (told apart by crop height): matching and storage get real work,
    the model costs nothing."""

    dim: int
    name: str = "stub re-id (fixed vectors)"
    provider: str = "none"
    precision: str = "fp32"
    is_fallback: bool = False
    match_threshold: float = 0.6
    key: str = field(init=False)
    vectors: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = f"engine-overhead-stub-{self.dim}"
        vectors = np.random.default_rng(0).standard_normal((len(PEOPLE), self.dim)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        heights = np.array([crop.shape[0] for crop in crops], np.float32).reshape(-1, 1)
        return self.vectors[np.abs(heights - PEOPLE_HEIGHTS).argmin(axis=1)]


class _TimedCapture:
    """A ``cv2.VideoCapture`` whose ``read`` (decode and conversion to BGR) is a span."""

    def __init__(self, capture: cv2.VideoCapture, stages: Stages) -> None:
        self._capture = capture
        self._stages = stages

    def read(self) -> tuple[bool, Any]:
        with self._stages.span(DECODE):
            return self._capture.read()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._capture, name)


class _TimedEvent(threading.Event):
    """The run loop's wake-up: the time it sleeps on it is the engine waiting for frames (or commands)."""

    def __init__(self, stages: Stages) -> None:
        super().__init__()
        self._stages = stages

    def wait(self, timeout: float | None = None) -> bool:
        with self._stages.span(IDLE):
            return super().wait(timeout)


@dataclass(frozen=True)
class Rate:
    frames: int
    seconds: float
    cpu_s: float  # processor time of every thread (and child process) that took part

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.frames


@dataclass(frozen=True)
class EngineRun:
    rate: Rate  # the steady part: first result to last
    whole_fps: float  # opening the sources and closing the run included
    stages: dict[str, float]  # wall seconds per stage over the steady part
    stage_cpu: dict[str, float]  # the same in processor seconds of the stage's own thread
    spans: int
    identities: int
    sightings: int
    uploaded_mb_per_frame: float


def make_clip(folder: Path, frames: int) -> Path:
    """``frames`` pictures of the source clip (looped when short), scaled to 1080p and encoded like an IP camera."""
    source = next(path for path in SOURCE_CLIPS if path.exists())
    clip = folder / "clip_1080p.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-r", str(FPS),
                    "-i", str(source), "-frames:v", str(frames), "-vf", f"scale={WIDTH}:{HEIGHT}:flags=bicubic",
                    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", str(2 * FPS),
                    "-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M", "-pix_fmt", "yuv420p", "-an", str(clip)],
                   check=True)
    return clip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_alone(clip: Path, streams: int, frames: int, bgr: bool) -> Rate:
    """N ``ffmpeg`` processes decoding the clip to nothing (its own threading), optionally converting to BGR."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-i", str(clip),
               *(["-pix_fmt", "bgr24"] if bgr else []), "-f", "null", "-"]
    cpu, start = _children_cpu(), time.perf_counter()
    processes = [subprocess.Popen(command) for _ in range(streams)]
    if any(process.wait() for process in processes):
        raise RuntimeError(f"ffmpeg failed: {' '.join(command)}")
    return Rate(streams * frames, time.perf_counter() - start, _children_cpu() - cpu)


def _in_threads(work: Callable[[], int], streams: int) -> Rate:
    """``work`` (which returns the frames it decoded) in N threads at once."""
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(work())) for _ in range(streams)]
    cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Rate(sum(counts), time.perf_counter() - start, time.process_time() - cpu)


def opencv_alone(clip: Path, streams: int) -> Rate:
    """The app's decoder (``open_capture``: OpenCV's FFmpeg backend, BGR out) in N threads, nothing else."""
    def decode() -> int:
        capture, frames = open_capture(str(clip)), 0
        while capture.read()[0]:
            frames += 1
        capture.release()
        return frames

    return _in_threads(decode, streams)


def pyav_alone(clip: Path, streams: int) -> Rate | None:
    """PyAV (FFmpeg's own threading, BGR out) in N threads; None when PyAV is not installed."""
    try:
        import av  # optional: the candidate replacement decoder, not a dependency of the app
    except ImportError:
        return None

    def decode() -> int:
        frames = 0
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frame.to_ndarray(format="bgr24")
                frames += 1
        return frames

    return _in_threads(decode, streams)


def readers_alone(clip: Path, streams: int) -> Rate:
    """The app's readers (``VideoSource``: decode, region and size check, bounded queue) drained as fast as they
    fill, with no pipeline."""
    wakeup = threading.Event()
    readers = [VideoSource(SourceSpec(str(clip), f"cam{i}"), wakeup=wakeup) for i in range(streams)]
    frames = 0
    cpu, start = time.process_time(), time.perf_counter()
    for reader in readers:
        reader.start()
    while not all(reader.exhausted for reader in readers):
        wakeup.clear()
        taken = [reader.get() for reader in readers]
        frames += sum(frame is not None for frame in taken)
        if not any(taken):
            wakeup.wait(0.05)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    for reader in readers:
        reader.stop()
    return Rate(frames, seconds, cpu_s)


def _wrap_methods(patches: ExitStack, owner: object, stages: Stages, methods: dict[str, str]) -> list[str]:
    """Wrap ``owner``'s methods in spans for as long as ``patches`` is open; the names it lacks (the engine moved
    on since this bench was written) are returned, to be said."""
    missing = []
    for method, stage in methods.items():
        if hasattr(owner, method):
            patches.enter_context(mock.patch.object(owner, method, stages.wrap(stage, getattr(owner, method))))
        else:
            missing.append(f"{type(owner).__name__}.{method}")
    return missing


def _instrument(patches: ExitStack, pipeline: Pipeline, stages: Stages) -> list[str]:
    store = pipeline.store
    assert pipeline.writer is not None and store is not None
    missing = _wrap_methods(patches, pipeline, stages, {
        "process": PIPELINE, "_link_and_store": LINKING, "_follow_tracklet": TRACKLETS, "_regroup": TRACKLETS})
    missing += _wrap_methods(patches, pipeline.tracking, stages, {"step": TRACKER})
    missing += _wrap_methods(patches, pipeline.linking, stages, {"_calibrate": MATCHER, "_decide": MATCHER})
    missing += _wrap_methods(patches, pipeline.regrouping, stages, {"step": TRACKLETS})
    missing += _wrap_methods(patches, pipeline.embedding, stages, {"embed": CROPS})
    missing += _wrap_methods(patches, pipeline.matcher, stages, {
        "assign": MATCHER, "add": MATCHER, "seen": MATCHER, "withdraw": MATCHER})
    missing += _wrap_methods(patches, pipeline.writer, stages, {
        "write": PERSIST, "after_frames": PERSIST, "track_ended": PERSIST, "correct": PERSIST})
    missing += _wrap_methods(patches, store, stages, {"flush": COMMIT})  # run in the store's commit thread
    if pipeline.matcher.directory is not None:
        missing += _wrap_methods(patches, pipeline.matcher.directory, stages, {"nearest": LOOKUP})
    if pipeline.regrouping.reassociator is not None:
        missing += _wrap_methods(patches, pipeline.regrouping.reassociator, stages, {"_pass": REASSOCIATE})
    missing += _wrap_methods(patches, runner._Session, stages, {"next_frames": TAKE})
    original_open = sources.open_capture
    patches.enter_context(mock.patch.object(
        sources, "open_capture", lambda uri, *args: _TimedCapture(original_open(uri, *args), stages)))
    return missing


def engine(clip: Path, streams: int, frames: int, cfg: PipelineConfig, dim: int, folder: Path,
           prepared_by_readers: bool) -> EngineRun:
    """The app's engine on N file sources with the stubs, a real SQLite store, every stage timed."""
    stages = Stages()
    store = open_store(str(folder / f"engine-{streams}-{prepared_by_readers}.sqlite"), cfg.storage.commit_interval_s,
                       embeddings_per_track=cfg.storage.embeddings_per_track)
    detector = (PreparingStubDetector if prepared_by_readers else StubDetector)(cfg.detector.imgsz, stages)
    try:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=StubEmbedder(dim))
        control = PipelineControl()
        control.wakeup = _TimedEvent(stages)
        specs = [SourceSpec(str(clip), f"cam{i}") for i in range(streams)]
        expected, seen = streams * frames, 0
        first = last = (0.0, 0.0)  # (wall, processor time) at the first and the last result
        snapshot: tuple[dict[str, float], dict[str, float], int] | None = None
        with ExitStack() as patches:
            missing = _instrument(patches, pipeline, stages)
            if missing:
                print(f"  not instrumented (renamed or gone): {', '.join(missing)}")
            start = time.perf_counter()
            events = run(specs, cfg, store, control=control, max_frames=frames, pipeline=pipeline)
            while True:
                with stages.span(HAND_OVER):
                    event = next(events, None)
                if event is None:
                    break
                with stages.span(CONSUMER):
                    if isinstance(event, FrameResult):
                        seen += 1
                        if seen == 1:
                            stages.reset()
                            first = (time.perf_counter(), time.process_time())
                        if seen == expected:
                            last, snapshot = (time.perf_counter(), time.process_time()), stages.snapshot()
            whole = time.perf_counter() - start
        if snapshot is None:  # fewer results than frames asked for (a source failed): the run's end instead
            last, snapshot = (time.perf_counter(), time.process_time()), stages.snapshot()
        identities = store.identities(pipeline.run_id)
    finally:
        store.close()
    steady = Rate(seen - 1, last[0] - first[0], last[1] - first[1])
    return EngineRun(steady, seen / whole, *snapshot, len(identities),
                     sum(i.sightings for i in identities), detector.uploaded_bytes / max(seen, 1) / 1e6)


def hardware_decoding(clip: Path) -> str:
    """What hardware decoding each route offers on this machine."""
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, [cv2.CAP_PROP_HW_ACCELERATION, cv2.VIDEO_ACCELERATION_ANY])
    opencv = {0: "none"}.get(int(capture.get(cv2.CAP_PROP_HW_ACCELERATION)), "yes")
    threads = int(capture.get(cv2.CAP_PROP_N_THREADS))
    capture.release()
    accels = subprocess.run(["ffmpeg", "-hide_banner", "-hwaccels"], capture_output=True, text=True).stdout.split()[3:]
    try:
        import av  # optional, as in pyav_alone

        pyav = f"PyAV {av.__version__} hw devices {av.codec.hwaccel.hwdevices_available()}"
    except ImportError:
        pyav = "PyAV not installed"
    return (f"hardware decoding: OpenCV capture with VIDEO_ACCELERATION_ANY -> {opencv} ({threads} decode threads "
            f"per capture); ffmpeg CLI hwaccels {accels}; {pyav}")


def _row(label: str, streams: int, rate: Rate, engine_fps: float | None = None) -> str:
    ratio = f"{engine_fps / rate.fps:8.2f}x" if engine_fps is not None else f"{'':9}"
    return (f"{streams:>7}  {label:<40} {rate.fps:9.1f} {rate.fps / streams:10.1f} {rate.cpu_ms:11.2f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4,16", help="stream counts, comma-separated")
    parser.add_argument("--frames", type=int, default=200, help="frames per stream (the clip's length)")
    parser.add_argument("--imgsz", type=int, default=None, help="detector input size (default: the config's)")
    parser.add_argument("--dim", type=int, default=2048, help="stub embedding size (the product's ResNet-50: 2048)")
    args = parser.parse_args()
    one_blas_thread()  # as the app does at start-up
    if shutil.which("ffmpeg") is None:
        raise SystemExit("this bench needs the ffmpeg command (Debian/Ubuntu: apt install ffmpeg)")
    stream_counts = [int(n) for n in args.streams.split(",")]
    # the stub stands in for the detector: a named runtime, so nothing is prepared or switched in the background
    overrides: dict[str, Any] = {"detector.runtime": "pytorch"}
    if args.imgsz:
        overrides["detector.imgsz"] = args.imgsz
    cfg = load(overrides=overrides)

    with tempfile.TemporaryDirectory(prefix="engine-overhead-") as tmp:
        folder = Path(tmp)
        os.environ["REID_DESKTOP_DATA_DIR"] = str(folder)  # nothing of the bench lands in the user's data folder
        clip = make_clip(folder, args.frames)
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
        print(f"clip: {WIDTH}x{HEIGHT} H.264 main, {FPS} fps, 4 Mb/s, {args.frames} frames per stream; CPU cores: "
              f"{os.cpu_count()}; OpenCV {cv2.__version__}; ffmpeg {version}")
        print(hardware_decoding(clip))
        print(f"engine: stub detector (letterbox to {cfg.detector.imgsz}, 6 fixed people), stub re-id ({args.dim}-d), "
              f"{cfg.tracker.kind}, matcher, re-association, SQLite store; files read as fast as analysis goes")
        UltralyticsTracker(cfg.tracker)  # imports made once, outside the timings
        letterbox_bytes(np.zeros((HEIGHT, WIDTH, 3), np.uint8), cfg.detector.imgsz)
        cost = span_cost(Stages())

        print(f"\n{'streams':>7}  {'path':<40} {'frames/s':>9} {'per stream':>10} {'CPU ms/fr.':>11} "
              f"{'engine/it':>9}")
        runs: dict[int, EngineRun] = {}
        engine_thread_letterbox: dict[int, EngineRun] = {}
        decode_fps: dict[int, float] = {}
        for streams in stream_counts:
            baselines = [("ffmpeg CLI, decode only (YUV)", ffmpeg_alone(clip, streams, args.frames, bgr=False)),
                         ("ffmpeg CLI, decode + BGR", ffmpeg_alone(clip, streams, args.frames, bgr=True)),
                         ("OpenCV capture alone (the app's decoder)", opencv_alone(clip, streams)),
                         ("app readers alone (VideoSource)", readers_alone(clip, streams))]
            pyav = pyav_alone(clip, streams)
            if pyav is not None:
                baselines.append(("PyAV alone, decode + BGR", pyav))
            before = engine_thread_letterbox[streams] = engine(clip, streams, args.frames, cfg, args.dim, folder,
                                                               prepared_by_readers=False)
            result = runs[streams] = engine(clip, streams, args.frames, cfg, args.dim, folder,
                                            prepared_by_readers=True)
            decode_fps[streams] = baselines[2][1].fps
            for label, rate in baselines:
                print(_row(label, streams, rate, result.rate.fps), flush=True)
            for label, run_ in (("engine, letterbox on its thread (before)", before),
                                ("engine, letterbox by the readers (now)", result)):
                print(_row(label, streams, run_.rate))
                print(f"{'':9}{'(whole run, start and close included)':<40} {run_.whole_fps:9.1f}   "
                      f"identities {run_.identities}, sightings stored {run_.sightings}", flush=True)

        stage_table(runs, engine_thread_letterbox, decode_fps, cost)


def stage_table(runs: dict[int, EngineRun], before: dict[int, EngineRun], decode_fps: dict[int, float],
                span_s: float) -> None:
    """Milliseconds per frame of each stage, wall and the stage's own thread's processor time, per stream count
    (the runs of today's route), and the engine thread's load on the route before."""
    print("\nper stage, ms per frame over the steady part: wall | processor time of the stage's own thread "
          "(exclusive);\ndecode budget = 1000 / (OpenCV alone frames/s): what the engine thread may spend per frame "
          "to keep up with decoding")
    print(f"{'stage':<46} {'thread':<9}" + "".join(f" {f'{n} stream' + 's' * (n > 1):>15}" for n in runs))

    def line(label: str, thread: str, cells: Sequence[tuple[float, float | None]]) -> None:
        print(f"{label:<46} {thread:<9}" + "".join(f" {wall:7.3f} |{cpu:6.3f}" if cpu is not None
                                                   else f" {wall:7.3f}        " for wall, cpu in cells))

    def per_frame(run_: EngineRun, stages: Sequence[str]) -> tuple[float, float]:
        wall, cpu = (sum(times.get(s, 0.0) for s in stages) for times in (run_.stages, run_.stage_cpu))
        return 1000 * wall / run_.rate.frames, 1000 * cpu / run_.rate.frames

    budgets = [1000 / decode_fps[n] for n in runs]
    line("decode budget (OpenCV alone)", "", [(budget, None) for budget in budgets])
    for stage, thread in STAGES:
        line(stage, thread, [per_frame(r, [stage]) for r in runs.values()])
    for label, route in (("", runs), (", letterbox on it (before)", before)):
        busy = [per_frame(route[n], ENGINE_BUSY) for n in runs]
        line(f"engine thread busy{label}", "engine", busy)
        line(f"engine busy / decode budget (x){label}", "",
             [(wall / budget, cpu / budget) for (wall, cpu), budget in zip(busy, budgets, strict=True)])
    line("instrumentation (included above)", "all", [(1000 * span_s * r.spans / r.rate.frames, None)
                                                     for r in runs.values()])
    line("letterboxed bytes per frame (GPU upload), MB", "", [(r.uploaded_mb_per_frame, None) for r in runs.values()])

if __name__ == "__main__":
    main()
