"""Choosing the re-id model: the one configured, or the default ResNet-50 export where it has been built.

The core only loads ONNX files; the default is built by ``trainer.default_model`` (it needs PyTorch).
Without it the pipeline must not quietly run an untrained network: it falls back to the hand-crafted
:class:`ColorTextureEmbedder` and says so in the log and in every run's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder
from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import models_dir

log = logging.getLogger(__name__)

DEFAULT_REID_FILENAME = "resnet50_imagenet_reid.onnx"
NOT_BUILT = "the default model has not been built"


def default_reid_model_path() -> Path:
    return models_dir() / DEFAULT_REID_FILENAME


FALLBACK_WARNING = (
    "NO NEURAL RE-ID MODEL: {why}. Using the hand-crafted colour-texture descriptor instead; "
    "cross-camera identities will be much less reliable. Fix: run "
    "'reid-desktop models build-default --weights resnet50.pth' (ImageNet ResNet-50 weights) "
    "or pass --reid-model MODEL.onnx."
)


def load_embedder(config: ReidConfig, default_missing_because: str = NOT_BUILT) -> tuple[Embedder, list[str]]:
    """The embedder the configuration asks for, plus warnings the operator must see.

    An explicitly configured model that is broken raises :class:`ModelError`; only the implicit
    default may fall back to the colour descriptor (``default_missing_because`` says why it is missing:
    building it is the trainer's job, see ``trainer.default_model``).
    """
    if config.model:
        return OnnxEmbedder(Path(config.model), config.providers, config.batch_size, config.precision), []
    path = default_reid_model_path()
    why = default_missing_because
    if path.exists():
        try:
            return OnnxEmbedder(path, config.providers, config.batch_size, config.precision), []
        except ModelError as exc:
            why = f"the default model is unusable ({exc})"
    warning = FALLBACK_WARNING.format(why=why)
    log.warning(warning)
    return ColorTextureEmbedder(), [warning]
