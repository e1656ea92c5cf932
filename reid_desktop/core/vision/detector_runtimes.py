"""Faster runtimes for the same detector: ONNX Runtime and OpenVINO exports, full, half and 8-bit precision.

The PyTorch checkpoint stays the reference. An export is made once per model, image size, runtime and
precision, cached in the user's data folder, and checked against the reference on frames of the demo
clip before it is used: its boxes must agree with the checkpoint's (:data:`MIN_AGREEMENT`). The check
also measures its speed on this machine, so ``auto`` picks the fastest runtime that passed here.
INT8 models are calibrated on other frames of the same clip; the detection head stays in full precision
(as Ultralytics does), the usual source of INT8 loss in YOLO models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from reid_desktop.core.capture.sources import read_frames
from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import demo_clip, models_dir, shipped_detectors_dir
from reid_desktop.core.types import Detections, PreparedPicture
from reid_desktop.core.vision.detection import (
    Detector,
    YoloDetector,
    bundled_detector_path,
    prepare_ultralytics,
)
from reid_desktop.core.vision.letterbox import letterbox, letterbox_batches, letterbox_bytes, model_input
from reid_desktop.core.vision.ort_runner import OrtRunner, candidate_providers, provider_options, save_half_precision

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
MIN_AGREEMENT = 0.9  # share of the reference's confident people an export must find, and vice versa
CHECK_FRAMES = 8
CALIBRATION_FRAMES = 24
SOURCE_EXPORT = "source.onnx"
RUNTIME_LABELS = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
                  "tensorrt": "TensorRT"}


@dataclass(frozen=True)
class Variant:
    """One way of running the detector: a runtime and the precision of its arithmetic."""

    runtime: str
    precision: str

    @property
    def label(self) -> str:
        return f"{RUNTIME_LABELS[self.runtime]} {self.precision.upper()}"

    @property
    def key(self) -> str:
        return f"{self.runtime}-{self.precision}"


REFERENCE = Variant("pytorch", "fp32")


@dataclass(frozen=True)
class CheckRecord:
    """What the check of one export found, kept next to it (``check.json``)."""

    runtime: str
    precision: str
    agreement: float
    frames_per_s: float
    reference_frames_per_s: float
    machine: str
    checked_at: float

    @property
    def variant(self) -> Variant:
        return Variant(self.runtime, self.precision)

    @property
    def passed(self) -> bool:
        return self.agreement >= MIN_AGREEMENT


def machine_signature() -> str:
    """Speeds measured on another machine (a copied data folder) do not count for ``auto``."""
    import onnxruntime as ort

    gpu = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() and _cuda_available() else "cpu"
    return f"{platform.machine()} {platform.processor() or _cpu_model()} {gpu}"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text(errors="replace"))
        if found:
            return found.group(1).strip()
    return "unknown cpu"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _openvino_half_type() -> str | None:
    """The reduced precision this CPU computes natively (bf16 or f16), or None."""
    try:
        import openvino as ov
    except ImportError:
        return None
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f16" if "FP16" in capabilities else None


def candidates() -> list[Variant]:
    """The variants worth measuring on this machine, the reference first."""
    if _cuda_available():
        usable = candidate_providers("auto")
        found = [Variant("pytorch", "fp16")]
        if "CUDAExecutionProvider" in usable:
            found.append(Variant("onnxruntime", "fp16"))
        if "TensorrtExecutionProvider" in usable:  # the provider is listed even where TensorRT is not installed
            found.append(Variant("tensorrt", "fp16"))  # INT8 there needs a calibration table: not offered yet
        return [REFERENCE, *found]
    found = [REFERENCE, Variant("onnxruntime", "fp32"), Variant("onnxruntime", "int8")]
    if importlib.util.find_spec("openvino") is None:  # not in the installer bundles yet
        return found
    found.append(Variant("openvino", "fp32"))
    if importlib.util.find_spec("nncf") is not None:
        found.append(Variant("openvino", "int8"))
    if _openvino_half_type():
        found.append(Variant("openvino", "fp16"))
    return found


FASTEST_FIRST = ("tensorrt", "openvino", "onnxruntime", "pytorch")  # the usual order of speed, per runtime
PRECISION_FIRST = ("fp16", "int8", "fp32")


def fastest_first(variants: Sequence[Variant]) -> list[Variant]:
    """The likeliest fastest first, so a preparation that is interrupted, or runs beside busy cameras, has made the
    one that matters most (measured speeds decide what ``auto`` runs; this only orders the work)."""
    return sorted(variants, key=lambda v: (FASTEST_FIRST.index(v.runtime), PRECISION_FIRST.index(v.precision)))


class DetectorCache:
    """The exports of one checkpoint at one image size: ``models/detectors/<name>-<digest>/<imgsz>/<variant>/``."""

    def __init__(self, checkpoint: Path, imgsz: int, root: Path | None = None, shipped: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.imgsz = imgsz
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
        where = Path(f"{checkpoint.stem}-{digest}") / str(imgsz)
        self.folder = (root or models_dir() / "detectors") / where
        self.shipped_source = (shipped or shipped_detectors_dir()) / where / SOURCE_EXPORT  # a packaged build's

    def model_path(self, variant: Variant) -> Path:
        name = "model.xml" if variant.runtime == "openvino" else "model.onnx"
        return self.folder / variant.key / name

    def record(self, variant: Variant) -> CheckRecord | None:
        path = self.folder / variant.key / "check.json"
        try:
            return CheckRecord(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def records(self) -> list[CheckRecord]:
        return [r for r in (self.record(v) for v in candidates()) if r is not None]

    def unprepared(self) -> list[Variant]:
        """The variants with no check made on this machine (never prepared, interrupted, or a copied data folder)."""
        here = machine_signature()
        return [v for v in candidates() if (r := self.record(v)) is None or r.machine != here
                or (v.runtime != "pytorch" and not self.model_path(v).exists())]

    def fastest(self) -> CheckRecord | None:
        """The fastest variant that passed its check on this machine, if any was prepared."""
        here = machine_signature()
        usable = [r for r in self.records() if r.passed and r.machine == here]
        return max(usable, key=lambda r: r.frames_per_s, default=None)

    def prepare(self, variant: Variant, config: DetectorConfig, progress: Progress = log.info) -> CheckRecord:
        """Export (if not cached), check against the checkpoint and measure; the record is kept either way."""
        config = replace(config, confidence=min(config.confidence, 0.05))  # see every box the agreement looks at
        reference = YoloDetector(_reference_config(config, self.checkpoint))
        check_frames, calibration = sample_frames()
        if variant.runtime != "pytorch" and not self.model_path(variant).exists():  # PyTorch runs the checkpoint
            progress(f"exporting the detector for {variant.label} at {self.imgsz} px")
            self._export(variant, calibration, progress)
        progress(f"checking {variant.label} against the original on {len(check_frames)} frames")
        candidate = load_variant(variant, config, self) if variant != REFERENCE else reference
        expected = reference.detect(check_frames)
        got = [candidate.detect([frame])[0] for frame in check_frames]
        record = CheckRecord(variant.runtime, variant.precision, round(agreement(expected, got), 4),
                             round(frames_per_second(candidate, check_frames), 2),
                             round(frames_per_second(reference, check_frames), 2), machine_signature(), time.time())
        folder = self.folder / variant.key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "check.json").write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
        return record

    def _export(self, variant: Variant, calibration: list[np.ndarray], progress: Progress) -> None:
        target = self.model_path(variant).parent
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            work = Path(tmp)
            onnx_path = Path(shutil.copy(self.source_export(progress), work / SOURCE_EXPORT))
            out = work / "out"
            out.mkdir()
            if variant.runtime in ("onnxruntime", "tensorrt"):
                if variant.precision == "int8" and variant.runtime == "onnxruntime":
                    progress(f"calibrating INT8 on {len(calibration)} frames of the demo clip")
                    _quantize_onnx(onnx_path, out / "model.onnx", self._batch(calibration))
                elif variant.precision == "fp16" and variant.runtime == "onnxruntime":
                    save_half_precision(onnx_path, out / "model.onnx")
                else:  # TensorRT builds its own reduced-precision engine from the full-precision graph
                    shutil.copy(onnx_path, out / "model.onnx")
            else:
                _export_openvino(onnx_path, out / "model.xml", self._batch(calibration) if variant.precision == "int8"
                                 else None, progress)
            shutil.rmtree(target, ignore_errors=True)
            out.replace(target)

    def source_export(self, progress: Progress = log.info) -> Path:
        """The Ultralytics ONNX export (dynamic batch) of the checkpoint, which every variant starts from. It is the
        same on every machine, so it is made once per checkpoint and size and kept, or taken from a packaged build
        that ships it (only the machine's own conversions and checks are left for a first start)."""
        kept = self.folder / SOURCE_EXPORT
        if kept.is_file():
            return kept
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            if self.shipped_source.is_file():
                progress(f"taking the ONNX export of {self.checkpoint.name} shipped with this build")
                made = Path(shutil.copy(self.shipped_source, Path(tmp) / SOURCE_EXPORT))
            else:
                progress(f"exporting {self.checkpoint.name} to ONNX at {self.imgsz} px")
                made = self._export_checkpoint(Path(tmp))
            made.replace(kept)  # whole or not at all
        return kept

    def _export_checkpoint(self, work: Path) -> Path:
        prepare_ultralytics()
        from ultralytics import YOLO
        from ultralytics.utils import LOGGER

        copy = work / self.checkpoint.name
        shutil.copy(self.checkpoint, copy)
        level = LOGGER.level
        LOGGER.setLevel(logging.WARNING)  # the export's banner and hints are not for the operator
        try:
            exported = YOLO(str(copy)).export(format="onnx", imgsz=self.imgsz, dynamic=True, simplify=True,
                                              verbose=False)
        except Exception as exc:
            raise ModelError(f"cannot export detector {self.checkpoint.name} to ONNX: {exc}") from None
        finally:
            LOGGER.setLevel(level)
        return Path(exported)

    def _batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return [letterbox(frame, self.imgsz)[0] for frame in frames]


def export_for_shipping(root: Path, imgsz: int) -> Path:
    """The bundled detector's ONNX export at ``imgsz`` under ``root``, laid out as a packaged build ships it
    (:func:`~reid_desktop.core.paths.shipped_detectors_dir`); returns the file."""
    return DetectorCache(bundled_detector_path(), imgsz, root=root, shipped=root).source_export()


def _reference_config(config: DetectorConfig, checkpoint: Path) -> DetectorConfig:
    return replace(config, model=str(checkpoint), runtime="pytorch", precision="fp32")


def sample_frames() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check frames and calibration frames, evenly spread over the demo clip and never the same."""
    frames = read_frames(str(demo_clip()))
    if len(frames) < CHECK_FRAMES + CALIBRATION_FRAMES:
        raise ModelError(f"the demo clip {demo_clip()} is missing or too short to check a detector export")
    picks = np.linspace(0, len(frames) - 1, CHECK_FRAMES + CALIBRATION_FRAMES).astype(int)
    check = [frames[i] for i in picks[1::4]][:CHECK_FRAMES]
    calibration = [frames[i] for n, i in enumerate(picks) if n % 4 != 1]
    return check, calibration


def frames_per_second(detector: Detector, frames: Sequence[np.ndarray]) -> float:
    detector.detect([frames[0]])  # warm-up: first calls allocate and compile
    start = time.perf_counter()
    for frame in frames:
        detector.detect([frame])
    return len(frames) / (time.perf_counter() - start)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (xyxy in the first four columns)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _found(wanted: np.ndarray, offered: np.ndarray, confident: float = 0.3, present: float = 0.05) -> tuple[int, int]:
    """How many of ``wanted``'s confident boxes have a box of ``offered`` (any score above ``present``)
    covering them at IoU 0.5; scores near a threshold move a little between runtimes, people should not."""
    want = wanted[wanted[:, 4] >= confident]
    offer = offered[offered[:, 4] >= present]
    if not len(want):
        return 0, 0
    if not len(offer):
        return 0, len(want)
    return int((box_iou(want, offer).max(axis=1) >= 0.5).sum()), len(want)


def agreement(reference: Sequence[Detections], candidate: Sequence[Detections]) -> float:
    """The smaller of: the share of the reference's people the candidate finds, and the converse."""
    found_ref = [_found(r.boxes, c.boxes) for r, c in zip(reference, candidate, strict=True)]
    found_cand = [_found(c.boxes, r.boxes) for r, c in zip(reference, candidate, strict=True)]
    shares = [sum(f for f, _ in pairs) / sum(n for _, n in pairs) for pairs in (found_ref, found_cand)
              if sum(n for _, n in pairs)]
    return min(shares, default=1.0)  # nobody confident on either side: nothing to disagree about


def _head_scope(names: Sequence[str]) -> str:
    """The name prefix of the detection head: the highest-numbered ``/model.N/`` module of the export."""
    indices = [int(m.group(1)) for n in names if (m := re.search(r"/model\.(\d+)/", n))]
    return f"/model.{max(indices)}/" if indices else "/model.none/"


def _quantize_onnx(source: Path, target: Path, calibration: list[np.ndarray]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Frames(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self._items = iter([{name: image[None]} for image in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    def not_the_preprocessing_hint(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")  # ...(to run) pre-processing before quantization

    graph = onnx.load(str(source)).graph
    head = _head_scope([n.name for n in graph.node])
    root = logging.getLogger()  # ONNX Runtime's quantizer logs its hint on the root logger
    root.addFilter(not_the_preprocessing_hint)
    try:
        quantize_static(str(source), str(target), Frames(graph.input[0].name), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        nodes_to_exclude=[n.name for n in graph.node if n.name.startswith(head)])
    finally:
        root.removeFilter(not_the_preprocessing_hint)


def _export_openvino(source: Path, target: Path, calibration: list[np.ndarray] | None, progress: Progress) -> None:
    import openvino as ov

    model = ov.convert_model(str(source))
    if calibration is not None:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on import
        import nncf

        nncf.set_log_level(logging.ERROR)
        progress(f"calibrating INT8 on {len(calibration)} frames of the demo clip")
        head = _head_scope([op.get_friendly_name() for op in model.get_ordered_ops()])
        scope = nncf.IgnoredScope(names=[op.get_friendly_name() for op in model.get_ordered_ops()
                                         if op.get_friendly_name().startswith(head)], validate=False)
        model = nncf.quantize(model, nncf.Dataset([image[None] for image in calibration]),
                              preset=nncf.QuantizationPreset.MIXED, ignored_scope=scope,
                              subset_size=len(calibration))
    ov.save_model(model, str(target), compress_to_fp16=False)


class ExportedDetector:
    """A cached export run by ONNX Runtime or OpenVINO: letterbox, one call for all images, Ultralytics' NMS."""

    def __init__(self, path: Path, variant: Variant, config: DetectorConfig, metadata: dict[str, Any]) -> None:
        self.config = config
        self.variant = variant
        self.path = path
        self.name = f"{metadata['stem']} ({variant.label})"
        self.has_keypoints = metadata["kpt_shape"] is not None
        self._kpt_shape = metadata["kpt_shape"]
        self._classes = metadata["person_classes"]
        self._nc = metadata["nc"]
        self._infer = _session(path, variant)
        self._runner = self._infer if isinstance(self._infer, OrtRunner) else None
        self.device = self._runner.device if self._runner else "cpu"

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.detect_sized(images, [self.config.imgsz] * len(images))

    def detect_sized(self, images: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Detections]:
        return self._detect(images, sizes, ())

    def prepare(self, image: np.ndarray) -> PreparedPicture:
        """The letterboxed picture, made on a reader thread (nothing of the detector is touched)."""
        return PreparedPicture(self.config.imgsz, letterbox_bytes(image, self.config.imgsz))

    def detect_prepared(self, images: Sequence[np.ndarray],
                        prepared: Sequence[PreparedPicture | None]) -> list[Detections]:
        return self._detect(images, [self.config.imgsz] * len(images), prepared)

    def _detect(self, images: Sequence[np.ndarray], sizes: Sequence[int],
                prepared: Sequence[PreparedPicture | None]) -> list[Detections]:
        """One inference call per input shape: cameras of one resolution share a batch. On a GPU the 8-bit
        pictures travel and the model's output stays there for NMS; only the kept boxes come back."""
        import torch

        out: list[Detections] = [Detections.empty()] * len(images)
        for positions, batch in letterbox_batches(images, sizes, prepared):
            if self._runner is not None and self._runner.uploads_images:
                raw = self._runner.run_images(batch, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), rgb=True)
            else:
                raw = torch.from_numpy(self._infer(model_input(batch)))
            for p, dets in zip(positions, self._postprocess(raw, batch.shape[1:3],
                                                            [images[p].shape for p in positions]), strict=True):
                out[p] = dets
        return out

    def _postprocess(self, raw: Any, input_hw: tuple[int, ...], shapes: list[tuple[int, ...]]) -> list[Detections]:
        """Ultralytics' NMS and rescaling on ``raw`` (a torch tensor, on whichever device it is)."""
        prepare_ultralytics()
        from ultralytics.utils import ops
        from ultralytics.utils.nms import non_max_suppression

        kept = non_max_suppression(raw.float(), self.config.confidence, self.config.iou,
                                   classes=self._classes, nc=self._nc)
        out = []
        input_size = (int(input_hw[0]), int(input_hw[1]))
        for shape, found in zip(shapes, kept, strict=True):
            original = (int(shape[0]), int(shape[1]))
            boxes = found[:, :6].clone()
            boxes[:, :4] = ops.scale_boxes(input_size, boxes[:, :4], original)
            keypoints = None
            if self._kpt_shape is not None and len(found):
                keypoints = ops.scale_coords(input_size, found[:, 6:].view(len(found), *self._kpt_shape).clone(),
                                             original).cpu().numpy().astype(np.float32)
            out.append(Detections(boxes.cpu().numpy().astype(np.float32).reshape(-1, 6), keypoints))
        return out


def _session(path: Path, variant: Variant) -> Callable[[np.ndarray], np.ndarray]:
    """The inference call of an export (an :class:`OrtRunner` for ONNX Runtime); precision is set here, not left
    to defaults."""
    if variant.runtime == "openvino":
        import openvino as ov

        hint = {"fp32": "f32", "int8": "f32", "fp16": _openvino_half_type() or "f32"}[variant.precision]
        try:
            compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                   "INFERENCE_PRECISION_HINT": hint})
        except RuntimeError as exc:
            raise ModelError(f"cannot load detector export {path}: {str(exc).splitlines()[0]}") from None
        return lambda batch: np.asarray(compiled(batch)[0])
    import onnxruntime as ort

    providers: list[Any] = ["CPUExecutionProvider"]
    if variant.runtime == "tensorrt":
        providers = [("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                    "trt_engine_cache_path": str(path.parent)}),
                     *provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"])]
    elif variant.precision == "fp16":
        providers = provider_options(["CUDAExecutionProvider", "CPUExecutionProvider"])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise ModelError(f"cannot load detector export {path}: {str(exc).splitlines()[0]}") from None
    return OrtRunner(session)


def _metadata(checkpoint: Path, config: DetectorConfig) -> dict[str, Any]:
    """What the postprocessing needs to know about the checkpoint: its keypoints and person classes."""
    reference = YoloDetector(_reference_config(config, checkpoint))
    model = reference.model
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    kpt_shape = getattr(model.model.model[-1], "kpt_shape", None) if reference.has_keypoints else None
    return {"stem": checkpoint.stem, "kpt_shape": list(kpt_shape) if kpt_shape else None,
            "person_classes": reference.person_classes, "nc": len(names)}


def load_variant(variant: Variant, config: DetectorConfig, cache: DetectorCache) -> Detector:
    if variant.runtime == "pytorch":
        return YoloDetector(replace(config, model=str(cache.checkpoint), runtime="pytorch",
                                    precision=variant.precision))
    path = cache.model_path(variant)
    if not path.exists():
        raise ModelError(f"the {variant.label} export of {cache.checkpoint.name} has not been prepared")
    return ExportedDetector(path, variant, config, _metadata(cache.checkpoint, config))


def checkpoint_of(config: DetectorConfig) -> Path | None:
    """The PyTorch checkpoint the runtimes export from; None for a model that is already an export."""
    path = Path(config.model) if config.model else bundled_detector_path()
    return path if path.suffix.lower() == ".pt" else None


def make_detector(config: DetectorConfig, progress: Progress = log.info) -> Detector:
    """The detector the configuration asks for.

    ``auto`` takes the fastest variant already prepared and checked on this machine (``reid-desktop models
    prepare-detector``), else PyTorch; a named runtime is prepared now if it has not been (a minute or so).
    A variant that fails its check is refused with the agreement it reached.
    """
    checkpoint = checkpoint_of(config)
    if checkpoint is None or config.runtime == "pytorch" or not checkpoint.is_file():
        return YoloDetector(config)  # which says what is wrong with a checkpoint that is not there
    cache = DetectorCache(checkpoint, config.imgsz)
    if config.runtime == "auto":
        best = cache.fastest()
        if best is None:
            return YoloDetector(config)
        try:
            return load_variant(best.variant, config, cache)
        except ModelError as exc:  # a damaged cache must not stop the cameras: the checkpoint always works
            log.warning("%s; running the detector in PyTorch (prepare the runtimes again to fix it)", exc)
            return YoloDetector(config)
    variant = Variant(config.runtime, config.precision)
    offered = candidates()
    if variant not in offered:
        raise ModelError(f"the detector cannot run as {variant.label} on this machine (TensorRT and half-precision "
                         f"ONNX Runtime need an NVIDIA GPU); it can run as: {', '.join(v.label for v in offered)}")
    record = cache.record(variant)
    if record is None or not cache.model_path(variant).exists():
        record = cache.prepare(variant, config, progress)
    if not record.passed:
        raise ModelError(f"the {variant.label} detector export finds only {record.agreement:.0%} of the people the "
                         f"original finds (at least {MIN_AGREEMENT:.0%} needed); choose another runtime or precision")
    return load_variant(variant, config, cache)
