"""Per-stage and end-to-end throughput of the re-id pipeline; prints figures, asserts nothing.

    python bench/pipeline_bench.py [--frames 40] [--imgsz 1280]

Uses ../shared/data/vtest.avi when present (else the bundled demo clip). Stages: decode, detect
(batch 1 and 4), embed (our ResNet-50 in ONNX Runtime vs PyTorch eager, batch 1 and 16), match
(one track against a gallery of identities), then the whole pipeline with 1 and 4 streams.

``--throughput`` runs the detector-runtime figures instead: every runtime and precision this machine
offers at imgsz 640 / 960 / 1280 (frames/s, agreement with the checkpoint, recall on the eye-counted
demo frames and on MOT17-mini, ByteTrack IDF1 on MOT17-mini), then end-to-end frames/s for 1, 4 and 9
streams with today's PyTorch path as the baseline in the same run, and a clip with still stretches
with and without the motion gate. Exports are cached in bench/.cache (or $REID_DESKTOP_DATA_DIR).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per stage and per stream")
    parser.add_argument("--imgsz", type=int, default=1280)
    parser.add_argument("--throughput", action="store_true", help="detector runtimes, streams and motion gating")
    parser.add_argument("--sizes", default="640,960,1280", help="--throughput: detector sizes to measure")
    parser.add_argument("--streams", default="1,4,9", help="--throughput: stream counts")
    args = parser.parse_args()
    if args.throughput:
        from throughput import throughput_bench

        throughput_bench(args.frames, [int(x) for x in args.sizes.split(",")],
                         [int(x) for x in args.streams.split(",")], args.imgsz)
        return

    from reid_desktop.core.capture.sources import SourceSpec
    from reid_desktop.core.config import load
    from reid_desktop.core.engine.pipeline import Pipeline
    from reid_desktop.core.engine.runner import run
    from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
    from reid_desktop.core.types import FrameResult
    from reid_desktop.core.vision.detection import YoloDetector
    from reid_desktop.core.vision.embedding import OnnxEmbedder

    video = ROOT.parent / "shared" / "data" / "vtest.avi"
    if not video.exists():
        video = ROOT / "assets" / "demo" / "vtest_excerpt.mp4"
    import onnxruntime as ort
    import torch

    print(f"video: {video.name}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {ort.__version__}; CPU cores: {os.cpu_count()}")

    cap = cv2.VideoCapture(str(video))
    frames = []
    t = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    decode_fps = len(frames) / (time.perf_counter() - t)
    print(f"decode              {decode_fps:8.1f} frames/s  ({len(frames)} frames {frames[0].shape[1]}x"
          f"{frames[0].shape[0]})")
    sample = frames[: args.frames]

    cfg = load(overrides={"detector.imgsz": args.imgsz, "reid.allow_download": False})
    detector = YoloDetector(cfg.detector)
    detector.detect(sample[:1])  # warm-up
    for batch in (1, 4):
        chunks = [sample[i:i + batch] for i in range(0, len(sample), batch)]
        seconds = timed(lambda chunks=chunks: [detector.detect(c) for c in chunks])
        print(f"detect  batch {batch:<3}  {len(sample) / seconds:8.1f} frames/s  ({detector.name}, "
              f"imgsz {args.imgsz}, {detector.device})")

    from reid_desktop.core.vision.model_info import ReidModelInfo
    from trainer.export import export_onnx
    from trainer.model import resnet50_backbone

    model, _ = resnet50_backbone("random")  # speed does not depend on the weights
    model.eval()
    tmp = tempfile.TemporaryDirectory()
    path = export_onnx(model, ReidModelInfo(256, 128, 2048, architecture="resnet50-gap"),
                       Path(tmp.name) / "r50.onnx")
    embedder = OnnxEmbedder(path)
    dets = detector.detect(sample[:8])
    crops = [f[int(b[1]):int(b[3]), int(b[0]):int(b[2])] for f, d in zip(sample, dets, strict=False)
             for b in d.boxes if b[3] - b[1] > 12 and b[2] - b[0] > 6]
    crops = (crops * 16)[:32]
    for batch in (1, 16):
        chunk = crops[:batch]
        embedder.embed(chunk)
        onnx_s = timed(lambda chunk=chunk: embedder.embed(chunk), repeat=3)
        tensor = torch.from_numpy(embedder.preprocess(chunk))
        with torch.inference_mode():
            model(tensor)
            torch_s = timed(lambda tensor=tensor: model(tensor), repeat=3)
        print(f"embed   batch {batch:<3}  ONNX Runtime {batch / onnx_s:7.1f} crops/s | PyTorch eager "
              f"{batch / torch_s:7.1f} crops/s  (ResNet-50 256x128, {embedder.provider})")

    rng = np.random.default_rng(0)
    matcher = IdentityMatcher(threshold=0.6, gallery_size=30)
    for _ in range(200):
        identity = matcher.create()
        g = rng.standard_normal((30, 2048)).astype(np.float32)
        matcher.add(identity, g / np.linalg.norm(g, axis=1, keepdims=True), np.ones(30))
    queries = rng.standard_normal((8, 2048)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    requests = [MatchRequest(i, q) for i, q in enumerate(queries)]
    seconds = timed(lambda: matcher.assign(requests), repeat=1)
    print(f"match               {len(queries) / seconds:8.1f} tracks/s  (8 tracks jointly against 200 identities "
          "x 30 embeddings)")

    for streams in (1, 4):
        specs = [SourceSpec(str(video), f"cam{i}") for i in range(streams)]
        pipeline = Pipeline(cfg, detector=detector, embedder=embedder)
        count = 0
        t = time.perf_counter()
        for event in run(specs, cfg, max_frames=args.frames, pipeline=pipeline):
            count += isinstance(event, FrameResult)
        seconds = time.perf_counter() - t
        print(f"end-to-end {streams} stream{'s' if streams > 1 else ' '} {count / seconds:8.1f} frames/s total  "
              f"({count} frames; detect + track + ResNet-50 ONNX embeddings + match, no database)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
