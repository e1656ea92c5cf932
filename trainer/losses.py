"""Re-id training losses: label-smoothed cross-entropy plus metric losses from pytorch-metric-learning.

Batch-hard triplet (the hardest positive and negative of each anchor in a P x K batch) and ArcFace
come from pytorch-metric-learning rather than being written here; this module only weighs and
combines them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LossWeights:
    cross_entropy: float = 1.0
    label_smoothing: float = 0.1
    triplet: float = 1.0
    triplet_margin: float = 0.3
    arcface: float = 0.0
    arcface_margin_deg: float = 28.6
    arcface_scale: float = 64.0

    def __post_init__(self) -> None:
        if min(self.cross_entropy, self.triplet, self.arcface) < 0:
            raise ValueError("loss weights cannot be negative")
        if self.cross_entropy == self.triplet == self.arcface == 0:
            raise ValueError("at least one loss needs a weight above 0")


class ReidLoss(nn.Module):
    """Weighted sum of the enabled losses; also returns each part for the plots.

    ArcFace owns a learnable class-centre matrix, so this module's parameters must be optimised
    along with the network's.
    """

    def __init__(self, weights: LossWeights, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        from pytorch_metric_learning import losses, miners

        self.weights = weights
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=weights.label_smoothing)
        self.triplet = losses.TripletMarginLoss(margin=weights.triplet_margin) if weights.triplet else None
        self.miner = miners.BatchHardMiner() if weights.triplet else None
        self.arcface = (losses.ArcFaceLoss(num_classes, embedding_dim, margin=weights.arcface_margin_deg,
                                           scale=weights.arcface_scale) if weights.arcface else None)

    @property
    def needs_identity_batches(self) -> bool:
        """Triplet mining needs several images of each identity in a batch (P x K sampling)."""
        return self.triplet is not None

    def forward(self, logits: torch.Tensor, features: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        if self.weights.cross_entropy:
            parts["cross_entropy"] = self.weights.cross_entropy * self.cross_entropy(logits.float(), labels)
        if self.triplet is not None and self.miner is not None:
            features32 = features.float()
            parts["triplet"] = self.weights.triplet * self.triplet(features32, labels, self.miner(features32, labels))
        if self.arcface is not None:
            parts["arcface"] = self.weights.arcface * self.arcface(features.float(), labels)
        total = torch.stack(list(parts.values())).sum()
        return total, {name: float(value.detach()) for name, value in parts.items()}
