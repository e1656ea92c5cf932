"""Choosing the re-id model: the one configured, else the one downloaded or imported and chosen, else the
ImageNet ResNet-50 export where it has been built.

The core only loads ONNX files; the default is built by ``trainer.default_model`` (it needs PyTorch).
Without it the pipeline must not quietly run an untrained network: it falls back to the hand-crafted
:class:`ColorTextureEmbedder` and says so in the log and in every run's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import models_dir
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, Embedder, OnnxEmbedder
from reid_desktop.core.vision.model_catalogue import RECOMMENDED

log = logging.getLogger(__name__)

DEFAULT_REID_FILENAME = "resnet50_imagenet_reid.onnx"
CHOSEN_FILENAME = "default-reid.txt"  # names the downloaded or imported model the app runs by default
NOT_BUILT = "no re-id model is installed"


def default_reid_model_path() -> Path:
    """The ImageNet ResNet-50 export: the default only until a re-id-trained model is chosen."""
    return models_dir() / DEFAULT_REID_FILENAME


def chosen_reid_model() -> Path | None:
    """The model ``choose_reid_model`` made the default (a file in the models folder), if it still exists."""
    try:
        name = (models_dir() / CHOSEN_FILENAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = models_dir() / Path(name).name  # only ever a file of the models folder
    return path if name and path.is_file() else None


def choose_reid_model(path: Path) -> None:
    """Make ``path`` (a model in the models folder) what runs when no model is configured."""
    if Path(path).resolve().parent != models_dir().resolve():
        raise ModelError(f"{path} is not in the models folder {models_dir()}")
    marker = models_dir() / CHOSEN_FILENAME
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(Path(path).name + "\n", encoding="utf-8")
    tmp.replace(marker)


FALLBACK_WARNING = (
    "NO NEURAL RE-ID MODEL: {why}. Using the hand-crafted colour-texture descriptor instead; "
    "cross-camera identities will be much less reliable. Fix: run "
    f"'reid-desktop models download {RECOMMENDED}' (a re-id-trained ResNet-50; Models > Get a re-id model... "
    "in the window), import a checkpoint with 'reid-desktop models import FILE', or pass --reid-model MODEL.onnx."
)


def load_embedder(config: ReidConfig, default_missing_because: str = NOT_BUILT) -> tuple[Embedder, list[str]]:
    """The embedder the configuration asks for, plus warnings the operator must see.

    An explicitly configured model that is broken raises :class:`ModelError`; only the implicit
    default may fall back to the colour descriptor (``default_missing_because`` says why it is missing:
    building it is the trainer's job, see ``trainer.default_model``).
    """
    if config.model:
        return OnnxEmbedder(Path(config.model), config.providers, config.batch_size, config.precision), []
    chosen = chosen_reid_model()
    if chosen is not None:
        try:
            return OnnxEmbedder(chosen, config.providers, config.batch_size, config.precision), []
        except ModelError as exc:
            log.warning("the chosen re-id model %s is unusable (%s); using the previous default", chosen.name, exc)
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
