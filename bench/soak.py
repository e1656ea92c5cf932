"""Soak: N looping camera streams for M minutes, one line of resource figures a minute; asserts nothing.

    python bench/soak.py [--streams 4] [--minutes 10] [--imgsz 640] [--db soak.sqlite]

Each stream is the demo clip (or ../shared/data/vtest.avi) read at real-time pace and looped, so it
behaves like a live camera: when processing falls behind, only the newest frame is kept. Every
minute it prints what must not grow without bound: resident memory, threads, open descriptors,
the database and WAL size, identities and tracks held in memory, sightings waiting to be written,
and the per-frame latency (decode to result). The re-id model is OSNet from ../shared when present,
else the colour-texture fallback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--imgsz", type=int, default=640, help="detector size (1280 finds smaller people, slower)")
    parser.add_argument("--db", help="sightings database (default: a temporary file)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between report lines")
    args = parser.parse_args()

    from reid_desktop.core.capture.sources import SourceSpec
    from reid_desktop.core.config import load
    from reid_desktop.core.engine.pipeline import Pipeline
    from reid_desktop.core.engine.runner import PipelineControl, run
    from reid_desktop.core.store.interface import StorageHealth
    from reid_desktop.core.store.storage import SightingStore
    from reid_desktop.core.types import FrameResult
    from reid_desktop.core.vision.embedding import OnnxEmbedder
    from reid_desktop.core.vision.models import load_embedder

    video = ROOT.parent / "shared" / "data" / "vtest.avi"
    if not video.exists():
        video = ROOT / "assets" / "demo" / "vtest_excerpt.mp4"
    osnet = ROOT.parent / "shared" / "models" / "osnet_x0_25_msmt17.onnx"
    database = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="reid-soak-")) / "soak.sqlite"
    cfg = load(overrides={"sources.realtime": True, "sources.loop": True, "detector.imgsz": args.imgsz,
                          "detector.device": "cpu", "reid.allow_download": False})
    embedder = OnnxEmbedder(osnet) if osnet.exists() else load_embedder(cfg.reid)[0]
    specs = [SourceSpec(str(video), f"cam{i + 1}") for i in range(args.streams)]
    print(f"soak: {args.streams} x {video.name} (real-time, looped), {args.minutes:g} min, imgsz {args.imgsz}, "
          f"re-id {embedder.name}, database {database}", flush=True)
    print(f"{'min':>5} {'frames':>7} {'fps':>5} {'lat p50':>8} {'lat p95':>8} {'RSS MB':>7} {'threads':>7} "
          f"{'fds':>4} {'db MB':>6} {'wal MB':>6} {'idents':>6} {'tracks':>6} {'waiting':>7}", flush=True)

    control = PipelineControl()
    started = time.monotonic()
    next_report = started + args.every
    latencies: list[float] = []
    frames = total = 0
    with SightingStore(database, cfg.storage.commit_interval_s) as store:
        pipeline = Pipeline(cfg, store, embedder=embedder)
        for event in run(specs, cfg, store, control, pipeline=pipeline, stay_open=True):
            if isinstance(event, FrameResult):
                frames += 1
                total += 1
                latencies.append(time.time() - event.timestamp)
            elif isinstance(event, StorageHealth) and not event.ok:
                print(f"      storage: {event.message}", flush=True)
            now = time.monotonic()
            if now >= next_report:
                latencies.sort()
                p50 = statistics.median(latencies) if latencies else float("nan")
                p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
                print(f"{(now - started) / 60:5.1f} {frames:7d} {frames / args.every:5.1f} {p50:7.2f}s {p95:7.2f}s "
                      f"{rss_mb():7.0f} {threading.active_count():7d} {len(os.listdir('/proc/self/fd')):4d} "
                      f"{size_mb(database):6.1f} {size_mb(Path(f'{database}-wal')):6.1f} "
                      f"{len(pipeline.matcher.identities):6d} {len(pipeline.tracks):6d} {store.pending:7d}",
                      flush=True)
                latencies, frames, next_report = [], 0, next_report + args.every
            if now - started >= args.minutes * 60:
                control.cancel()
    print(f"done: {total} frames in {(time.monotonic() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
