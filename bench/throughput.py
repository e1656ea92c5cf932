"""Detector runtimes, many streams and the motion gate: ``python bench/pipeline_bench.py --throughput``.

Figures only, no asserts. The baseline (today's path: PyTorch FP32, every frame analysed) runs in the
same process as the faster paths, so the ratios compare like with like on this machine.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA_DIR = os.environ.get("REID_DESKTOP_DATA_DIR", str(ROOT / "bench" / ".cache"))  # exports kept between runs
sys.path.insert(0, str(ROOT))

from reid_desktop.core.capture.sources import SourceSpec, read_frames  # noqa: E402
from reid_desktop.core.config import PipelineConfig, load  # noqa: E402
from reid_desktop.core.engine.pipeline import Pipeline  # noqa: E402
from reid_desktop.core.engine.runner import run  # noqa: E402
from reid_desktop.core.types import Detections, FrameResult  # noqa: E402
from reid_desktop.core.vision import detector_runtimes as runtimes  # noqa: E402
from reid_desktop.core.vision.detection import Detector  # noqa: E402
from reid_desktop.core.vision.embedding import Embedder, OnnxEmbedder  # noqa: E402
from reid_desktop.core.vision.letterbox import letterbox_bytes, model_input  # noqa: E402
from reid_desktop.core.vision.tracking import UltralyticsTracker  # noqa: E402
from tests.core.test_detection_tracking import EYE_COUNTED, _covered  # noqa: E402  (the eye-counted frames)

os.environ["REID_DESKTOP_DATA_DIR"] = DATA_DIR  # importing the tests pointed it at a throw-away folder

if not hasattr(np, "asfarray"):  # motmetrics 1.4.0 still calls this NumPy 1 alias
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]

CONFIDENT = 0.25  # the tracker's threshold for starting and continuing tracks


def _mot() -> list[tuple[list[np.ndarray], dict[int, np.ndarray]]]:
    """MOT17-mini: each sequence's frames and its ground truth (pedestrians that count) per frame number."""
    sequences = []
    for seq in sorted((SHARED / "data/mot/MOT17-mini/train").iterdir()):
        rows = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
        rows = rows[(rows[:, 6] == 1) & (rows[:, 7] == 1)]
        images = [cv2.imread(str(p)) for p in sorted((seq / "img1").glob("*.jpg"))]
        sequences.append((images, {int(f): rows[rows[:, 0] == f] for f in np.unique(rows[:, 0])}))
    return sequences


def mot_recall(detector: Detector, mot) -> float:
    found = total = 0
    for images, gt in mot:
        for number, image in enumerate(images, start=1):
            g = gt.get(number, np.zeros((0, 9)))
            truth = np.column_stack([g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]])
            boxes = detector.detect([image])[0].boxes
            boxes = boxes[boxes[:, 4] >= CONFIDENT]
            total += len(truth)
            if len(truth) and len(boxes):
                found += int((runtimes.box_iou(truth, boxes[:, :4]).max(axis=1) >= 0.5).sum())
    return found / max(total, 1)


def mot_idf1(detect: Callable[[np.ndarray], Detections], mot) -> float:
    """ByteTrack IDF1 over MOT17-mini, the detector on every frame."""
    import motmetrics as mm

    from reid_desktop.core.config import TrackerConfig

    accumulators = []
    for images, gt in mot:
        tracker = UltralyticsTracker(TrackerConfig())
        acc = mm.MOTAccumulator(auto_id=True)
        for number, image in enumerate(images, start=1):
            out = tracker.update(detect(image), image)
            _score(acc, gt.get(number, np.zeros((0, 9))), out.track_ids, out.boxes)
        accumulators.append(acc)
    return _idf1(accumulators)


def _score(acc, g: np.ndarray, ids: np.ndarray, boxes: np.ndarray) -> tuple[int, int]:
    """Adds one frame to ``acc``; returns (ground-truth people covered at IoU 0.5, ground-truth people)."""
    import motmetrics as mm

    hyp = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]) if len(boxes) else np.zeros((0, 4))
    acc.update(g[:, 1].astype(int).tolist(), ids.tolist(), mm.distances.iou_matrix(g[:, 2:6], hyp, max_iou=0.5))
    truth = np.column_stack([g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]])
    covered = int((runtimes.box_iou(truth, boxes).max(axis=1) >= 0.5).sum()) if len(truth) and len(boxes) else 0
    return covered, len(truth)


def _idf1(accumulators: list) -> float:
    import motmetrics as mm

    summary = mm.metrics.create().compute_many(accumulators, metrics=["idf1"], generate_overall=True)
    return float(summary.loc["OVERALL", "idf1"])


def pipeline_quality(cfg: PipelineConfig, detector: Detector, mot, every: int = 1) -> tuple[float, float]:
    """Track recall and IDF1 over MOT17-mini of what the window shows: the pipeline's people on every frame,
    with the motion gate of ``cfg`` and the pipeline given every ``every``-th frame (an analysis rate)."""
    import motmetrics as mm

    from reid_desktop.core.types import Frame
    from reid_desktop.core.vision.embedding import ColorTextureEmbedder

    accumulators, covered, total = [], 0, 0
    for number_of_sequence, (images, gt) in enumerate(mot):
        pipeline = Pipeline(cfg, detector=detector, embedder=ColorTextureEmbedder())
        acc = mm.MOTAccumulator(auto_id=True)
        shown = None
        for number, image in enumerate(images, start=1):
            if shown is None or (number - 1) % every == 0:
                shown = pipeline.process([Frame(f"seq{number_of_sequence}", number, time.time(), image,
                                                number / 30)])[0]
            ids = np.array([p.track_id for p in shown.persons], dtype=np.int64)
            boxes = np.array([p.box for p in shown.persons], dtype=np.float32).reshape(-1, 4)
            found, people = _score(acc, gt.get(number, np.zeros((0, 9))), ids, boxes)
            covered, total = covered + found, total + people
        pipeline.close()
        accumulators.append(acc)
    return covered / max(total, 1), _idf1(accumulators)


def eye_recall(detector: Detector, demo: list[np.ndarray]) -> float:
    found = total = 0
    for index, people in EYE_COUNTED.items():
        boxes = detector.detect([demo[index]])[0].boxes
        found += sum(_covered(boxes[boxes[:, 4] >= CONFIDENT], p) for p in people)
        total += len(people)
    return found / total


def runtime_table(sizes: list[int], demo: list[np.ndarray], mot) -> dict[int, runtimes.CheckRecord]:
    """Every runtime at every size; returns the fastest that passed, per size."""
    best: dict[int, runtimes.CheckRecord] = {}
    print("\ndetector runtimes (YOLO11n-pose, batch 1; agreement: with the PyTorch checkpoint on demo frames; "
          f"recall: people found with score >= {CONFIDENT} at IoU 0.5)")
    print(f"{'imgsz':>5}  {'runtime':<20} {'frames/s':>8} {'vs PyTorch':>10} {'agrees':>7} {'eye recall':>10} "
          f"{'MOT17 recall':>12} {'MOT17 IDF1':>10}  prepared in")
    for size in sizes:
        config = load(overrides={"detector.imgsz": size, "detector.device": _device()}).detector
        cache = runtimes.DetectorCache(runtimes.checkpoint_of(config), size)  # type: ignore[arg-type]
        for variant in runtimes.candidates():
            start = time.perf_counter()
            record = cache.prepare(variant, config, lambda _line: None)
            prepared = time.perf_counter() - start
            detector = runtimes.load_variant(variant, config, cache)
            idf1 = mot_idf1(lambda image, d=detector: d.detect([image])[0], mot)
            print(f"{size:>5}  {variant.label:<20} {record.frames_per_s:8.1f} "
                  f"{record.frames_per_s / record.reference_frames_per_s:9.2f}x {record.agreement:7.1%} "
                  f"{eye_recall(detector, demo):10.1%} {mot_recall(detector, mot):12.1%} {idf1:10.3f}  "
                  f"{prepared:5.1f} s", flush=True)
            if record.passed and (size not in best or record.frames_per_s > best[size].frames_per_s):
                best[size] = record
    return best


def end_to_end(cfg: PipelineConfig, detector: Detector, embedder: Embedder, video: Path, streams: int,
               frames: int) -> tuple[float, float, int]:
    """Total frames/s, the slowest camera's frames/s and the detector's pictures, all streams at once."""
    specs = [SourceSpec(str(video), f"cam{i}") for i in range(streams)]
    counting = _Counting(detector)
    pipeline = Pipeline(cfg, detector=counting, embedder=embedder)
    per_camera = dict.fromkeys((s.source_id for s in specs), 0)
    start = time.perf_counter()
    for event in run(specs, cfg, max_frames=frames, pipeline=pipeline):
        if isinstance(event, FrameResult):
            per_camera[event.source_id] += 1
    seconds = time.perf_counter() - start
    return sum(per_camera.values()) / seconds, min(per_camera.values()) / seconds, counting.pictures


class _Counting:
    def __init__(self, detector: Detector) -> None:
        self._detector, self.name, self.pictures = detector, detector.name, 0

    def detect(self, images):
        self.pictures += len(images)
        return self._detector.detect(images)


def still_clip(source: list[np.ndarray], folder: Path) -> Path:
    """The clip with still stretches: 2 s of walking, then the last picture held for 4 s, over and over."""
    path = folder / "still_stretches.mp4"
    height, width = source[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for start in range(0, len(source) - 50, 50):
        for frame in source[start:start + 50]:
            writer.write(frame)
        for _ in range(100):
            writer.write(source[start + 49])
    writer.release()
    return path


def throughput_bench(frames: int, sizes: list[int], stream_counts: list[int], imgsz: int) -> None:
    import torch

    video = SHARED / "data" / "vtest.avi"
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads); CPU cores: {os.cpu_count()}; "
          f"machine: {runtimes.machine_signature()}; CUDA: {torch.cuda.is_available()}")
    demo = read_frames(str(ROOT / "assets" / "demo" / "vtest_excerpt.mp4"))
    mot = _mot()
    best = runtime_table(sizes, demo, mot)
    cfg = load(overrides={"detector.imgsz": imgsz, "detector.device": _device(), "reid.allow_download": False})
    fastest = best.get(imgsz)
    if fastest is None:
        print(f"no runtime passed its check at imgsz {imgsz}")
        return
    cache = runtimes.DetectorCache(runtimes.checkpoint_of(cfg.detector), imgsz)  # type: ignore[arg-type]
    baseline = runtimes.load_variant(runtimes.REFERENCE, cfg.detector, cache)
    fast = runtimes.load_variant(fastest.variant, cfg.detector, cache)
    r50 = _resnet50(Path(tempfile.mkdtemp()))
    reid_table(r50, demo)
    gpu_export = cache.model_path(runtimes.Variant("onnxruntime", "fp16"))
    if torch_cuda() and gpu_export.exists():
        transfer_table(gpu_export, [letterbox_bytes(f, imgsz) for f in demo[:4]])
    embedder = OnnxEmbedder(r50)
    print(f"\nend to end, {video.name} in every stream read as fast as analysis goes, imgsz {imgsz}, ResNet-50 "
          f"re-id in ONNX Runtime ({embedder.provider}, {embedder.precision.upper()}), no database; "
          f"baseline = PyTorch FP32 (today), auto = {fastest.variant.label}")
    print(f"{'streams':>7}  {'path':<10} {'total frames/s':>14} {'slowest camera':>14} {'vs baseline':>11}")
    for streams in stream_counts:
        base_total, base_cam, _ = end_to_end(cfg, baseline, embedder, video, streams, frames)
        total, cam, _ = end_to_end(cfg, fast, embedder, video, streams, frames)
        print(f"{streams:>7}  {'baseline':<10} {base_total:14.1f} {base_cam:14.1f} {1.0:10.2f}x")
        print(f"{streams:>7}  {'auto':<10} {total:14.1f} {cam:14.1f} {total / base_total:10.2f}x", flush=True)
    gated = dataclasses.replace(cfg, detector=dataclasses.replace(cfg.detector, motion_share=0.002))
    with tempfile.TemporaryDirectory() as tmp:
        clip = still_clip(read_frames(str(video)), Path(tmp))
        still_frames = 150  # one cycle: 2 s walking, 4 s still
        print(f"\nmotion gate, 4 streams of a clip with still stretches (2 s walking, 4 s still), "
              f"{still_frames} frames per stream, files read as fast as analysis goes")
        print(f"{'path':<24} {'total frames/s':>14} {'vs baseline':>11} {'detector pictures':>17}")
        rows = [("baseline", cfg, baseline), ("auto", cfg, fast), ("auto + motion gate", gated, fast)]
        base = None
        for name, config, detector in rows:
            total, _, pictures = end_to_end(config, detector, embedder, clip, 4, still_frames)
            base = base or total
            print(f"{name:<24} {total:14.1f} {total / base:10.2f}x {pictures:17d}", flush=True)
    print("\nquality of what the window shows on MOT17-mini (the pipeline's tracked people on every frame, "
          "ByteTrack; track recall at IoU 0.5)")
    print(f"{'path':<34} {'track recall':>12} {'IDF1':>6}")
    for name, config, detector, every in (("baseline", cfg, baseline, 1), ("auto", cfg, fast, 1),
                                          ("auto, every 2nd frame analysed", cfg, fast, 2),
                                          ("auto + motion gate", gated, fast, 1)):
        recall, idf1 = pipeline_quality(config, detector, mot, every)
        print(f"{name:<34} {recall:12.1%} {idf1:6.3f}", flush=True)


def _resnet50(folder: Path) -> Path:
    from reid_desktop.core.vision.model_info import ReidModelInfo
    from trainer.export import export_onnx
    from trainer.model import resnet50_backbone

    model, _ = resnet50_backbone("random")  # speed does not depend on the weights
    model.eval()
    return export_onnx(model, ReidModelInfo(256, 128, 2048, architecture="resnet50-gap"), folder / "r50.onnx")


def _device() -> str:
    """The GPU when there is one (today's path runs PyTorch there), else the CPU."""
    return "" if torch_cuda() else "cpu"


def _rate(call: Callable[[], object], items: int, seconds: float = 3.0) -> float:
    """Items per second of ``call`` (which handles ``items`` at a time), after two warm-up calls."""
    call()
    call()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        done += items
    return done / (time.perf_counter() - start)


def reid_table(model: Path, demo: list[np.ndarray], batch: int = 32) -> None:
    """ResNet-50 re-id crops/s: the CPU, and on a GPU full vs half precision (agreement with full precision)."""
    crops = [frame[100:400, x:x + 120] for frame in demo[::5] for x in (80, 300, 520)][:batch]
    reference = OnnxEmbedder(model, "cpu", batch_size=batch, precision="fp32")
    rows = [("cpu", "fp32")] + ([("cuda", "fp32"), ("cuda", "fp16")] if torch_cuda() else [])
    print(f"\nre-id, ResNet-50 256x128, batch {len(crops)} crops of the demo clip; agreement: lowest cosine "
          "similarity with the CPU's full-precision embedding")
    print(f"{'provider':<24} {'precision':>9} {'crops/s':>8} {'agreement':>9}")
    expected = reference.embed(crops)
    for providers, precision in rows:
        embedder = reference if providers == "cpu" else OnnxEmbedder(model, providers, batch, precision)
        agreement = float(np.min(np.sum(expected * embedder.embed(crops), axis=1)))
        rate = _rate(lambda e=embedder: e.embed(crops), len(crops))
        print(f"{embedder.provider:<24} {embedder.precision:>9} {rate:8.1f} {agreement:9.4f}", flush=True)


def transfer_table(detector_model: Path, pictures: list[np.ndarray]) -> None:
    """ONNX Runtime on the GPU: float pictures made on the CPU, numpy in and out (``session.run``), against
    8-bit pictures uploaded through page-locked memory and normalised there (IO binding, output left there)."""
    import onnxruntime as ort

    from reid_desktop.core.vision.ort_runner import OrtRunner, provider_options

    session = ort.InferenceSession(str(detector_model),
                                   providers=provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"]))
    runner = OrtRunner(session)
    batch = np.stack(pictures)
    print(f"\nGPU transfers, detector export {detector_model.parent.name}, batch {len(batch)} of "
          f"{tuple(batch.shape[1:])} 8-bit pictures")
    print(f"{'route':<48} {'pictures/s':>10}")
    routes = (("float32 made on the CPU, numpy in and out", lambda: runner(model_input(batch))),
              ("8-bit upload, normalised on the GPU, IO binding", lambda: runner.run_images(
                  batch, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), rgb=True)))
    for label, call in routes:
        print(f"{label:<48} {_rate(call, len(batch)):10.1f}", flush=True)


def torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
