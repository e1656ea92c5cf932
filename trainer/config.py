"""Training options: one dataclass, every field with a help line, used by the CLI, the GUI tab and Optuna.

Defaults follow the study this project grew from: ResNet-50 on Market-1501, SGD, batch 16,
learning rate 0.09 (best Rank-1 82.6 / mAP 60.2; 0.2 diverged), 60 epochs with the learning
rate cut 10x after epoch 40.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_desktop.core import options
from reid_desktop.core.options import ConfigError, option


def milestone_epochs(text: str) -> list[int]:
    """``"40, 60"`` -> ``[40, 60]``; ValueError for anything else."""
    try:
        return sorted(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"milestones must be comma-separated epochs, got {text!r}") from None


@dataclass
class TrainConfig:
    data: str = option("", "Data set folder: Market-1501, MARS-style or one folder per identity")
    output: str = option("", "Run folder for checkpoints, logs and the exported model (default: runs/<time>)")
    # optimisation
    epochs: int = option(60, "Training epochs", min=1)
    batch_size: int = option(16, "Images per batch (the study: 16 best, 8 collapsed, larger faster but worse)", min=2)
    instances_per_identity: int = option(4, "K of the P x K sampler used with the triplet loss", min=2,
                                         label="Images per identity (K)")
    lr: float = option(0.09, "Learning rate (the study: 0.09 best for SGD at batch 16; 0.2 diverged)", min=0.0,
                       label="Learning rate")
    optimizer: str = option("sgd", "Optimiser (AdamW: use lr about 3e-4)", choices=("sgd", "adamw"))
    momentum: float = option(0.9, "SGD momentum", min=0.0, max=1.0)
    weight_decay: float = option(5e-4, "Weight decay (AdamW usually 0.01)", min=0.0)
    schedule: str = option("step", "Learning-rate schedule", choices=("step", "cosine", "cosine_restarts", "constant"))
    milestones: str = option("40", "Step schedule: comma-separated epochs after which the rate is multiplied by gamma",
                             parse=milestone_epochs)
    gamma: float = option(0.1, "Step schedule: factor at each milestone", min=0.0, max=1.0)
    restart_period: int = option(10, "Cosine with warm restarts: epochs of the first cycle (T_0)", min=1)
    restart_mult: int = option(1, "Cosine with warm restarts: cycle length multiplier (T_mult)", min=1)
    min_lr: float = option(1e-6, "Cosine schedules: lowest learning rate (eta_min)", min=0.0)
    warmup_epochs: int = option(0, "Linear warm-up from lr/10 over this many epochs", min=0)
    # model
    weights: str = option("imagenet", "Backbone start: 'imagenet' (torchvision, needs internet once), a .pth file "
                                    "(torchvision ImageNet, torchreid/BoxMOT resnet50 or any FastReID ResNet-50: "
                                    "a re-id-trained start), or 'random' (flagged: far worse)", aliases=("init",))
    embedding_dim: int = option(2048, "Embedding size (2048: no reduction layer)", min=16)
    last_stride: int = option(1, "Stride of ResNet's last stage (1: finer features, the re-id default)", min=1, max=2)
    bnneck: bool = option(True, "BatchNorm neck between features and classifier")
    freeze_stages: int = option(0, "Freeze the first N backbone stages (stem, layer1..4; 5 = whole backbone)",
                              min=0, max=5)
    freeze_epochs: int = option(0, "Unfreeze them after this many epochs (0: frozen for the whole run)", min=0)
    # losses
    ce_weight: float = option(1.0, "Weight of the label-smoothed cross-entropy loss", min=0.0,
                              label="Cross-entropy weight")
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy loss", min=0.0, max=0.99)
    triplet_weight: float = option(1.0, "Weight of the batch-hard triplet loss (0: off)", min=0.0,
                                   label="Triplet weight")
    triplet_margin: float = option(0.3, "Triplet margin", min=0.0)
    arcface_weight: float = option(0.0, "Weight of the ArcFace loss (0: off)", min=0.0, label="ArcFace weight")
    # data
    height: int = option(256, "Input height", min=32)
    width: int = option(128, "Input width", min=16)
    flip: bool = option(True, "Augment: random horizontal flip")
    random_erasing: bool = option(True, "Augment: random erasing")
    color_jitter: bool = option(False, "Augment: colour jitter")
    grayscale: bool = option(False, "Augment: random grayscale")
    posterize: bool = option(False, "Augment: random posterize")
    equalize: bool = option(False, "Augment: random equalize")
    workers: int = option(2, "DataLoader worker processes", min=0)
    # machine and run
    device: str = option("auto", "'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1'")
    amp: bool = option(True, "Mixed precision on GPU (ignored on CPU)")
    channels_last: bool = option(True, "channels_last memory format on GPU (ignored on CPU)")
    seed: int = option(0, "Random seed (same seed, same data order and initialisation)")
    eval_every: int = option(5, "Evaluate Rank-k/mAP every N epochs (and after the last)", min=1,
                             label="Evaluate every (epochs)")
    max_steps_per_epoch: int = option(0, "Cap steps per epoch (0: the whole data set; for quick trials)", min=0,
                                      label="Max steps per epoch")
    divergence_factor: float = option(10.0, "Stop when the loss exceeds this multiple of its starting level", min=1.0)
    allow_download: bool = option(True, "Let torchvision download the ImageNet weights")

    def milestone_epochs(self) -> list[int]:
        return milestone_epochs(self.milestones)

    def validate(self) -> TrainConfig:
        """Check types, ranges and choices; raise ValueError (:class:`ConfigError`) naming the option."""
        for s in options.settings_of(TrainConfig):
            options.coerce(s.name, s, getattr(self, s.name))
        if self.batch_size % self.instances_per_identity and self.triplet_weight:
            raise ConfigError(f"batch_size {self.batch_size} must be a multiple of instances_per_identity "
                              f"{self.instances_per_identity} for the triplet loss's P x K batches")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return options.replace(cls(), values).validate()

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per field, with its help and default (``--no-flip`` style for booleans)."""
    options.add_flags(parser, TrainConfig, skip=skip)


def from_arguments(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    return TrainConfig.from_dict({**options.flag_values(args, TrainConfig), **fixed})
