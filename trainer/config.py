"""Training options: one dataclass, every field with a help line, used by the CLI, the GUI tab and Optuna.

Defaults follow the study this project grew from: ResNet-50 on Market-1501, SGD, batch 16,
learning rate 0.09 (best Rank-1 82.6 / mAP 60.2; 0.2 diverged), 60 epochs with the learning
rate cut 10x after epoch 40.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _opt(default: Any, help: str, *, choices: tuple[str, ...] | None = None, min: float | None = None,
         max: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "min": min, "max": max})


@dataclass
class TrainConfig:
    data: str = _opt("", "Data set folder: Market-1501, MARS-style or one folder per identity")
    output: str = _opt("", "Run folder for checkpoints, logs and the exported model (default: runs/<time>)")
    # optimisation
    epochs: int = _opt(60, "Training epochs", min=1)
    batch_size: int = _opt(16, "Images per batch (the study: 16 best, 8 collapsed, larger faster but worse)", min=2)
    instances_per_identity: int = _opt(4, "K of the P x K sampler used with the triplet loss", min=2)
    lr: float = _opt(0.09, "Learning rate (the study: 0.09 best for SGD at batch 16; 0.2 diverged)", min=0.0)
    optimizer: str = _opt("sgd", "Optimiser (AdamW: use lr about 3e-4)", choices=("sgd", "adamw"))
    momentum: float = _opt(0.9, "SGD momentum", min=0.0, max=1.0)
    weight_decay: float = _opt(5e-4, "Weight decay (AdamW usually 0.01)", min=0.0)
    schedule: str = _opt("step", "Learning-rate schedule", choices=("step", "cosine", "cosine_restarts", "constant"))
    milestones: str = _opt("40", "Step schedule: comma-separated epochs after which the rate is multiplied by gamma")
    gamma: float = _opt(0.1, "Step schedule: factor at each milestone", min=0.0, max=1.0)
    restart_period: int = _opt(10, "Cosine with warm restarts: epochs of the first cycle (T_0)", min=1)
    restart_mult: int = _opt(1, "Cosine with warm restarts: cycle length multiplier (T_mult)", min=1)
    min_lr: float = _opt(1e-6, "Cosine schedules: lowest learning rate (eta_min)", min=0.0)
    warmup_epochs: int = _opt(0, "Linear warm-up from lr/10 over this many epochs", min=0)
    # model
    weights: str = _opt("imagenet", "Backbone start: 'imagenet' (torchvision, needs internet once), a .pth file, "
                                    "or 'random' (flagged: far worse)")
    embedding_dim: int = _opt(2048, "Embedding size (2048: no reduction layer)", min=16)
    last_stride: int = _opt(1, "Stride of ResNet's last stage (1: finer features, the re-id default)", min=1, max=2)
    bnneck: bool = _opt(True, "BatchNorm neck between features and classifier")
    freeze_stages: int = _opt(0, "Freeze the first N backbone stages (stem, layer1..4; 5 = whole backbone)",
                              min=0, max=5)
    freeze_epochs: int = _opt(0, "Unfreeze them after this many epochs (0: frozen for the whole run)", min=0)
    # losses
    ce_weight: float = _opt(1.0, "Weight of the label-smoothed cross-entropy loss", min=0.0)
    label_smoothing: float = _opt(0.1, "Label smoothing of the cross-entropy loss", min=0.0, max=0.99)
    triplet_weight: float = _opt(1.0, "Weight of the batch-hard triplet loss (0: off)", min=0.0)
    triplet_margin: float = _opt(0.3, "Triplet margin", min=0.0)
    arcface_weight: float = _opt(0.0, "Weight of the ArcFace loss (0: off)", min=0.0)
    # data
    height: int = _opt(256, "Input height", min=32)
    width: int = _opt(128, "Input width", min=16)
    flip: bool = _opt(True, "Augment: random horizontal flip")
    random_erasing: bool = _opt(True, "Augment: random erasing")
    color_jitter: bool = _opt(False, "Augment: colour jitter")
    grayscale: bool = _opt(False, "Augment: random grayscale")
    posterize: bool = _opt(False, "Augment: random posterize")
    equalize: bool = _opt(False, "Augment: random equalize")
    workers: int = _opt(2, "DataLoader worker processes", min=0)
    # machine and run
    device: str = _opt("auto", "'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1'")
    amp: bool = _opt(True, "Mixed precision on GPU (ignored on CPU)")
    channels_last: bool = _opt(True, "channels_last memory format on GPU (ignored on CPU)")
    seed: int = _opt(0, "Random seed (same seed, same data order and initialisation)")
    eval_every: int = _opt(5, "Evaluate Rank-k/mAP every N epochs (and after the last)", min=1)
    max_steps_per_epoch: int = _opt(0, "Cap steps per epoch (0: the whole data set; for quick trials)", min=0)
    divergence_factor: float = _opt(10.0, "Stop when the loss exceeds this multiple of its starting level", min=1.0)
    allow_download: bool = _opt(True, "Let torchvision download the ImageNet weights")

    def milestone_epochs(self) -> list[int]:
        try:
            return sorted(int(v) for v in self.milestones.replace(" ", "").split(",") if v)
        except ValueError:
            raise ValueError(f"milestones must be comma-separated epochs, got {self.milestones!r}") from None

    def validate(self) -> TrainConfig:
        """Check types, ranges and choices; raise ValueError naming the option."""
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = hints[f.name]
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{f.name}: expected true or false, got {value!r}")
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{f.name}: expected a number, got {value!r}")
            lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"{f.name}: {value} is outside [{lo}, {hi if hi is not None else 'inf'}]")
            if choices and value not in choices:
                raise ValueError(f"{f.name}: {value!r} is not one of {', '.join(choices)}")
        self.milestone_epochs()
        if self.batch_size % self.instances_per_identity and self.triplet_weight:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of instances_per_identity "
                             f"{self.instances_per_identity} for the triplet loss's P x K batches")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**values).validate()

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per field, with its help and default (``--no-flip`` style for booleans)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                                help=f.metadata["help"], metavar=None if f.metadata.get("choices") else f.name.upper())


def from_arguments(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values.update(fixed)
    return TrainConfig.from_dict(values)
