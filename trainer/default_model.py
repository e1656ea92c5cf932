"""The default re-id model: our own ResNet-50 export, built on first use, and the embedder the app starts with.

The default is a ResNet-50 (256 x 128 input, 2048-d global-pooled features) exported to ONNX from
torchvision's ImageNet weights (online) or a ``.pth`` the user points to. Building it needs PyTorch, so
it lives here, above the core, which only loads ONNX files: with neither weights nor PyTorch the app
falls back to the core's colour descriptor and says why (:func:`reid_desktop.core.vision.models.load_embedder`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.vision.embedding import Embedder
from reid_desktop.core.vision.model_info import ReidModelInfo
from reid_desktop.core.vision.models import chosen_reid_model, default_reid_model_path, load_embedder

log = logging.getLogger(__name__)

# ImageNet features are not trained for re-id: people look alike to them, so the bar is high.
# Not calibrated on this machine (no ImageNet weights offline); operators can tune matcher.threshold.
IMAGENET_RESNET50_THRESHOLD = 0.8


def build_default_reid_model(weights: str | None, allow_download: bool, output: Path | None = None) -> Path:
    """Export the default ResNet-50 re-id model to ONNX; raises ``WeightsUnavailable`` when it cannot."""
    # PyTorch is imported only when the model is built: the app starts without it
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


def default_embedder(config: ReidConfig) -> tuple[Embedder, list[str]]:
    """The embedder the app starts with, plus warnings the operator must see: the configured model, else
    the downloaded or imported one chosen as default, else the ImageNet export (built now from the
    ``.pth`` the operator named in ``reid.weights``), else the fallback descriptor with the reason.

    ImageNet weights are never downloaded for this: ImageNet features were not trained to tell people
    apart; a user who can download is offered a re-id-trained model instead (``models download``).
    Weights the operator named that cannot make the model raise :class:`ModelError`.
    """
    if config.model or chosen_reid_model() is not None or default_reid_model_path().exists() or not config.weights:
        return load_embedder(config)
    try:
        from trainer.model import WeightsUnavailable  # PyTorch: a slim install has none
    except ImportError as exc:
        return load_embedder(config, f"PyTorch is not installed ({exc.name})")
    try:
        build_default_reid_model(config.weights, allow_download=False, output=default_reid_model_path())
    except WeightsUnavailable as exc:
        raise ModelError(str(exc)) from None
    return load_embedder(config)
