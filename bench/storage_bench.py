"""Database bytes per camera-hour, recording every frame (before) and with the bounded defaults (after).

    python bench/storage_bench.py [--frames 300] [--video ../shared/data/vtest.avi]

The detector runs once; both runs replay its detections, so they differ only in what is stored. The
re-id model is OSNet from ../shared when present (else the hand-crafted fallback descriptor).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from reid_desktop.core.config import DetectorConfig, load  # noqa: E402
from reid_desktop.core.engine.pipeline import Pipeline  # noqa: E402
from reid_desktop.core.store.storage import SightingStore  # noqa: E402
from reid_desktop.core.types import Detections, Frame  # noqa: E402
from reid_desktop.core.vision.detection import YoloDetector  # noqa: E402
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder  # noqa: E402


class Replay:
    def __init__(self, detections: Sequence[Detections]) -> None:
        self.detections, self.position, self.name = list(detections), 0, "replay"

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = self.detections[self.position:self.position + len(images)]
        self.position += len(images)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "vtest.avi")
    args = parser.parse_args()
    cap = cv2.VideoCapture(str(args.video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    frames = []
    while len(frames) < args.frames:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    detector = YoloDetector(DetectorConfig(imgsz=1280, device="cpu"))
    detections = [detector.detect([image])[0] for image in frames]
    osnet = ROOT.parent / "shared" / "models" / "osnet_x0_25_msmt17.onnx"
    embedder: Embedder = OnnxEmbedder(osnet, "cpu") if osnet.exists() else ColorTextureEmbedder()
    hours = len(frames) / fps / 3600
    print(f"{args.video.name}: {len(frames)} frames at {fps:.0f} fps ({len(frames) / fps:.0f} s), "
          f"{sum(len(d) for d in detections)} detections; re-id model {embedder.name} ({embedder.dim}-d)")
    settings = {
        "every frame, every embedding (before)": {"storage.sightings_per_second": 0,
                                                  "storage.embeddings_per_track": 1000},
        "bounded defaults (after)": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for label, overrides in settings.items():
            cfg = load(overrides={"detector.device": "cpu", **overrides})
            db = Path(tmp) / f"{len(overrides)}.sqlite"
            with SightingStore(db, embeddings_per_track=cfg.storage.embeddings_per_track) as store:
                pipeline = Pipeline(cfg, store, detector=Replay(detections), embedder=embedder)
                for index, image in enumerate(frames):
                    pipeline.process([Frame("cam", index, 1000.0 + index / fps, image, index / fps)])
                pipeline.close()
                store.flush()
            with sqlite3.connect(db) as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sightings, embeddings = (con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                                         for t in ("sightings", "embeddings"))
            size = db.stat().st_size
            print(f"{label:<40} {size / 2**20:7.2f} MiB  {size / hours / 2**30:6.2f} GiB per camera-hour  "
                  f"({sightings} sightings, {embeddings} embeddings)")


if __name__ == "__main__":
    main()
