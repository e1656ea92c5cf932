"""Turn the app's operator-confirmed identities into a Market-1501 data set, to fine-tune on one's own cameras.

Confirmed means named (a non-empty label) or marked as a target: the operator vouched for them, unlike the
matcher's automatic identities. Crops come from the source videos at the stored boxes; where the video
cannot be read (a live camera, a moved file, a frame past its end) the track's stored best crop stands in.
The store is only read.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_desktop.core.capture.sources import open_capture
from reid_desktop.core.paths import private_dir
from reid_desktop.core.store.history import History, open_store
from reid_desktop.core.store.interface import ConfirmedTrack, StoreError, TrackSample
from reid_desktop.core.vision.crops import crop
from trainer.datasets import DatasetError, choose_test_identities

MAX_CAMERAS = 9  # Market-1501 names hold one camera digit
_SEEK_GAP = 100  # frames: closer wanted frames are reached by decoding on, farther ones by seeking


@dataclass(frozen=True)
class ExportSummary:
    """What `export_store_dataset` wrote; ``skipped`` says what was left out or replaced, and why."""

    identities: int
    train_images: int
    test_images: int  # bounding_box_test, the gallery
    query_images: int
    skipped: tuple[str, ...]
    out_dir: Path


@dataclass(frozen=True)
class _Crop:
    identity: int
    camera: int
    frame: int
    staged: Path


def export_store_dataset(database: str | History, out_dir: Path, *, test_fraction: float = 0.3, seed: int = 0,
                         max_per_track: int = 8) -> ExportSummary:
    """Write the confirmed identities of ``database`` to ``out_dir`` in the Market-1501 layout.

    Each track gives up to ``max_per_track`` crops spread over its length. Cameras are numbered 1..9 by
    source name; identities 1..N by store id. A seeded ``test_fraction`` of the identities seen in two or
    more cameras goes to ``bounding_box_test/``, one image per camera of each moved to ``query/`` as long as
    every query keeps a match in another camera; the rest go to ``bounding_box_train/``.
    ``identities.json`` maps the numbers back to store identities, labels and camera names.
    """
    out_dir = Path(out_dir)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if max_per_track < 1:
        raise ValueError(f"max_per_track must be at least 1, got {max_per_track}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder; choose a new one")
    labels, tracks = _read_store(database, max_per_track)
    skipped: list[str] = []
    cameras = _number_cameras(tracks, skipped)
    staging = out_dir.with_name(out_dir.name + ".partial")  # a failed export leaves no half-written data set
    shutil.rmtree(staging, ignore_errors=True)
    private_dir(staging)  # crops of real people: the user's only (0700), renamed into place whole
    (staging / "crops").mkdir()
    try:
        crops = _extract(tracks, cameras, labels, staging / "crops", skipped)
        by_identity: dict[int, list[_Crop]] = defaultdict(list)
        for image in crops:
            by_identity[image.identity].append(image)
        skipped += [f"{_name(i, labels)}: no images" for i in labels if i not in by_identity]
        if len(by_identity) < 2:
            raise DatasetError(f"{database}: {len(by_identity)} confirmed identities with images; a data set needs "
                               "at least 2 (name identities or mark them as targets in the app)")
        summary = _write(staging, by_identity, labels, cameras, test_fraction, seed, skipped)
        (staging / "crops").rmdir()
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportSummary(len(by_identity), *summary, tuple(skipped), out_dir)


def _read_store(database: str | History, max_per_track: int) -> tuple[dict[int, str], list[ConfirmedTrack]]:
    """Confirmed identities (id -> label) and their tracks, read through the store (which owns the schema)."""
    try:
        with open_store(database, readonly=True) as store:
            return store.confirmed_tracks(max_per_track)
    except StoreError as exc:
        raise DatasetError(str(exc)) from None


def _number_cameras(tracks: list[ConfirmedTrack], skipped: list[str]) -> dict[str, int]:
    names = sorted({t.source for t in tracks})
    skipped += [f"camera {name}: left out, Market-1501 names hold at most {MAX_CAMERAS} cameras"
                for name in names[MAX_CAMERAS:]]
    return {name: n for n, name in enumerate(names[:MAX_CAMERAS], 1)}


def _extract(tracks: list[ConfirmedTrack], cameras: dict[str, int], labels: dict[int, str], folder: Path,
             skipped: list[str]) -> list[_Crop]:
    """Crop every sample from its video, each file read once in frame order; the best crop where that fails."""

    crops: list[_Crop] = []
    by_source: dict[str, list[ConfirmedTrack]] = defaultdict(list)
    for track in tracks:
        if track.source in cameras:
            by_source[track.source].append(track)
    for source, group in by_source.items():
        uri, kind = group[0].uri, group[0].kind
        cap = open_capture(uri) if kind == "file" and Path(uri).is_file() else None
        readable = cap is not None and cap.isOpened()
        try:
            cropped = _crop_video(cap, group, cameras[source], folder, crops) if readable else Counter[int]()
        finally:
            if cap is not None:
                cap.release()
        if not readable:
            skipped.append(f"camera {source}: {uri} is not a readable video file; each track's best crop is used")
        for index, track in enumerate(group):
            where = f"{_name(track.identity, labels)}, track {track.track_id} on {source}"
            if cropped[index] == 0 and _is_image(track.thumbnail):
                path = folder / f"{len(crops):08d}.jpg"
                path.write_bytes(track.thumbnail or b"")
                frame = track.samples[0].frame_index if track.samples else 0
                crops.append(_Crop(track.identity, cameras[source], frame, path))
                if readable:
                    skipped.append(f"{where}: no frame could be read (file looped, changed or box outside the "
                                   "picture); its best crop is used")
            elif cropped[index] == 0:
                skipped.append(f"{where}: no frame could be read and no best crop is stored")
            elif cropped[index] < len(track.samples):
                skipped.append(f"{where}: {len(track.samples) - cropped[index]} of {len(track.samples)} frames "
                               "could not be read")
    return crops


def _crop_video(cap: Any, group: list[ConfirmedTrack], camera: int, folder: Path, crops: list[_Crop]) -> Counter[int]:
    """Append the crops of ``group``'s samples from one open video; returns how many each track got."""
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    wanted: dict[int, list[tuple[int, TrackSample]]] = defaultdict(list)
    for index, track in enumerate(group):
        for sample in track.samples:
            position = (round(sample.media_time * fps) if sample.media_time is not None and fps > 0
                        else sample.frame_index)
            wanted[position].append((index, sample))
    cropped: Counter[int] = Counter()
    for position, frame in _frames(cap, sorted(wanted)):
        for index, sample in wanted[position]:
            patch = crop(frame, sample.box)
            if patch is not None:
                path = folder / f"{len(crops):08d}.jpg"
                path.write_bytes(cv2.imencode(".jpg", patch, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
                crops.append(_Crop(group[index].identity, camera, position, path))
                cropped[index] += 1
    return cropped


def _name(identity: int, labels: dict[int, str]) -> str:
    return f"identity {identity}" + (f" ({labels[identity]})" if labels[identity] else "")


def _frames(cap: Any, positions: list[int]) -> Iterator[tuple[int, Any]]:
    """The frames at ``positions`` (sorted), decoding on over short gaps and seeking over long ones."""
    import cv2

    current = -_SEEK_GAP - 1
    for position in positions:
        if not 0 <= position - current <= _SEEK_GAP:
            cap.set(cv2.CAP_PROP_POS_FRAMES, position)
            current = position
        while current < position and cap.grab():
            current += 1
        ok, frame = cap.read()
        if not ok:
            return  # past the end: the positions after this one are too
        current += 1
        yield position, frame


def _is_image(data: bytes | None) -> bool:
    import cv2
    import numpy as np

    return bool(data) and cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_COLOR) is not None


def _queries(crops: list[_Crop]) -> list[_Crop]:
    """One crop per camera, as long as every query keeps a gallery match in another camera."""
    gallery = Counter(c.camera for c in crops)
    queries: list[_Crop] = []
    for camera in sorted(gallery):
        trial = gallery.copy()
        trial[camera] -= 1
        if all(any(n > 0 and c != q for c, n in trial.items()) for q in {*(x.camera for x in queries), camera}):
            gallery = trial
            queries.append(next(c for c in crops if c.camera == camera))
    return queries


def _write(folder: Path, by_identity: dict[int, list[_Crop]], labels: dict[int, str], cameras: dict[str, int],
           test_fraction: float, seed: int, skipped: list[str]) -> tuple[int, int, int]:
    """Rename the staged crops into the Market-1501 folders; returns (train, test, query) image counts."""
    pids = {identity: n for n, identity in enumerate(sorted(by_identity), 1)}
    eligible = [i for i in sorted(by_identity) if len({c.camera for c in by_identity[i]}) >= 2]
    test = set(choose_test_identities(eligible, len(by_identity), test_fraction, seed))
    if not test:
        skipped.append("no test split: it needs 3 or more identities, one of them seen by 2 or more cameras")
    counts: Counter[str] = Counter()
    taken: set[str] = set()
    for identity, crops in by_identity.items():
        crops = sorted(crops, key=lambda c: (c.camera, c.frame))
        queries = _queries(crops) if identity in test else []
        for image in crops:
            split = "query" if image in queries else "bounding_box_test" if identity in test else "bounding_box_train"
            number = 0
            while (name := f"{pids[identity]:04d}_c{image.camera}s1_{image.frame:06d}_{number:02d}.jpg") in taken:
                number += 1  # the same frame twice: two runs over one file
            taken.add(name)
            (folder / split).mkdir(exist_ok=True)
            image.staged.rename(folder / split / name)
            counts[split] += 1
    for split in ("bounding_box_train", "bounding_box_test", "query"):
        (folder / split).mkdir(exist_ok=True)
    info = {"cameras": {str(n): name for name, n in cameras.items()},
            "identities": {f"{pid:04d}": {"store_identity": identity, "label": labels[identity],
                                          "split": "test" if identity in test else "train"}
                           for identity, pid in pids.items()}}
    (folder / "identities.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return counts["bounding_box_train"], counts["bounding_box_test"], counts["query"]
