"""Re-id models the app knows by name: where to get them, what they are and what they were measured at.

Like Ultralytics' model hub: ``reid-desktop models download NAME`` fetches one, verifies it, converts it
to the app's ONNX format and makes it the default. The entries are FastReID's published ResNet-50
checkpoints (``MODEL_ZOO.md`` of JDAI-CV/fast-reid, release v0.1.1): figures are the project's own,
measured on each data set's test split, single query, no re-ranking.

FastReID publishes no checksums, so entries carry none: the first download that converts and passes
the parity check is pinned (its sha256 kept in the models folder) and every later download of that
name must match it. Entries pinned from a verified download can set ``sha256`` here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import models_dir
from reid_desktop.core.vision.downloads import SHA256_PATTERN
from reid_desktop.core.vision.model_info import IMAGENET_MEAN, IMAGENET_STD

LICENCE_NOTE = (
    "These weights were trained by the FastReID authors (Apache-2.0 code) on a research data set "
    "({dataset}) whose terms allow research use only; check that your use is allowed before downloading. "
    "The images of the data set are not downloaded, only the trained network."
)
FASTREID_RELEASE = "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/"
DATASETS = {"market": "Market-1501", "duke": "DukeMTMC-reID", "msmt": "MSMT17"}
# The default for users who can download: MSMT17 is the largest and most varied of the three (15 cameras,
# indoor and outdoor, four days of weather), and IBN-a layers were made for appearance that changes between
# domains; BoT keeps the 256 x 128 input, so it costs what the ImageNet ResNet-50 cost.
RECOMMENDED = "fastreid-msmt-bot-r50-ibn"


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    url: str
    source_format: str  # how to read the checkpoint: "fastreid" | "torchreid"
    architecture: str  # what the converter builds: "bot-r50", "bot-r50-ibn", "sbs-r50", "sbs-r50-ibn", ...
    dataset: str
    rank1: float  # published, in %
    mAP: float
    embedding_dim: int = 2048
    input_height: int = 256
    input_width: int = 128
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sha256: str | None = None  # None: none published; pinned on the first verified download
    size_bytes: int | None = None  # None: not published; the server's Content-Length is used

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def licence(self) -> str:
        return LICENCE_NOTE.format(dataset=self.dataset)

    @property
    def figures(self) -> str:
        return f"Rank-1 {self.rank1:.1f} %, mAP {self.mAP:.1f} % on {self.dataset} (published)"

    def describe(self) -> str:
        return f"{self.architecture} trained on {self.dataset}; {self.figures}"


def _fastreid(prefix: str, kind: str, ibn: bool, rank1: float, mean_ap: float) -> CatalogueEntry:
    suffix = "-ibn" if ibn else ""
    return CatalogueEntry(
        name=f"fastreid-{prefix}-{kind}-r50{suffix}", url=f"{FASTREID_RELEASE}{prefix}_{kind}_R50{suffix}.pth",
        source_format="fastreid", architecture=f"{kind}-r50{suffix}", dataset=DATASETS[prefix],
        rank1=rank1, mAP=mean_ap, input_height=384 if kind == "sbs" else 256)


CATALOGUE: tuple[CatalogueEntry, ...] = (
    _fastreid("market", "bot", False, 94.4, 86.1),
    _fastreid("market", "bot", True, 94.9, 87.6),
    _fastreid("market", "sbs", False, 95.4, 88.2),
    _fastreid("market", "sbs", True, 95.7, 89.3),
    _fastreid("duke", "bot", False, 87.2, 77.0),
    _fastreid("duke", "bot", True, 89.3, 79.6),
    _fastreid("duke", "sbs", False, 90.3, 80.3),
    _fastreid("duke", "sbs", True, 90.8, 81.2),
    _fastreid("msmt", "bot", False, 74.1, 50.2),
    _fastreid("msmt", "bot", True, 77.0, 54.4),
    _fastreid("msmt", "sbs", False, 81.8, 58.4),
    _fastreid("msmt", "sbs", True, 83.9, 60.6),
)


def entry(name: str) -> CatalogueEntry:
    """The catalogue entry called ``name`` (ModelError listing the names when there is none)."""
    for candidate in CATALOGUE:
        if candidate.name == name:
            return candidate
    raise ModelError(f"no model called {name!r}; the catalogue has: {', '.join(e.name for e in CATALOGUE)}")


def installed_path(name: str) -> Path:
    """Where the converted model of catalogue entry ``name`` lives."""
    return models_dir() / f"{name}.onnx"


def _pins_path() -> Path:
    return models_dir() / "pins.json"


def pinned_sha256(item: CatalogueEntry) -> str | None:
    """The entry's checksum: the catalogue's, else the one pinned by this machine's first verified download."""
    if item.sha256:
        return item.sha256
    try:
        pins = json.loads(_pins_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = pins.get(item.name) if isinstance(pins, dict) else None
    return value if isinstance(value, str) and SHA256_PATTERN.fullmatch(value) else None


def pin_sha256(item: CatalogueEntry, digest: str) -> None:
    """Remember the checksum of a download that converted and passed the parity check."""
    path = _pins_path()
    try:
        pins = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pins = {}
    pins = pins if isinstance(pins, dict) else {}
    pins[item.name] = digest
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(pins, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
