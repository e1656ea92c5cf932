"""Choosing and building the re-id model.

The default is our own ResNet-50 export (256 x 128 input, 2048-d global-pooled features) built
from torchvision's ImageNet weights (online) or a ``.pth`` the user points to. With neither, the
pipeline must not quietly run an untrained network: it falls back to the hand-crafted
:class:`ColorTextureEmbedder` and says so in the log and in every run's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder
from reid_desktop.core.errors import ModelError
from reid_desktop.core.model_info import ReidModelInfo
from reid_desktop.core.paths import models_dir

log = logging.getLogger(__name__)

DEFAULT_REID_FILENAME = "resnet50_imagenet_reid.onnx"
# ImageNet features are not trained for re-id: people look alike to them, so the bar is high.
# Not calibrated on this machine (no ImageNet weights offline); operators can tune matcher.threshold.
IMAGENET_RESNET50_THRESHOLD = 0.8


def default_reid_model_path() -> Path:
    return models_dir() / DEFAULT_REID_FILENAME


def build_default_reid_model(weights: str | None, allow_download: bool, output: Path | None = None) -> Path:
    """Export the default ResNet-50 re-id model to ONNX; raises ``WeightsUnavailable`` when it cannot."""
    from trainer.export import export_onnx, parity
    from trainer.model import resnet50_backbone

    model, source = resnet50_backbone(weights or None, allow_download=allow_download)
    info = ReidModelInfo(
        input_height=256, input_width=128, embedding_dim=2048,
        architecture="resnet50-gap", weights=source,
        match_threshold=IMAGENET_RESNET50_THRESHOLD,
    )
    path = export_onnx(model, info, output or default_reid_model_path())
    diff = parity(model, path)
    log.info("exported %s (%s); max |torch - onnxruntime| = %.2e", path, source, diff)
    if diff > 1e-3:
        path.unlink(missing_ok=True)
        raise ModelError(f"the exported re-id model disagrees with PyTorch (max abs diff {diff:.2e})")
    return path


FALLBACK_WARNING = (
    "NO NEURAL RE-ID MODEL: {why}. Using the hand-crafted colour-texture descriptor instead; "
    "cross-camera identities will be much less reliable. Fix: run "
    "'reid-desktop models build-default --weights resnet50.pth' (ImageNet ResNet-50 weights) "
    "or pass --reid-model MODEL.onnx."
)


def load_embedder(config: ReidConfig) -> tuple[Embedder, list[str]]:
    """The embedder the configuration asks for, plus warnings the operator must see.

    An explicitly configured model that is broken raises :class:`ModelError`; only the implicit
    default may fall back to the colour descriptor.
    """
    if config.model:
        return OnnxEmbedder(Path(config.model), config.providers, config.batch_size), []
    path = default_reid_model_path()
    why = ""
    if not path.exists():
        try:
            from trainer.model import WeightsUnavailable

            try:
                build_default_reid_model(config.weights or None, config.allow_download, path)
            except WeightsUnavailable as exc:
                if config.weights:
                    raise ModelError(str(exc)) from None
                why = str(exc)
        except ImportError as exc:  # PyTorch missing from a slim install
            why = f"PyTorch is not installed ({exc.name})"
    if path.exists():
        try:
            return OnnxEmbedder(path, config.providers, config.batch_size), []
        except ModelError as exc:
            why = f"the default model is unusable ({exc})"
    warning = FALLBACK_WARNING.format(why=why)
    log.warning(warning)
    return ColorTextureEmbedder(), [warning]
