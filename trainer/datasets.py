"""Re-id data sets on disk: Market-1501, MARS and one folder per identity, checked and split.

`load_dataset` finds the layout, parses identities, cameras and tracklets from the file names and
splits the test side into query and gallery so that every query can be scored under the Market-1501
protocol (a match must come from another camera). Files it cannot use are listed in ``problems`` and
skipped; a set that cannot train or evaluate at all raises `DatasetError`.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from reid_desktop.core.wording import count
from trainer.evaluate import UNKNOWN_CAMERA, split_query_gallery_tracklets

UNKNOWN_TRACKLET = -1
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
EXPECTED_LAYOUTS = ("expected Market-1501 (bounding_box_train, bounding_box_test, query), MARS (bbox_train, "
                    "bbox_test) or one folder per identity")

# torchreid's pattern: Market-1501 `0002_c1s1_000451_03.jpg`, DukeMTMC `0001_c2_f0046182.jpg`; -1 = junk
_MARKET_NAME = re.compile(r"(-1|\d+)_c(\d)")
# MARS `0065C1T0002F016.jpg`; the junk folder's files start `00-1`
_MARS_NAME = re.compile(r"(\d{4}|00-1)C(\d)T(\d{4})F\d{3}")

Layout = Literal["market1501", "mars", "folders"]
T = TypeVar("T")


class DatasetError(ValueError):
    """The data set cannot be used; the message says why and which layout was expected."""


@dataclass(frozen=True)
class ReidImage:
    """One person crop. ``camid`` and ``tracklet`` are -1 when the file name does not say."""

    path: Path
    pid: int
    camid: int = UNKNOWN_CAMERA
    tracklet: int = UNKNOWN_TRACKLET


@dataclass(frozen=True)
class ReidDataset:
    """A parsed data set: train identities are disjoint from the query/gallery (test) identities."""

    name: str
    root: Path
    layout: Layout
    train: tuple[ReidImage, ...]
    query: tuple[ReidImage, ...]
    gallery: tuple[ReidImage, ...]
    problems: tuple[str, ...] = ()  # "path: reason" for every file that was skipped

    @property
    def num_train_pids(self) -> int:
        return len({i.pid for i in self.train})

    @property
    def num_test_pids(self) -> int:
        return len({i.pid for i in (*self.query, *self.gallery)})

    @property
    def cameras(self) -> tuple[int, ...]:
        """The known camera ids over all splits, sorted."""
        return tuple(sorted({i.camid for i in (*self.train, *self.query, *self.gallery)} - {UNKNOWN_CAMERA}))

    @property
    def num_matched_queries(self) -> int:
        """Queries with a true match in the gallery under the Market-1501 protocol; only these are scored."""
        return sum(map(_match_finder(self.gallery), self.query))

    def summary(self, max_problems: int = 5) -> str:
        """A table per split (identities, images, cameras, tracklets) and the first problems: what the CLI prints."""
        with_tracklets = any(i.tracklet != UNKNOWN_TRACKLET for i in (*self.train, *self.query, *self.gallery))
        header = f"{'split':8s} {'identities':>10s} {'images':>8s} {'cameras':>8s}"
        lines = [f"{self.name} ({self.layout} layout) at {self.root}",
                 header + (f" {'tracklets':>9s}" if with_tracklets else "")]
        for split, images in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            known = len({i.camid for i in images} - {UNKNOWN_CAMERA})
            cameras = known if known or not images else "?"
            row = f"{split:8s} {len({i.pid for i in images}):>10d} {len(images):>8d} {cameras:>8}"
            if with_tracklets:
                tracklets = len({(i.pid, i.camid, i.tracklet) for i in images if i.tracklet != UNKNOWN_TRACKLET})
                row += f" {tracklets:>9d}"
            lines.append(row)
        lines.append(f"cameras: {', '.join(f'c{c}' for c in self.cameras) or 'unknown'}")
        if self.query:
            lines.append(f"queries with a match in the gallery: {self.num_matched_queries} of {len(self.query)}")
        else:
            lines.append("no query/gallery split: this set can train but not be evaluated")
        lines.append(f"problems: {count(len(self.problems), 'file')} skipped")
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)


def load_dataset(root: Path | str, *, verify_images: bool = True, test_fraction: float = 0.25,
                 seed: int = 0) -> ReidDataset:
    """Find the layout of ``root``, parse it and split the test side into query and gallery.

    Market-1501: ``bounding_box_train/`` (optional), ``bounding_box_test/`` or ``gallery/``, and ``query/``;
    pid -1 (junk) is dropped, pid 0 (distractors) only kept in the gallery. MARS: ``bbox_train/`` (optional)
    and ``bbox_test/`` of ``PID/PIDCcTttttFfff.jpg``; per test identity the first tracklet (by camera,
    tracklet) with a same-identity tracklet in another camera is the query. Folders: ``root/<identity>/``
    (``test_fraction`` of the identities held out, seeded) or ``root/train/<identity>/`` and
    ``root/test/<identity>/``; per test identity the first image with a match elsewhere is the query.

    ``verify_images`` opens every image so that unreadable files become problems instead of errors in
    the middle of training.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; {EXPECTED_LAYOUTS}")
    scan = _Scanner(verify_images)
    layout: Layout
    if any((root / d).is_dir() for d in ("bounding_box_train", "bounding_box_test", "query", "gallery")):
        layout = "market1501"
        train, query, gallery = _load_market(root, scan)
    elif any((root / d).is_dir() for d in ("bbox_train", "bbox_test")):
        layout = "mars"
        train, query, gallery = _load_mars(root, scan)
    else:
        layout = "folders"
        train, query, gallery = _load_folders(root, scan, test_fraction, seed)
    dataset = ReidDataset(root.name or str(root), root, layout, tuple(train), tuple(query), tuple(gallery),
                          tuple(scan.problems))
    _check(dataset)
    return dataset


class ImageDataset:
    """Map-style data set for a torch ``DataLoader``: item ``i`` is ``(image, label, camid, i)``.

    Images load as RGB PIL images and pass through ``transform`` (usually to a tensor). With ``relabel``
    the pids become 0..N-1 in sorted order, as a classifier head needs; ``labels`` holds every item's
    label so that a P x K sampler (pytorch-metric-learning's ``MPerClassSampler``) can group them.
    It needs no torch itself, so checking a data set does not pay for importing torch.
    """

    def __init__(self, images: Sequence[ReidImage], transform: Callable[[Any], Any] | None = None,
                 relabel: bool = False) -> None:
        self.images = list(images)
        self.transform = transform
        pids = sorted({i.pid for i in self.images})
        self.num_classes = len(pids)
        mapping = {pid: n for n, pid in enumerate(pids)} if relabel else {pid: pid for pid in pids}
        self.labels = [mapping[i.pid] for i in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int, int, int]:
        from PIL import Image

        item = self.images[index]
        with Image.open(item.path) as raw:
            image: Any = raw.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index], item.camid, index


# -- layouts -------------------------------------------------------------------------------------------

Splits = tuple[list[ReidImage], list[ReidImage], list[ReidImage]]


def _load_market(root: Path, scan: _Scanner) -> Splits:
    gallery_dir = next((root / d for d in ("bounding_box_test", "gallery") if (root / d).is_dir()), None)
    if gallery_dir is None or not (root / "query").is_dir():
        missing = "query/" if gallery_dir is not None else "bounding_box_test/ (or gallery/)"
        raise DatasetError(f"{root}: Market-1501 layout without {missing}; expected bounding_box_train/ "
                           "(optional for evaluation), bounding_box_test/ (or gallery/) and query/")
    train_dir = root / "bounding_box_train"
    train = [i for i in scan(train_dir, _market_image) if i.pid > 0] if train_dir.is_dir() else []
    query = [i for i in scan(root / "query", _market_image) if i.pid > 0]
    gallery = [i for i in scan(gallery_dir, _market_image) if i.pid >= 0]
    return train, query, gallery


def _load_mars(root: Path, scan: _Scanner) -> Splits:
    if not (root / "bbox_test").is_dir():
        raise DatasetError(f"{root}: MARS layout without bbox_test/; expected bbox_train/ (optional for evaluation) "
                           "and bbox_test/, each with PID/PIDCcTttttFfff.jpg")
    train_dir = root / "bbox_train"
    train = [i for i in scan(train_dir, _mars_image) if i.pid > 0] if train_dir.is_dir() else []
    query, gallery = _split_tracklets([i for i in scan(root / "bbox_test", _mars_image) if i.pid >= 0])
    return train, query, gallery


def _load_folders(root: Path, scan: _Scanner, test_fraction: float, seed: int) -> Splits:
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_folders, test_folders = _identity_folders(root / "train"), _identity_folders(root / "test")
    else:
        train_folders, test_folders = _identity_folders(root), []
    if not train_folders and not test_folders:
        raise DatasetError(f"{root}: nothing recognisable; {EXPECTED_LAYOUTS} (root/<identity>/*.jpg, optionally "
                           "under root/train/ and root/test/)")
    names = sorted({f.name for f in (*train_folders, *test_folders)})
    numbers = [int(n) for n in names if n.isdigit()]
    pids = (dict(zip(names, numbers, strict=True)) if len(set(numbers)) == len(names)
            else {n: k for k, n in enumerate(names)})  # numeric folder names keep their meaning

    def images(folders: Iterable[Path]) -> dict[str, list[ReidImage]]:
        return {f.name: scan(f, partial(_folder_image, pid=pids[f.name])) for f in folders}

    train, test = images(train_folders), images(test_folders)
    if not test_folders:
        eligible = sorted(n for n, found in train.items() if _first_query(found) is not None)
        test = {n: train.pop(n) for n in choose_test_identities(eligible, len(train), test_fraction, seed)}
    query: list[ReidImage] = []
    gallery: list[ReidImage] = []
    for found in test.values():
        first = _first_query(found)
        query += [first] if first is not None else []
        gallery += [i for i in found if i is not first]
    return [i for found in train.values() for i in found], query, gallery


def _first_query(images: list[ReidImage]) -> ReidImage | None:
    """The first image of one identity that has a match among the others (another camera, when known)."""
    per_camera = Counter(i.camid for i in images)
    others = (len(images) - (1 if i.camid == UNKNOWN_CAMERA else per_camera[i.camid]) for i in images)
    return next((i for i, n in zip(images, others, strict=True) if n > 0), None)


def choose_test_identities(eligible: Sequence[T], total: int, fraction: float, seed: int) -> list[T]:
    """A seeded ``fraction`` of ``total`` identities, drawn from ``eligible`` (those that can make a query).

    At least one when there are any, and never so many that fewer than 2 identities are left to train on.
    """
    wanted = max(0, min(max(1, round(fraction * total)), len(eligible), total - 2))
    return random.Random(seed).sample(list(eligible), wanted)


def _identity_folders(parent: Path) -> list[Path]:
    """Sub-folders holding at least one image file: a folder of anything else is not an identity."""
    return [d for d in sorted(parent.iterdir()) if d.is_dir() and not d.name.startswith(".")
            and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())]


# -- file names -----------------------------------------------------------------------------------------

def _market_image(path: Path) -> ReidImage | str:
    match = _MARKET_NAME.match(path.name)
    if match is None:
        return "name is not PID_cCAM... (Market-1501)"
    return ReidImage(path, int(match[1]), int(match[2]))


def _mars_image(path: Path) -> ReidImage | str:
    match = _MARS_NAME.match(path.name)
    if match is None:
        return "name is not PIDCcTttttFfff (MARS)"
    return ReidImage(path, -1 if match[1] == "00-1" else int(match[1]), int(match[2]), int(match[3]))


def _folder_image(path: Path, pid: int) -> ReidImage:
    """The folder gives the identity; a Market or MARS name still gives camera and tracklet."""
    parsed = _mars_image(path)
    if isinstance(parsed, str):
        parsed = _market_image(path)
    if isinstance(parsed, str):
        return ReidImage(path, pid)
    return ReidImage(path, pid, parsed.camid, parsed.tracklet)


class _Scanner:
    """Lists the usable images under a folder and records why the other files were skipped.

    Verifying here, before any split, means an unreadable file never becomes the query of its identity.
    """

    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.problems: list[str] = []

    def __call__(self, folder: Path, parse: Callable[[Path], ReidImage | str]) -> list[ReidImage]:
        out: list[ReidImage] = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            is_image = path.suffix.lower() in IMAGE_SUFFIXES
            parsed = parse(path) if is_image else f"not an image ({path.suffix or 'no'} suffix)"
            if isinstance(parsed, str):
                self.problems.append(f"{path}: {parsed}")
            elif self.verify and (error := _unreadable(path)):
                self.problems.append(f"{path}: unreadable image ({error})")
            else:
                out.append(parsed)
        return out


def _unreadable(path: Path) -> str | None:
    """Why PIL cannot read ``path``, or None; ``verify`` checks the file's structure without decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises many kinds for broken files
        return f"{type(exc).__name__}: {exc}"
    return None


# -- splitting and checks -------------------------------------------------------------------------------

def _match_finder(gallery: Iterable[ReidImage]) -> Callable[[ReidImage], bool]:
    """Whether a query has a true match: same identity, and another camera unless the query's is unknown."""
    cameras: dict[int, set[int]] = defaultdict(set)
    for item in gallery:
        cameras[item.pid].add(item.camid)
    return lambda q: bool(cameras[q.pid] if q.camid == UNKNOWN_CAMERA else cameras[q.pid] - {q.camid})


def _split_tracklets(test: list[ReidImage]) -> tuple[list[ReidImage], list[ReidImage]]:
    """MARS-like query/gallery split (see `split_query_gallery_tracklets`); distractors (pid 0) stay in the gallery."""
    people = [i for i in test if i.pid != 0]
    if not people:
        return [], test
    is_query, _ = split_query_gallery_tracklets(np.array([i.pid for i in people]), np.array([i.camid for i in people]),
                                                np.array([i.tracklet for i in people]))
    query = [i for i, q in zip(people, is_query.tolist(), strict=True) if q]
    gallery = [i for i, q in zip(people, is_query.tolist(), strict=True) if not q]
    return query, gallery + [i for i in test if i.pid == 0]


def _check(dataset: ReidDataset) -> None:
    where = f"{dataset.root} ({dataset.layout} layout)"
    if not (dataset.train or dataset.query or dataset.gallery):
        skipped = (f" ({count(len(dataset.problems), 'file')} skipped, first: {dataset.problems[0]})"
                   if dataset.problems else "")
        raise DatasetError(f"{where}: no usable images{skipped}; {EXPECTED_LAYOUTS}")
    if dataset.num_train_pids == 1:
        raise DatasetError(f"{where}: training needs at least 2 identities, found 1")
    if (dataset.query or dataset.gallery) and dataset.num_matched_queries == 0:
        raise DatasetError(f"{where}: no query has a match in the gallery ({len(dataset.query)} queries, "
                           f"{len(dataset.gallery)} gallery images); evaluation needs test identities seen "
                           "twice, in two cameras when cameras are known")
