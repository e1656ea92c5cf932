"""What a re-id ONNX file says about itself: the hand-off format between the trainer and the app.

The trainer writes these keys into the ONNX ``metadata_props``; the app reads them and never
guesses from file names. Files without them (third-party models) get the input size from the
graph's input shape and ImageNet mean/std.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFIX = "reid."
# Cosine similarity that links a track to an identity when the model does not recommend one.
GENERIC_MATCH_THRESHOLD = 0.6
# What a re-id model may declare: anything outside is a damaged or hostile file, not a model to run
# (a declared 100000 x 100000 input would allocate gigabytes per crop).
MAX_INPUT_SIDE = 1024
MAX_EMBEDDING_DIM = 65536
_TEXT_FIELDS = ("channel_order", "architecture", "weights", "dataset", "created", "licence")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ReidModelInfo:
    """Input geometry and normalisation of a re-id model, plus where it came from."""

    input_height: int
    input_width: int
    embedding_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "rgb"
    architecture: str = "unknown"
    weights: str = "unknown"  # e.g. "imagenet (torchvision)", "market1501 fine-tuned", "random"
    match_threshold: float = GENERIC_MATCH_THRESHOLD
    dataset: str = ""
    created: str = ""
    licence: str = ""  # the terms of the weights (trained on research data sets), shown before use
    metrics: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse values no real model has, with the key that is wrong (ValueError)."""
        for name in ("input_height", "input_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= MAX_INPUT_SIDE:
                raise ValueError(f"{name} must be a whole number of pixels from 8 to {MAX_INPUT_SIDE}, not {value!r}")
        if not isinstance(self.embedding_dim, int) or isinstance(self.embedding_dim, bool) \
                or not 1 <= self.embedding_dim <= MAX_EMBEDDING_DIM:
            raise ValueError(f"embedding_dim must be a whole number from 1 to {MAX_EMBEDDING_DIM}, "
                             f"not {self.embedding_dim!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3 or not all(_finite(v) for v in value):
                raise ValueError(f"{name} must be three finite numbers, not {value!r}")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"std must be positive, not {self.std!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', not {self.channel_order!r}")
        if not _finite(self.match_threshold) or not 0.0 < self.match_threshold <= 1.0:
            raise ValueError(f"match_threshold must be a cosine similarity in (0, 1], not {self.match_threshold!r}")
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be text, not {getattr(self, name)!r}")
        if not isinstance(self.metrics, dict) or not all(isinstance(k, str) and _finite(v)
                                                         for k, v in self.metrics.items()):
            raise ValueError("metrics must map names to finite numbers")
        if not isinstance(self.hyperparameters, dict):
            raise ValueError("hyperparameters must be a table of values")

    @property
    def imagenet_only(self) -> bool:
        """ImageNet features (never trained to tell people apart): worth replacing by a re-id model."""
        return self.weights.startswith("imagenet") and not self.dataset

    def describe(self) -> str:
        """What an operator needs to know about the model: what it is, what it learnt from, how good it was."""
        parts = [self.architecture if self.architecture != "unknown" else "re-id model"]
        if self.dataset:
            parts.append(f"trained on {self.dataset}")
        elif self.imagenet_only:
            parts.append("ImageNet features, not trained for re-id")
        figures = [f"{label} {self.metrics[key]:.1%}" for key, label in (("rank1", "Rank-1"), ("mAP", "mAP"))
                   if key in self.metrics]
        if figures:
            parts.append(", ".join(figures))
        return "; ".join(parts)

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ``onnx.ModelProto.metadata_props``."""
        out = {}
        for key, value in asdict(self).items():
            out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_metadata(cls, props: dict[str, str], input_hw: tuple[int, int] | None,
                      output_dim: int | None) -> ReidModelInfo:
        """Read our keys where present; fall back to the graph's shapes and ImageNet statistics.

        Anything malformed raises ValueError naming the key (never TypeError, never a model that breaks later).
        """
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            raw = props.get(PREFIX + name)
            if raw is None:
                continue
            if name in _TEXT_FIELDS:
                values[name] = raw
                continue
            try:
                values[name] = json.loads(raw)
            except ValueError:
                raise ValueError(f"metadata {PREFIX}{name} is not valid JSON: {raw[:40]!r}") from None
        for name in ("mean", "std"):
            if name in values:
                values[name] = tuple(values[name]) if isinstance(values[name], list) else values[name]
        if "input_height" not in values or "input_width" not in values:
            if input_hw is None:
                raise ValueError("the model states no input size: neither metadata nor a fixed input shape")
            values["input_height"], values["input_width"] = input_hw
        if "embedding_dim" not in values:
            if output_dim is None:
                raise ValueError("the model states no embedding size: neither metadata nor a fixed output shape")
            values["embedding_dim"] = output_dim
        return cls(**values)
