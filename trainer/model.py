"""The re-id network: a torchvision ResNet-50 backbone with global-average-pooled features."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid_desktop.core.errors import ModelError
from trainer.zoo import FastReidFeatures, fastreid_features, load_tensors, recognise

log = logging.getLogger(__name__)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could be neither downloaded nor read from a file."""


def _backbone_from_file(path: Path) -> tuple[nn.Module, str]:
    """A backbone giving pooled 2048-d features from a weights file, and a description of it: torchvision's
    ImageNet file, a torchreid / BoxMOT resnet50, or any FastReID ResNet-50 (a re-id-trained start)."""
    import torchvision

    try:
        state = load_tensors(path)
    except ModelError as exc:
        raise WeightsUnavailable(f"cannot read weights file {path}: {exc}") from None
    checkpoint = recognise(state)
    if checkpoint is not None and checkpoint.source_format == "fastreid":
        try:
            return fastreid_features(checkpoint), f"fastreid {checkpoint.architecture} ({path.name})"
        except ModelError as exc:
            raise WeightsUnavailable(f"{path.name}: {exc}") from None
    if checkpoint is not None and not checkpoint.architecture.startswith("resnet50"):
        raise WeightsUnavailable(f"{path.name} holds a {checkpoint.source_format} {checkpoint.architecture} network; "
                                 "training starts from a ResNet-50: torchvision's ImageNet file, a torchreid or "
                                 "BoxMOT resnet50, or a FastReID checkpoint")
    imagenet = state.get("fc.weight", torch.empty(0)).shape[:1] == (1000,)  # torchvision's file
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    model = torchvision.models.resnet50(weights=None)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        first = str(exc).strip().splitlines()[-1].strip()
        raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {first}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {len(missing)} missing and "
                                 f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]})")
    model.fc = nn.Identity()
    return model, f"{'imagenet' if imagenet else 'torchreid resnet50'} ({path.name})"


def resnet50_backbone(weights: Path | str | None, allow_download: bool = True) -> tuple[nn.Module, str]:
    """ResNet-50 without its classifier (pooled 2048-d features), and a description of where its weights came from.

    ``weights``: a weights file (see ``_backbone_from_file``), ``"random"`` for an untrained network (tests and training
    from scratch only) or ``None`` for torchvision's ImageNet weights (downloaded once when online).
    """
    import torchvision

    if weights == "random":
        model, source = torchvision.models.resnet50(weights=None), "random (untrained)"
    elif weights:
        return _backbone_from_file(Path(weights))
    else:
        if not allow_download:
            raise WeightsUnavailable("no ImageNet weights file given and downloads are disabled")
        try:
            model = torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
        except Exception as exc:  # offline: URLError, socket errors...
            raise WeightsUnavailable(f"cannot download torchvision's ImageNet weights ({type(exc).__name__}: "
                                     f"{exc})") from None
        source = "imagenet (torchvision IMAGENET1K_V2)"
    model.fc = nn.Identity()
    return model, source


def untrained_backbone_like(state: dict[str, torch.Tensor]) -> nn.Module:
    """An untrained backbone of the shape a trained :class:`ReidNet`'s state holds: torchvision's ResNet-50, or
    FastReID's (IBN-a, non-local blocks, GeM pooling) when training started from such a checkpoint."""
    import torchvision

    ibn = any(".bn1.IN." in k for k in state)
    inter = state["backbone.NL_2.0.g.weight"].shape[0] if "backbone.NL_2.0.g.weight" in state else None
    if ibn or inter or "backbone.pool.p" in state:
        return FastReidFeatures(ibn=ibn, non_local_inter=int(inter) if inter else None,
                                gem="backbone.pool.p" in state)
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    return model


class ReidNet(nn.Module):
    """ResNet-50 re-id network in the "bag of tricks" shape (Luo et al. 2019).

    backbone -> global average pool -> optional reduction to ``embedding_dim`` -> BNNeck -> classifier.
    In training mode ``forward`` returns ``(logits, features)`` where ``features`` are taken before
    the BNNeck (for metric losses); in eval mode it returns the L2-normalised BNNeck features,
    which is what the ONNX export and the app use (cosine similarity = dot product).
    """

    def __init__(self, num_classes: int, backbone: nn.Module, embedding_dim: int = 2048, last_stride: int = 1,
                 bnneck: bool = True) -> None:
        super().__init__()
        if last_stride == 1:  # doubles the last feature map (16x8 for 256x128 input): finer detail for re-id
            block: Any = backbone.layer4[0]  # type: ignore[index]
            block.conv2.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.reduction: nn.Module = nn.Identity() if embedding_dim == 2048 else nn.Linear(2048, embedding_dim)
        self.neck: nn.Module = nn.BatchNorm1d(embedding_dim) if bnneck else nn.Identity()
        if bnneck:
            self.neck.bias.requires_grad_(False)  # no shift: keeps the features centred
        self.classifier = nn.Linear(embedding_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.reduction(self.backbone(images))
        normed = self.neck(features)
        if self.training:
            return self.classifier(normed), features
        return nn.functional.normalize(normed, dim=1)

    def stages(self) -> list[nn.Module]:
        """The backbone's stages from the input on: stem, layer1 .. layer4 (what freezing counts)."""
        b = self.backbone
        return [nn.ModuleList([b.conv1, b.bn1]), b.layer1, b.layer2, b.layer3, b.layer4]  # type: ignore[list-item]

    def freeze_stages(self, count: int) -> None:
        """Freeze the first ``count`` backbone stages (0: train everything; 5: the whole backbone)."""
        for index, stage in enumerate(self.stages()):
            for parameter in stage.parameters():
                parameter.requires_grad_(index >= count)


def build_model(num_classes: int, weights: str, *, embedding_dim: int = 2048, last_stride: int = 1,
                bnneck: bool = True, allow_download: bool = True) -> tuple[ReidNet, str]:
    """``weights``: ``"imagenet"`` (torchvision, downloaded once), a ``.pth`` file, or ``"random"``."""
    backbone, source = resnet50_backbone(None if weights == "imagenet" else weights, allow_download)
    return ReidNet(num_classes, backbone, embedding_dim, last_stride, bnneck), source
