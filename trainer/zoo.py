"""Re-id checkpoints of the ecosystem (FastReID, torchreid, BoxMOT) as plain PyTorch networks.

Each network here is rebuilt module for module with the parameter names of the project that trained
it, so a checkpoint loads with ``strict=True`` (a wrong architecture fails loudly instead of running
half-initialised, as a name-and-shape filter would let it). Sources read for the layouts:

- FastReID v0.1.1 (the release the model zoo's files come from): ``fastreid/modeling/backbones/resnet.py``,
  ``fastreid/layers/{batch_norm.py (IBN), non_local.py, pooling.py (GeneralizedMeanPoolingP)}``,
  ``fastreid/modeling/heads/bnneck_head.py`` (inference returns the BN-neck feature).
- torchreid: ``torchreid/models/resnet.py`` (resnet50, resnet50_fc512), ``torchreid/models/osnet.py``,
  ``torchreid/models/osnet_ain.py``. BoxMOT's ``.pt`` re-id weights are torchreid's files renamed.

Every network takes images normalised with ImageNet mean/std (what the app feeds) and returns
L2-normalised embeddings, so the app's cosine similarity is a dot product.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from reid_desktop.core.errors import ModelError

FORMATS = ("fastreid", "torchreid", "boxmot")
OSNET_WIDTHS = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}
OSNET_CHANNELS = {"x1_0": (64, 256, 384, 512), "x0_75": (48, 192, 288, 384), "x0_5": (32, 128, 192, 256),
                  "x0_25": (16, 64, 96, 128)}
# training-only tensors a checkpoint carries that inference does not use
_FASTREID_UNUSED = re.compile(r"^(heads\.classifier\..*|heads\.weight|pixel_mean|pixel_std)$")
_TORCHREID_UNUSED = re.compile(r"^classifier\..*$")


@dataclass(frozen=True)
class ZooCheckpoint:
    """A checkpoint read and recognised: its tensors, who made it and which network it needs."""

    state: dict[str, torch.Tensor]
    source_format: str  # "fastreid" | "torchreid"
    architecture: str  # "bot-r50", "sbs-r50-ibn", "resnet50", "resnet50_fc512", "osnet_x0_25", "osnet_ain_x1_0", ...

    @property
    def input_size(self) -> tuple[int, int]:
        return (384, 128) if self.architecture.startswith("sbs") else (256, 128)


# ----------------------------------------------------------------------------- reading and recognising


def read_checkpoint(path: Path, source_format: str | None = None) -> ZooCheckpoint:
    """Load ``path`` (tensors only: pickled code is refused) and recognise its layout from its keys."""
    if source_format is not None and source_format not in FORMATS:
        raise ModelError(f"unknown checkpoint format {source_format!r}; choose from {', '.join(FORMATS)}")
    state = load_tensors(path)
    detected = recognise(state)
    if detected is None:
        raise ModelError(f"{Path(path).name} is not a FastReID, torchreid or BoxMOT re-id checkpoint "
                         f"(first keys: {', '.join(list(state)[:3])})")
    if source_format not in (None, detected.source_format) \
            and not (source_format == "boxmot" and detected.source_format == "torchreid"):
        raise ModelError(f"{Path(path).name} has the layout of a {detected.source_format} checkpoint, "
                         f"not {source_format}")
    return detected


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, whatever project wrapped them (ModelError for anything else)."""
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{Path(path).name} is not a readable PyTorch checkpoint of tensors ({first[:160]})") from None
    state = _state_dict(raw)
    if state is None:
        raise ModelError(f"{Path(path).name} holds no state dict of tensors")
    return state


def recognise(state: dict[str, torch.Tensor]) -> ZooCheckpoint | None:
    """Which project's network these tensors belong to, from their names and shapes; None if none known."""
    detected = _detect(state)
    return ZooCheckpoint(state, *detected) if detected is not None else None


def _state_dict(raw: object) -> dict[str, torch.Tensor] | None:
    """The tensors of a checkpoint: FastReID's ``{"model": ...}``, torchreid's ``{"state_dict": ...}`` or bare."""
    if isinstance(raw, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping):
        return None
    state = {str(k).removeprefix("module."): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    return state or None


def _detect(state: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    if "backbone.conv1.weight" in state and any(k.startswith("heads.") for k in state):
        ibn = "-ibn" if any(k.endswith("bn1.IN.weight") for k in state) else ""
        kind = "sbs" if any(k.startswith("backbone.NL_") for k in state) or "heads.pool_layer.p" in state else "bot"
        return "fastreid", f"{kind}-r50{ibn}"
    if "conv1.conv.weight" in state:  # OSNet family
        width = OSNET_WIDTHS.get(int(state["conv1.conv.weight"].shape[0]))
        if width is None:
            return None
        if "conv2.0.conv2.0.layers.0.conv1.weight" in state:
            return "torchreid", f"osnet_ain_{width}"
        ibn = "ibn_" if "conv1.bn.running_mean" not in state else ""
        return "torchreid", f"osnet_{ibn}{width}"
    if "layer4.2.conv3.weight" in state and "layer1.0.conv1.weight" in state:
        return "torchreid", "resnet50_fc512" if "fc.0.weight" in state else "resnet50"
    return None


# ----------------------------------------------------------------------------- FastReID ResNet-50


class IBN(nn.Module):
    """Instance-batch normalisation (IBN-a): instance norm on the first half of the channels."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.instance_channels = planes // 2
        self.IN = nn.InstanceNorm2d(self.instance_channels, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.instance_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.instance_channels, x.shape[1] - self.instance_channels], 1)
        return torch.cat((self.IN(first.contiguous()), self.BN(second.contiguous())), 1)


class NonLocal(nn.Module):
    """FastReID's non-local block: dot-product attention divided by the number of positions, no softmax."""

    def __init__(self, channels: int, inter: int) -> None:
        super().__init__()
        self.inter = inter
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = self.g(x).view(b, self.inter, -1).permute(0, 2, 1)
        theta = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi = self.phi(x).view(b, self.inter, -1)
        f = theta @ phi
        y = ((f / f.shape[-1]) @ g).permute(0, 2, 1).contiguous().view(b, self.inter, h, w)
        return self.W(y) + x


class GeneralizedMeanPooling(nn.Module):
    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * 3)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


class FastReidBackbone(nn.Module):
    # after which blocks of layer2 / layer3 the non-local blocks sit (FastReID: the last 2 and the last 3)
    NL_AFTER: ClassVar[dict[str, tuple[int, ...]]] = {"NL_2": (2, 3), "NL_3": (3, 4, 5)}

    def __init__(self, ibn: bool, non_local_inter: int | None) -> None:
        import torchvision  # deferred: importing it sets torch's cache variables in the environment

        super().__init__()
        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        _last_stride_one(self.layer4)
        if ibn:  # layer4 keeps plain batch norm
            for layer in (self.layer1, self.layer2, self.layer3):
                for block in layer:
                    block.bn1 = IBN(block.bn1.num_features)
        inter = non_local_inter
        self.NL_2 = nn.ModuleList([NonLocal(512, inter) for _ in self.NL_AFTER["NL_2"]] if inter else [])
        self.NL_3 = nn.ModuleList([NonLocal(1024, inter) for _ in self.NL_AFTER["NL_3"]] if inter else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        for layer, blocks, after in ((self.layer2, self.NL_2, self.NL_AFTER["NL_2"]),
                                     (self.layer3, self.NL_3, self.NL_AFTER["NL_3"])):
            for index, block in enumerate(layer):
                x = block(x)
                if len(blocks) and index in after:
                    x = blocks[after.index(index)](x)
        return self.layer4(x)


class FastReidFeatures(FastReidBackbone):
    """FastReID's backbone and pooling alone: pooled 2048-d features, the trainer's re-id-trained start."""

    def __init__(self, ibn: bool, non_local_inter: int | None, gem: bool) -> None:
        super().__init__(ibn, non_local_inter)
        self.pool: nn.Module = GeneralizedMeanPooling() if gem else nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(super().forward(x)).flatten(1)


class FastReidHeads(nn.Module):
    def __init__(self, gem: bool) -> None:
        super().__init__()
        self.pool_layer: nn.Module = GeneralizedMeanPooling() if gem else nn.AdaptiveAvgPool2d(1)
        self.bnneck = nn.BatchNorm2d(2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bnneck(self.pool_layer(x)).flatten(1)


class FastReidNet(nn.Module):
    """BoT / SBS ResNet-50 (optionally IBN-a): backbone, pooling, BN neck; the BN-neck feature at inference."""

    def __init__(self, ibn: bool, non_local_inter: int | None, gem: bool) -> None:
        super().__init__()
        self.backbone = FastReidBackbone(ibn, non_local_inter)
        self.heads = FastReidHeads(gem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.heads(self.backbone(x)), dim=1)


def _last_stride_one(layer4: nn.Sequential) -> None:
    block: Any = layer4[0]
    block.conv2.stride = (1, 1)
    block.downsample[0].stride = (1, 1)


# ----------------------------------------------------------------------------- torchreid ResNet-50


class TorchreidResNet(nn.Module):
    """torchreid's resnet50 (last stride 2, 2048-d pooled feature) or resnet50_fc512 (last stride 1, 512-d)."""

    def __init__(self, fc512: bool) -> None:
        import torchvision  # deferred, as above

        super().__init__()
        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        if fc512:
            _last_stride_one(self.layer4)
        self.fc: nn.Module | None = (nn.Sequential(nn.Linear(2048, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
                                     if fc512 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        v = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.fc is not None:
            v = self.fc(v)
        return F.normalize(v, dim=1)


# ----------------------------------------------------------------------------- torchreid OSNet


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 instance_norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn: nn.Module = nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(ConvLayer):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 1)


class Conv1x1Linear(nn.Module):
    def __init__(self, cin: int, cout: int, bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn: nn.Module | None = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class LightConv3x3(nn.Module):
    """Point-wise then depth-wise 3 x 3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * w


class OSBlock(nn.Module):
    """Omni-scale block: four streams of 1-4 light convolutions, one shared channel gate, a residual."""

    def __init__(self, cin: int, cout: int, instance_norm: bool = False) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1 = Conv1x1(cin, mid)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, cout)
        self.downsample = Conv1x1Linear(cin, cout) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if instance_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        streams = [stream(x1) for stream in (self.conv2a, self.conv2b, self.conv2c, self.conv2d)]  # then the gates,
        x2 = sum(self.gate(s) for s in streams)  # as torchreid orders it (the export's order, see tests)
        out = self.conv3(x2) + (self.downsample(x) if self.downsample is not None else x)
        if self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


class AinBlock(nn.Module):
    """OSNet-AIN's block: the streams in a ModuleList; ``instance_norm`` replaces conv3's BN by an IN (OSBlockINin)."""

    def __init__(self, cin: int, cout: int, instance_norm: bool) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1 = Conv1x1(cin, mid)
        self.conv2 = nn.ModuleList(_Stream(mid, depth) for depth in range(1, 5))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, cout, bn=not instance_norm)
        self.downsample = Conv1x1Linear(cin, cout) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if instance_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x3 = self.conv3(sum(self.gate(stream(x1)) for stream in self.conv2))
        if self.IN is not None:
            x3 = self.IN(x3)
        return F.relu(x3 + (self.downsample(x) if self.downsample is not None else x))


class _Stream(nn.Module):
    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(LightConv3x3(channels, channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OSNet(nn.Module):
    """torchreid's OSNet (``ain=False``; ``ibn`` adds instance norm to the stem and the first stage) or OSNet-AIN."""

    def __init__(self, width: str, ibn: bool = False, ain: bool = False) -> None:
        super().__init__()
        c0, c1, c2, c3 = OSNET_CHANNELS[width]
        self.conv1 = ConvLayer(3, c0, 7, stride=2, padding=3, instance_norm=ibn or ain)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        transition2 = nn.Sequential(Conv1x1(c1, c1), nn.AvgPool2d(2, stride=2))
        transition3 = nn.Sequential(Conv1x1(c2, c2), nn.AvgPool2d(2, stride=2))
        self.pool2: nn.Module | None = None
        self.pool3: nn.Module | None = None
        if ain:
            self.conv2 = nn.Sequential(AinBlock(c0, c1, True), AinBlock(c1, c1, True))
            self.pool2 = transition2
            self.conv3 = nn.Sequential(AinBlock(c1, c2, False), AinBlock(c2, c2, True))
            self.pool3 = transition3
            self.conv4 = nn.Sequential(AinBlock(c2, c3, True), AinBlock(c3, c3, False))
        else:
            self.conv2 = nn.Sequential(OSBlock(c0, c1, ibn), OSBlock(c1, c1, ibn), transition2)
            self.conv3 = nn.Sequential(OSBlock(c1, c2), OSBlock(c2, c2), transition3)
            self.conv4 = nn.Sequential(OSBlock(c2, c3), OSBlock(c3, c3))
        self.conv5 = Conv1x1(c3, c3)
        self.fc = nn.Sequential(nn.Linear(c3, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv2(x)
        if self.pool2 is not None:
            x = self.pool2(x)
        x = self.conv3(x)
        if self.pool3 is not None:
            x = self.pool3(x)
        x = self.conv5(self.conv4(x))
        return F.normalize(self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), dim=1)


# ----------------------------------------------------------------------------- building


def fastreid_features(checkpoint: ZooCheckpoint) -> FastReidFeatures:
    """The backbone and pooling of a FastReID checkpoint, weights loaded strictly, for fine-tuning."""
    state = checkpoint.state
    gem = "heads.pool_layer.p" in state
    features = FastReidFeatures(ibn=checkpoint.architecture.endswith("-ibn"), non_local_inter=_non_local_inter(state),
                                gem=gem)
    wanted = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if gem:
        wanted["pool.p"] = state["heads.pool_layer.p"]
    _load_strictly(features, wanted, checkpoint.architecture)
    return features


def _non_local_inter(state: Mapping[str, torch.Tensor]) -> int | None:
    """Channels inside FastReID's non-local blocks (1, by a quirk of its code), read from the weights."""
    return int(state["backbone.NL_2.0.g.weight"].shape[0]) if "backbone.NL_2.0.g.weight" in state else None


def _load_strictly(model: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ModelError(f"the checkpoint does not fit {architecture}: {' '.join(lines[1:3])[:300]}") from None


def build_network(checkpoint: ZooCheckpoint) -> nn.Module:
    """The network ``checkpoint`` was trained as, with its weights loaded strictly (ModelError on a mismatch)."""
    arch, state = checkpoint.architecture, dict(checkpoint.state)
    if checkpoint.source_format == "fastreid":
        for key in [k for k in state if k.startswith("heads.bottleneck.0.")]:  # FastReID after v0.1.1
            state["heads.bnneck." + key.removeprefix("heads.bottleneck.0.")] = state.pop(key)
        model: nn.Module = FastReidNet(ibn=arch.endswith("-ibn"), non_local_inter=_non_local_inter(state),
                                       gem="heads.pool_layer.p" in state)
        unused = _FASTREID_UNUSED
    elif arch.startswith("resnet50"):
        model, unused = TorchreidResNet(fc512=arch == "resnet50_fc512"), _TORCHREID_UNUSED
    else:
        width = arch.rsplit("_", 2)[-2] + "_" + arch.rsplit("_", 1)[-1]
        model = OSNet(width, ibn="_ibn_" in arch, ain="_ain_" in arch)
        unused = _TORCHREID_UNUSED
    _load_strictly(model, {k: v for k, v in state.items() if not unused.match(k)}, arch)
    return model.eval()
