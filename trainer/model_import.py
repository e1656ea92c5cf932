"""Turning an ecosystem checkpoint into a model the app runs: convert, check parity, install, make default.

``import_checkpoint`` reads a FastReID / torchreid / BoxMOT checkpoint (``trainer.zoo``), exports it to
ONNX with the app's metadata and refuses the result unless PyTorch and ONNX Runtime agree (lowest
cosine between their embeddings >= ``MIN_PARITY_COSINE``). ``install`` does the same for a catalogue
entry after downloading it. Both write next to the target and rename only a checked file into place,
so a failure at any step leaves the model in use untouched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from reid_desktop.core.capture.sources import read_frames
from reid_desktop.core.config import DetectorConfig, MatcherConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.identity.calibration import ThresholdCalibration
from reid_desktop.core.paths import demo_clip, models_dir
from reid_desktop.core.vision import model_catalogue as catalogue
from reid_desktop.core.vision.detection import YoloDetector
from reid_desktop.core.vision.downloads import ProgressCallback, download, sha256_of
from reid_desktop.core.vision.embedding import OnnxEmbedder
from reid_desktop.core.vision.model_info import GENERIC_MATCH_THRESHOLD, ReidModelInfo
from trainer.export import export_onnx, write_metadata
from trainer.zoo import ZooCheckpoint, build_network, read_checkpoint

log = logging.getLogger(__name__)

MIN_PARITY_COSINE = 0.999
PARITY_BATCH = 8
CALIBRATION_FRAMES = 24  # frames of the demo clip, spread over it, whose people calibrate the threshold
MIN_CALIBRATION_PEOPLE = 30
MIN_CROP_HEIGHT = 48  # px: smaller people say little about a model's scores


@dataclass(frozen=True)
class ImportedModel:
    path: Path
    architecture: str
    source_format: str
    parity_cosine: float  # lowest cosine between PyTorch and ONNX Runtime embeddings of the same input
    info: ReidModelInfo


def parity_cosine(model: torch.nn.Module, onnx_path: Path, height: int, width: int, seed: int = 0) -> float:
    """Lowest cosine between PyTorch's and ONNX Runtime's embeddings of the same normalised images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((PARITY_BATCH, 3, height, width)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    return float(((expected * got).sum(axis=1) / np.maximum(norms, 1e-12)).min())


@functools.lru_cache(maxsize=1)
def demo_people() -> tuple[tuple[np.ndarray, ...], ...]:
    """Person crops from frames spread over the bundled demo clip, one tuple per frame (computed once)."""
    frames = read_frames(str(demo_clip()))
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, CALIBRATION_FRAMES).astype(int)]
    detector = YoloDetector(DetectorConfig(device="cpu"))
    people = []
    for frame, found in zip(picked, detector.detect(picked), strict=True):
        crops = [frame[int(y1):int(y2), int(x1):int(x2)] for x1, y1, x2, y2, conf, _ in found.boxes
                 if conf >= 0.5 and y2 - y1 >= MIN_CROP_HEIGHT]
        people.append(tuple(crops))
    return tuple(people)


def calibrate_on_demo(embedder: OnnxEmbedder) -> float | None:
    """The match threshold the app's calibration would set on the demo clip's people: people in one frame
    are different people, and the threshold lets only ``false_accept`` of them reach someone else.
    None when the clip gives too few people (the app then starts from the generic value)."""
    calibration = ThresholdCalibration(MatcherConfig().false_accept, min_scores=MIN_CALIBRATION_PEOPLE)
    for crops in demo_people():
        if len(crops) >= 2:
            descriptors = embedder.embed(list(crops))
            calibration.observe(descriptors, [d[None] for d in descriptors])
    threshold = calibration.threshold
    return None if threshold is None else float(min(max(threshold, 0.05), 0.99))


IMPORTED_LICENCE = "imported by the user: the terms of the checkpoint and of the data it was trained on apply"


def import_checkpoint(path: Path, output: Path, source_format: str | None = None) -> ImportedModel:
    """Convert the checkpoint at ``path`` to the app's ONNX at ``output`` (ModelError when it cannot)."""
    checkpoint = read_checkpoint(Path(path), source_format)
    weights = f"{checkpoint.source_format} {checkpoint.architecture} ({Path(path).name})"
    return _convert(checkpoint, output, weights, "", {}, IMPORTED_LICENCE)


def _convert(checkpoint: ZooCheckpoint, output: Path, weights: str, dataset: str,
             metrics: dict[str, float], licence: str) -> ImportedModel:
    model = build_network(checkpoint)
    height, width = checkpoint.input_size
    with torch.no_grad():
        dim = int(model(torch.zeros(1, 3, height, width)).shape[1])
    info = ReidModelInfo(input_height=height, input_width=width, embedding_dim=dim,
                         architecture=f"{checkpoint.source_format}/{checkpoint.architecture}", weights=weights,
                         match_threshold=GENERIC_MATCH_THRESHOLD, dataset=dataset, metrics=metrics,
                         licence=licence)
    output = Path(output)
    staging = output.with_name(output.name + ".import")
    try:
        export_onnx(model, info, staging)
        cosine = parity_cosine(model, staging, height, width)
        if cosine < MIN_PARITY_COSINE:
            raise ModelError(f"the converted model disagrees with PyTorch (lowest cosine {cosine:.4f}, needs "
                             f"{MIN_PARITY_COSINE}); nothing installed")
        threshold = calibrate_on_demo(OnnxEmbedder(staging, providers="cpu", precision="fp32"))
        if threshold is not None:
            info = replace(info, match_threshold=threshold)
            write_metadata(staging, info)  # the same network, now with its calibrated threshold
        staging.replace(output)
    finally:
        staging.unlink(missing_ok=True)
    log.info("imported %s as %s (parity cosine %.6f)", checkpoint.architecture, output, cosine)
    return ImportedModel(output, checkpoint.architecture, checkpoint.source_format, cosine, info)


def install(entry: catalogue.CatalogueEntry, progress: ProgressCallback | None = None,
            say: Callable[[str], None] = log.info, url: str | None = None) -> ImportedModel:
    """Download catalogue ``entry`` (resuming a partial download), verify, convert and install it.

    ``url`` replaces the entry's (mirrors, tests). The downloaded checkpoint is kept in the models
    folder's ``checkpoints/`` (one file per entry: the trainer's ``--init`` can start from it).
    """
    raw = models_dir() / "checkpoints" / entry.filename
    expected = catalogue.pinned_sha256(entry)
    if raw.exists() and (expected is None or sha256_of(raw) != expected):
        raw.unlink()  # an unpinned or altered leftover proves nothing: fetch it again
    if raw.exists():
        digest = str(expected)
    else:
        say(f"downloading {entry.name} ({entry.filename})")
        digest = download(url or entry.url, raw, sha256=expected, size=entry.size_bytes, progress=progress)
    say("converting to ONNX and checking it against PyTorch")
    try:
        checkpoint = read_checkpoint(raw, entry.source_format)
        if checkpoint.architecture != entry.architecture:
            raise ModelError(f"{entry.filename} holds a {checkpoint.architecture} network, the catalogue says "
                             f"{entry.architecture}")
        model = _convert(checkpoint, catalogue.installed_path(entry.name), f"{entry.name} from {entry.url}",
                         entry.dataset, {"rank1": entry.rank1 / 100, "mAP": entry.mAP / 100}, entry.licence)
    except ModelError:
        if expected is None:
            raw.unlink(missing_ok=True)  # not pinned and not a working model: do not keep it
        raise
    if expected is None:
        catalogue.pin_sha256(entry, digest)
    return model
