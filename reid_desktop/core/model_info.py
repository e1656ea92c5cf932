"""What a re-id ONNX file says about itself: the hand-off format between the trainer and the app.

The trainer writes these keys into the ONNX ``metadata_props``; the app reads them and never
guesses from file names. Files without them (third-party models) get the input size from the
graph's input shape and ImageNet mean/std.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFIX = "reid."
# Cosine similarity that links a track to an identity when the model does not recommend one.
GENERIC_MATCH_THRESHOLD = 0.6


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
    metrics: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ``onnx.ModelProto.metadata_props``."""
        out = {}
        for key, value in asdict(self).items():
            out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_metadata(cls, props: dict[str, str], input_hw: tuple[int, int] | None,
                      output_dim: int | None) -> ReidModelInfo:
        """Read our keys where present; fall back to the graph's shapes and ImageNet statistics."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            raw = props.get(PREFIX + name)
            if raw is None:
                continue
            if name in ("channel_order", "architecture", "weights", "dataset", "created"):
                values[name] = raw
            else:
                values[name] = json.loads(raw)
        for name in ("mean", "std"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        if "input_height" not in values or "input_width" not in values:
            if input_hw is None:
                raise ValueError("the model states no input size: neither metadata nor a fixed input shape")
            values["input_height"], values["input_width"] = input_hw
        if "embedding_dim" not in values:
            if output_dim is None:
                raise ValueError("the model states no embedding size: neither metadata nor a fixed output shape")
            values["embedding_dim"] = output_dim
        return cls(**values)
