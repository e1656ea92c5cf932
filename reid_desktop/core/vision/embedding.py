"""Re-identification embeddings: person crops -> L2-normalised vectors.

Two embedders share one protocol: :class:`OnnxEmbedder` runs any re-id ONNX of shape
[N,3,H,W] -> [N,D] with ONNX Runtime on the best provider the machine has, and
:class:`ColorTextureEmbedder` is the documented hand-crafted fall-back used when no trained or
ImageNet-initialised network is available (it is never silent about it).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from reid_desktop.core.capture.sources import read_frames
from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import demo_clip, models_dir
from reid_desktop.core.vision.model_info import ReidModelInfo
from reid_desktop.core.vision.ort_runner import (
    OrtRunner,
    candidate_providers,
    preload_gpu_libraries,
    provider_options,
    save_half_precision,
)

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns BGR person crops into an N x D float32 array of L2-normalised rows."""

    name: str
    key: str  # identifies the model's embedding space: only vectors with equal keys are comparable
    dim: int
    provider: str
    precision: str  # of the arithmetic: fp32 or fp16
    is_fallback: bool
    match_threshold: float

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


# -- ONNX Runtime ----------------------------------------------------------------------------------

HALF_AGREEMENT = 0.99  # lowest cosine similarity allowed between a crop's half- and full-precision embeddings
HALF_COPIES_KEPT = 4  # half-precision copies of re-id models kept in the data folder (least recently used go)


def _open_session(path: Path, providers: list[str], half: bool = False) -> Any:
    """An inference session on the first of ``providers`` that works; the CPU (with a warning) if none does."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=provider_options(providers, half))
    except Exception as exc:
        if providers == ["CPUExecutionProvider"]:
            raise ModelError(f"ONNX Runtime cannot run re-id model {path.name}: {exc}") from None
        log.warning("GPU providers failed for %s (%s); using the CPU", path.name, exc)
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def half_precision_copy(path: Path, digest: str) -> Path:
    """The model with half-precision weights and arithmetic (full-precision input and output), made once and
    kept in the data folder; only the :data:`HALF_COPIES_KEPT` most recently used copies stay."""
    folder = models_dir() / "reid-fp16"
    target = folder / f"{path.stem}-{digest}.onnx"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        save_half_precision(path, partial)
        partial.replace(target)
    target.touch()
    by_use = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in by_use[HALF_COPIES_KEPT:]:
        stale.unlink(missing_ok=True)
    return target


def _check_crops() -> list[np.ndarray]:
    """Person-shaped crops from four frames of the demo clip: real pictures for the precision check."""
    crops = []
    for frame in read_frames(str(demo_clip()), limit=4):
        height, width = frame.shape[:2]
        for left in np.linspace(0, width - width // 6, 4).astype(int):
            crops.append(frame[height // 4: height // 4 + height // 2, left: left + width // 6])
    return crops


@dataclass(frozen=True)
class OnnxModelCheck:
    """Shapes read from an ONNX graph before a session is built."""

    input_name: str
    input_hw: tuple[int, int] | None
    output_dim: int | None
    dynamic_batch: bool
    metadata: dict[str, str]


def inspect_onnx(path: Path) -> OnnxModelCheck:
    """Validate that ``path`` is a re-id model [N,3,H,W] -> [N,D]; raise :class:`ModelError` otherwise."""
    import onnx

    if not path.is_file():
        raise ModelError(f"re-id model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"re-id model {path.name} is not a readable ONNX file ({type(exc).__name__})") from None
    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1 or len(graph.output) < 1:
        raise ModelError(f"re-id model {path.name} must have one image input and an embedding output; "
                         f"it has {len(inputs)} inputs and {len(graph.output)} outputs")

    def dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]

    in_dims, out_dims = dims(inputs[0]), dims(graph.output[0])
    if len(in_dims) != 4 or in_dims[1] not in (3, None):
        raise ModelError(f"re-id model {path.name} has input shape {in_dims}; expected [N,3,H,W]")
    if len(out_dims) != 2:
        raise ModelError(f"re-id model {path.name} has output shape {out_dims}; expected [N,D]")
    hw = (in_dims[2], in_dims[3]) if in_dims[2] is not None and in_dims[3] is not None else None
    return OnnxModelCheck(
        input_name=inputs[0].name,
        input_hw=hw,
        output_dim=out_dims[1],
        dynamic_batch=in_dims[0] is None,
        metadata={p.key: p.value for p in model.metadata_props},
    )


def _file_digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def read_model_info(path: Path) -> tuple[ReidModelInfo, Any]:
    """What a re-id ONNX file declares, without opening a session (ModelError when it is not a usable model)."""
    check = inspect_onnx(path)
    try:
        return ReidModelInfo.from_metadata(check.metadata, check.input_hw, check.output_dim), check
    except ValueError as exc:
        raise ModelError(f"re-id model {Path(path).name}: {exc}") from None


class OnnxEmbedder:
    """Batched re-id inference with ONNX Runtime; preprocessing (resize, normalise) in numpy.

    ``precision`` ``auto`` runs half precision on an NVIDIA GPU (twice the arithmetic rate, half the memory
    traffic) once a half-precision copy of the model agrees with the original on crops of the demo clip, and
    full precision on the CPU; ``fp16`` insists (an error if the copy disagrees), ``fp32`` never converts.
    Both precisions keep the model's key: their embeddings are the same space.
    """

    is_fallback = False

    def __init__(self, path: Path, providers: str = "auto", batch_size: int = 32, precision: str = "auto") -> None:
        path = Path(path)
        self.info, check = read_model_info(path)
        tried = candidate_providers(providers)
        if tried != ["CPUExecutionProvider"]:
            preload_gpu_libraries()
        self._run = OrtRunner(_open_session(path, tried))
        self.provider = self._run.provider
        self.requested_providers = tried
        self.path = path
        self.name = path.name
        digest = _file_digest(path)
        self.key = f"{path.stem}:{digest}"
        self.dim = self.info.embedding_dim
        self.match_threshold = self.info.match_threshold
        self._batch = batch_size if check.dynamic_batch else 1
        # One real call up front, so a model that loads but cannot run fails here, not mid-stream.
        probe = self.embed([np.zeros((self.info.input_height, self.info.input_width, 3), np.uint8)])
        if probe.shape != (1, self.dim):
            raise ModelError(f"re-id model {path.name} produced shape {probe.shape}; expected (1, {self.dim})")
        self.precision = "fp32"
        if precision == "fp16" or (precision == "auto" and self._run.on_gpu):
            self._use_half_precision(digest, insist=precision == "fp16")
        log.info("re-id model %s (%s, %d-d) on %s, %s", self.name, self.info.weights, self.dim, self.provider,
                 self.precision.upper())

    def _use_half_precision(self, digest: str, insist: bool) -> None:
        """Switch to the half-precision copy if its embeddings agree with full precision on real crops."""
        crops = _check_crops()
        if not crops:
            problem = f"no demo clip ({demo_clip()}) to check half precision against"
        else:
            full = self.embed(crops)
            copy = half_precision_copy(self.path, digest)
            full_run, self._run = self._run, OrtRunner(_open_session(copy, self.requested_providers, half=True))
            agreement = float(np.min(np.sum(full * self.embed(crops), axis=1)))
            if agreement >= HALF_AGREEMENT:
                self.precision = "fp16"
                return
            self._run = full_run
            problem = (f"its half-precision embeddings agree with full precision only to cosine {agreement:.4f} "
                       f"(at least {HALF_AGREEMENT} needed)")
        if insist:
            raise ModelError(f"re-id model {self.name}: {problem}")
        log.warning("re-id model %s runs in full precision: %s", self.name, problem)

    def _resized(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops -> N x H x W x 3 uint8 at the model's input size."""
        h, w = self.info.input_height, self.info.input_width
        return np.stack([cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR) for crop in crops])

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops -> N x 3 x H x W float32, resized and normalised as the model expects."""
        batch = self._resized(crops).astype(np.float32)
        if self.info.channel_order == "rgb":
            batch = batch[..., ::-1]
        mean, std = self._statistics()
        batch = (batch - mean) / std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's normalisation mean and standard deviation on the pictures' 0..255 scale."""
        return np.asarray(self.info.mean, np.float32) * 255.0, np.asarray(self.info.std, np.float32) * 255.0

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        outputs = []
        for start in range(0, len(crops), self._batch):
            chunk = crops[start:start + self._batch]
            if self._run.uploads_images:  # 8-bit crops to the GPU, normalised there
                mean, std = self._statistics()
                out = self._run.run_images(self._resized(chunk), mean.tolist(), std.tolist(),
                                           rgb=self.info.channel_order == "rgb")
                outputs.append(out.float().cpu().numpy())
            else:
                outputs.append(self._run(self.preprocess(chunk)))
        features = np.concatenate(outputs, axis=0).reshape(len(crops), -1).astype(np.float32)
        if not np.all(np.isfinite(features)):
            raise ModelError(f"re-id model {self.name} produced non-finite embeddings")
        return l2_normalise(features)


# -- hand-crafted fall-back ------------------------------------------------------------------------


class ColorTextureEmbedder:
    """Hand-crafted appearance descriptor for when no neural re-id model is available.

    The crop is resized to 128 x 64, 15 % is trimmed off each side (mostly background) and the rest
    is cut into 6 horizontal stripes (head, torso, legs...). Each stripe contributes a joint HSV
    colour histogram (8 hue x 2 saturation x 2 value bins; low-saturation pixels go to 4 brightness
    bins instead) and a 9-bin gradient-orientation histogram weighted by gradient magnitude
    (texture). Blocks are square-rooted (Hellinger kernel) and the vector L2-normalised:
    6 x (32 + 4 + 9) = 270 dimensions. It captures the colour layout of clothing and little else,
    so it is a stop-gap and the pipeline says so loudly when it is in use.
    """

    is_fallback = True
    provider = "numpy"
    precision = "fp32"
    name = "colour-texture descriptor (fallback)"
    key = "colour-texture-v1"
    STRIPES = 6
    HUE_BINS, SAT_BINS, VAL_BINS, GREY_BINS, ORIENTATION_BINS = 8, 2, 2, 4, 9
    # On real cross-camera re-id crops same-person pairs average about 0.82 and different people 0.70.
    match_threshold = 0.78

    def __init__(self) -> None:
        colour = self.HUE_BINS * self.SAT_BINS * self.VAL_BINS
        self.dim = self.STRIPES * (colour + self.GREY_BINS + self.ORIENTATION_BINS)

    def _describe(self, crop: np.ndarray) -> np.ndarray:
        image = cv2.resize(crop, (64, 128), interpolation=cv2.INTER_AREA)[:, 10:54]
        width = image.shape[1]
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
        nh, ns, nv, ng, no = self.HUE_BINS, self.SAT_BINS, self.VAL_BINS, self.GREY_BINS, self.ORIENTATION_BINS
        orientation = (np.mod(angle, 180.0) * no / 180.0).astype(np.int32).clip(0, no - 1)
        h = (hsv[:, :, 0].astype(np.int32) * nh // 180).clip(0, nh - 1)
        s = (hsv[:, :, 1].astype(np.int32) * ns // 256).clip(0, ns - 1)
        v = (hsv[:, :, 2].astype(np.int32) * nv // 256).clip(0, nv - 1)
        grey = hsv[:, :, 1] < 40
        colour_bin = (h * ns + s) * nv + v
        grey_bin = (hsv[:, :, 2].astype(np.int32) * ng // 256).clip(0, ng - 1)
        parts = []
        edges = np.linspace(0, 128, self.STRIPES + 1).astype(int)
        for top, bottom in itertools.pairwise(edges):
            g = grey[top:bottom]
            pixels = float((bottom - top) * width)
            colour = np.bincount(colour_bin[top:bottom][~g], minlength=nh * ns * nv) / pixels
            achromatic = np.bincount(grey_bin[top:bottom][g], minlength=ng) / pixels
            strokes = np.bincount(orientation[top:bottom].ravel(), weights=magnitude[top:bottom].ravel(),
                                  minlength=no)
            texture = strokes / (float(strokes.sum()) or 1.0)
            parts += [np.sqrt(colour), np.sqrt(achromatic), 0.5 * np.sqrt(texture)]
        return np.concatenate(parts).astype(np.float32)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.stack([self._describe(c) for c in crops]))
