"""The re-id network: a torchvision ResNet-50 backbone with global-average-pooled features."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid_desktop.core.errors import ModelError
from trainer.zoo import load_tensors, recognise

log = logging.getLogger(__name__)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could be neither downloaded nor read from a file."""


def _load_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A plain ResNet-50's tensors from torchvision's ImageNet file, a torchreid / BoxMOT resnet50 or a
    FastReID BoT(R50) checkpoint (re-id-trained starts), and a description of them."""
    try:
        state = load_tensors(path)
    except ModelError as exc:
        raise WeightsUnavailable(f"cannot read weights file {path}: {exc}") from None
    checkpoint = recognise(state)
    architecture = checkpoint.architecture if checkpoint is not None else "resnet50"  # else: let the load say
    if architecture == "bot-r50":
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        return state, f"fastreid bot-r50 ({path.name})"
    if architecture in ("resnet50", "resnet50_fc512"):
        imagenet = state.get("fc.weight", torch.empty(0)).shape[:1] == (1000,)  # torchvision's file
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
        return state, f"{'imagenet' if imagenet else 'torchreid resnet50'} ({path.name})"
    raise WeightsUnavailable(f"{path.name} holds a {checkpoint.source_format} {architecture} network; "  # type: ignore[union-attr]
                             "training starts from a plain ResNet-50: torchvision's ImageNet file, a torchreid or "
                             "BoxMOT resnet50, or a FastReID BoT(R50) checkpoint")


def resnet50_backbone(weights: Path | str | None, allow_download: bool = True) -> tuple[nn.Module, str]:
    """ResNet-50 without its classifier, and a description of where its weights came from.

    ``weights``: a ``.pth`` state dict, ``"random"`` for an untrained network (tests and training
    from scratch only) or ``None`` for torchvision's ImageNet weights (downloaded once when online).
    """
    import torchvision

    if weights == "random":
        model, source = torchvision.models.resnet50(weights=None), "random (untrained)"
    elif weights:
        path = Path(weights)
        model = torchvision.models.resnet50(weights=None)
        state, source = _load_state_dict(path)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            first = str(exc).strip().splitlines()[-1].strip()
            raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {first}") from None
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {len(missing)} missing and "
                                     f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]})")
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
