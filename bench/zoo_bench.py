"""Ecosystem re-id networks through the app: conversion time, parity and embeddings per second.

Each architecture ``reid-desktop models import`` knows is built with random weights in its project's
key layout, converted by the app's importer (ONNX export + parity check) and run by the app's own
``OnnxEmbedder`` on person-sized crops. Accuracy needs the trained weights (not reachable from this
machine); see README for the published figures.

    .venv/bin/python bench/zoo_bench.py [--crops 64] [--only osnet_x0_25,bot-r50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reid_desktop.core.vision.embedding import OnnxEmbedder
from trainer import zoo
from trainer.model_import import import_checkpoint

NETWORKS = {
    "bot-r50": lambda: zoo.FastReidNet(ibn=False, non_local_inter=None, gem=False),
    "bot-r50-ibn": lambda: zoo.FastReidNet(ibn=True, non_local_inter=None, gem=False),
    "sbs-r50": lambda: zoo.FastReidNet(ibn=False, non_local_inter=1, gem=True),
    "sbs-r50-ibn": lambda: zoo.FastReidNet(ibn=True, non_local_inter=1, gem=True),
    "resnet50": lambda: zoo.TorchreidResNet(fc512=False),
    "resnet50_fc512": lambda: zoo.TorchreidResNet(fc512=True),
    "osnet_x1_0": lambda: zoo.OSNet("x1_0"),
    "osnet_x0_25": lambda: zoo.OSNet("x0_25"),
    "osnet_ain_x1_0": lambda: zoo.OSNet("x1_0", ain=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=64, help="crops per timed run")
    parser.add_argument("--only", default="", help="comma-separated architectures")
    args = parser.parse_args()
    wanted = [n for n in NETWORKS if not args.only or n in args.only.split(",")]
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(h), int(h) // 2, 3), np.uint8) for h in rng.integers(90, 300, args.crops)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.crops} crops per run, batch 32")
    print(f"{'architecture':<16} {'input':>7} {'dim':>5} {'convert s':>9} {'parity cos':>11} {'crops/s':>8} "
          f"{'MB':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            network = NETWORKS[name]()
            state = {k: (torch.randn_like(v) * 0.05 + (1.0 if "running_var" in k else 0.0))
                     if v.dtype.is_floating_point else v for k, v in network.state_dict().items()}
            source = Path(tmp) / f"{name}.pth"
            torch.save(state, source)
            started = time.perf_counter()
            imported = import_checkpoint(source, Path(tmp) / f"{name}.onnx")
            convert_s = time.perf_counter() - started
            embedder = OnnxEmbedder(imported.path, providers="cpu")
            embedder.embed(crops[:8])  # warm-up
            started = time.perf_counter()
            embedder.embed(crops)
            rate = len(crops) / (time.perf_counter() - started)
            info = imported.info
            size_mb = imported.path.stat().st_size / 1e6
            print(f"{name:<16} {info.input_height:>3}x{info.input_width:<3} {info.embedding_dim:>5} {convert_s:>9.1f} "
                  f"{imported.parity_cosine:>11.6f} {rate:>8.1f} {size_mb:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
