"""The re-id network: a torchvision ResNet-50 backbone with global-average-pooled features."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could be neither downloaded nor read from a file."""


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailable(f"cannot read weights file {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"weights file {path} holds no state dict")
    return state


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
        state = _load_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            first = str(exc).strip().splitlines()[-1].strip()
            raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {first}") from None
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsUnavailable(f"{path.name} does not fit ResNet-50: {len(missing)} missing and "
                                     f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]})")
        source = f"imagenet ({path.name})"
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
