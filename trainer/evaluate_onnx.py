"""Accuracy of an exported ONNX model measured through the app's own embedder (what operators get)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from reid_desktop.core.vision.embedding import OnnxEmbedder
from trainer.datasets import ReidDataset, ReidImage
from trainer.evaluate import Metrics, evaluate_rank, pairwise_distance


def _embed(embedder: object, images: Sequence[ReidImage], batch: int = 64) -> np.ndarray:
    rows = []
    for start in range(0, len(images), batch):
        crops = [cv2.imread(str(image.path)) for image in images[start:start + batch]]
        rows.append(embedder.embed(crops))  # type: ignore[attr-defined]
    return np.concatenate(rows)


def evaluate_onnx(model: Path, dataset: ReidDataset, providers: str = "cpu") -> Metrics:
    embedder = OnnxEmbedder(model, providers=providers)
    query, gallery = list(dataset.query), list(dataset.gallery)
    qf, gf = _embed(embedder, query), _embed(embedder, gallery)
    return evaluate_rank(pairwise_distance(qf, gf), np.array([i.pid for i in query]),
                         np.array([i.pid for i in gallery]), np.array([i.camid for i in query]),
                         np.array([i.camid for i in gallery]))
