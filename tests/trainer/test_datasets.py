"""Data sets on disk: real MARS and Market-1501 crops, layouts built from them, broken sets, the store export."""

from __future__ import annotations

import json
import shutil
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from trainer.datasets import DatasetError, ImageDataset, ReidDataset, ReidImage, load_dataset
from trainer.store_export import export_store_dataset


def _cross_camera_match(query: ReidImage, gallery: tuple[ReidImage, ...]) -> bool:
    return any(g.pid == query.pid and (query.camid == -1 or g.camid != query.camid) for g in gallery)


@pytest.fixture(scope="module")
def full_mars() -> Path:
    """All of mini_mars (the trainer conftest's `mini_mars` is a slice of it)."""
    return shared_path("data/reid/mini_mars")


@pytest.fixture(scope="module")
def mars_files(full_mars: Path) -> dict[int, list[Path]]:
    """The real training crops of mini_mars by identity, in name order."""
    files: dict[int, list[Path]] = defaultdict(list)
    for path in sorted((full_mars / "bbox_train").rglob("*.jpg")):
        files[int(path.parent.name)].append(path)
    return dict(files)


# -- real data sets ----------------------------------------------------------------------------------------

def test_mini_mars_is_parsed_and_split_like_mars(full_mars: Path) -> None:
    dataset = load_dataset(full_mars)

    assert dataset.layout == "mars" and dataset.problems == ()
    assert len(dataset.train) == 1719 and len(dataset.query) + len(dataset.gallery) == 3853
    assert dataset.num_train_pids == 16 and dataset.num_test_pids == 16
    assert not {i.pid for i in dataset.train} & {i.pid for i in (*dataset.query, *dataset.gallery)}
    assert len({(i.pid, i.camid, i.tracklet) for i in dataset.train}) == 32
    assert len({(i.pid, i.camid, i.tracklet) for i in (*dataset.query, *dataset.gallery)}) == 64
    assert set(dataset.cameras) <= set(range(1, 7)) and len(dataset.cameras) >= 2
    first = next(i for i in dataset.train if i.path.name == "0003C4T0003F001.jpg")
    assert (first.pid, first.camid, first.tracklet) == (3, 4, 3)
    # one whole tracklet per test identity is the query, and each has a match in another camera
    query_tracklets = {(i.pid, i.camid, i.tracklet) for i in dataset.query}
    assert len(query_tracklets) == len({i.pid for i in dataset.query}) == 16
    assert all(_cross_camera_match(q, dataset.gallery) for q in dataset.query)
    assert dataset.num_matched_queries == len(dataset.query)
    assert not query_tracklets & {(i.pid, i.camid, i.tracklet) for i in dataset.gallery}


def test_market_4ids_query_gallery_without_train() -> None:
    dataset = load_dataset(shared_path("data/reid/market_4ids"))

    assert dataset.layout == "market1501" and dataset.train == () and dataset.problems == ()
    assert (len(dataset.query), len(dataset.gallery)) == (5, 128)
    assert {i.pid for i in dataset.gallery} == {1, 2, 3, 4}
    assert 23 in {i.pid for i in dataset.query}  # the README's distractor: a query with no match
    assert dataset.cameras == (1, 2, 3, 4, 5, 6)
    assert dataset.num_matched_queries == 4
    query = next(i for i in dataset.query if i.path.name == "0002_c2s1_068496_01.jpg")
    assert (query.pid, query.camid, query.tracklet) == (2, 2, -1)


def test_summary_reports_identities_images_cameras_and_problems(full_mars: Path) -> None:
    text = load_dataset(full_mars, verify_images=False).summary()

    assert "mars layout" in text and "identities" in text and "images" in text and "cameras" in text
    assert "tracklets" in text and "c1" in text
    train_row = next(line for line in text.splitlines() if line.startswith("train"))
    assert train_row.split() == ["train", "16", "1719", "6", "32"]
    assert "problems: 0" in text


# -- layouts built from real crops -------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def test_market_layout_junk_distractors_and_odd_names(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    root = tmp_path / "market"
    pids = sorted(mars_files)[:4]
    for n, pid in enumerate(pids[:2], 1):  # train: identities 1, 2 over cameras 1-2
        for k, src in enumerate(mars_files[pid][:4]):
            _copy(src, root / "bounding_box_train" / f"{n:04d}_c{k % 2 + 1}s1_{k:06d}_00.jpg")
    for n, pid in enumerate(pids[2:], 3):  # test: identities 3, 4; one query each, gallery in other cameras
        _copy(mars_files[pid][0], root / "query" / f"{n:04d}_c1s1_000000_00.jpg")
        for k, src in enumerate(mars_files[pid][1:4]):
            _copy(src, root / "bounding_box_test" / f"{n:04d}_c{k + 2}s1_{k:06d}_00.jpg")
    _copy(mars_files[pids[0]][5], root / "bounding_box_train" / "0000_c1s1_000100_00.jpg")  # distractor
    _copy(mars_files[pids[0]][6], root / "bounding_box_test" / "0000_c1s1_000100_00.jpg")
    _copy(mars_files[pids[0]][7], root / "bounding_box_test" / "-1_c1s1_000100_00.jpg")  # junk
    _copy(mars_files[pids[0]][8], root / "bounding_box_train" / "person.jpg")  # does not parse
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\0" * 16)

    dataset = load_dataset(root)

    assert dataset.layout == "market1501"
    assert {i.pid for i in dataset.train} == {1, 2} and len(dataset.train) == 8
    assert {i.pid for i in dataset.query} == {3, 4}
    assert {i.pid for i in dataset.gallery} == {0, 3, 4} and len(dataset.gallery) == 7
    assert dataset.num_matched_queries == 2
    assert len(dataset.problems) == 2
    assert any("person.jpg" in p and "Market-1501" in p for p in dataset.problems)
    assert any("Thumbs.db" in p and "not an image" in p for p in dataset.problems)


def test_folder_per_identity_holds_out_identities(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    root = tmp_path / "people"
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
    for name, pid in zip(names, sorted(mars_files), strict=False):
        for k, src in enumerate(mars_files[pid][:3]):
            _copy(src, root / name / f"img{k}.png" if name == "heidi" else root / name / f"crop_{k}.jpg")

    dataset = load_dataset(root, test_fraction=0.25, seed=1)

    assert dataset.layout == "folders" and dataset.problems == ()
    assert dataset.num_train_pids == 6 and dataset.num_test_pids == 2
    assert len(dataset.query) == 2 and len(dataset.gallery) == 4  # first image of each test identity
    assert {i.camid for i in (*dataset.train, *dataset.query, *dataset.gallery)} == {-1}
    assert {i.pid for i in dataset.train} | {i.pid for i in dataset.query} == set(range(8))
    assert load_dataset(root, test_fraction=0.25, seed=1) == dataset  # seeded
    held_out = {frozenset(i.pid for i in load_dataset(root, seed=s).query) for s in range(6)}
    assert len(held_out) > 1


def test_folder_layout_with_train_test_and_mars_names(tmp_path: Path, full_mars: Path,
                                                     mars_files: dict[int, list[Path]]) -> None:
    root = tmp_path / "people"
    for pid in sorted(mars_files)[:3]:
        for src in mars_files[pid][:2]:
            _copy(src, root / "train" / f"p{pid}" / src.name)
    for folder in sorted((full_mars / "bbox_test").iterdir())[:2]:  # identities seen by several cameras
        for src in {p.name[4:6]: p for p in sorted(folder.glob("*.jpg"))}.values():  # one image per camera
            _copy(src, root / "test" / f"p{folder.name}" / src.name)

    dataset = load_dataset(root)

    assert dataset.num_train_pids == 3 and dataset.num_test_pids == 2
    assert all(i.camid > 0 and i.tracklet > 0 for i in (*dataset.train, *dataset.query, *dataset.gallery))
    assert len(dataset.query) == 2
    assert all(_cross_camera_match(q, dataset.gallery) for q in dataset.query)


# -- broken sets -----------------------------------------------------------------------------------------

def test_empty_and_unrelated_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"expected Market-1501 .* MARS .* one folder per identity"):
        load_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("# nothing")
    with pytest.raises(DatasetError, match="nothing recognisable"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "missing")


def test_one_identity_cannot_train(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    pid = sorted(mars_files)[0]
    for src in mars_files[pid][:4]:
        _copy(src, tmp_path / "only" / src.name)
    with pytest.raises(DatasetError, match="training needs at least 2 identities"):
        load_dataset(tmp_path)


def test_market_layout_needs_query_and_gallery(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    src = mars_files[sorted(mars_files)[0]][0]
    _copy(src, tmp_path / "bounding_box_train" / "0001_c1s1_000001_00.jpg")
    with pytest.raises(DatasetError, match="without bounding_box_test"):
        load_dataset(tmp_path)
    _copy(src, tmp_path / "bounding_box_test" / "0002_c1s1_000001_00.jpg")
    with pytest.raises(DatasetError, match="without query"):
        load_dataset(tmp_path)


def test_unmatched_queries_and_unparsed_names_are_refused(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    src = mars_files[sorted(mars_files)[0]][0]
    _copy(src, tmp_path / "query" / "0001_c1s1_000001_00.jpg")
    _copy(src, tmp_path / "bounding_box_test" / "0001_c1s1_000002_00.jpg")  # same camera: no match
    with pytest.raises(DatasetError, match="no query has a match"):
        load_dataset(tmp_path)
    shutil.rmtree(tmp_path / "query")
    shutil.rmtree(tmp_path / "bounding_box_test")
    _copy(src, tmp_path / "query" / "frame1.jpg")
    _copy(src, tmp_path / "bounding_box_test" / "frame2.jpg")
    with pytest.raises(DatasetError, match=r"no usable images \(2 files skipped.*frame"):
        load_dataset(tmp_path)


def test_unreadable_image_is_skipped_and_reported(tmp_path: Path, mars_files: dict[int, list[Path]]) -> None:
    root = tmp_path / "people"
    for pid in sorted(mars_files)[:4]:
        for k, src in enumerate(mars_files[pid][:3]):
            _copy(src, root / str(pid) / f"{k}.jpg")
    broken = root / str(sorted(mars_files)[0]) / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG at all" * 20)

    dataset = load_dataset(root)

    assert len(dataset.problems) == 1 and dataset.problems[0].startswith(f"{broken}: unreadable image")
    assert broken not in {i.path for i in (*dataset.train, *dataset.query, *dataset.gallery)}
    assert len(dataset.train) + len(dataset.query) + len(dataset.gallery) == 12
    assert {i.pid for i in dataset.train} <= set(sorted(mars_files)[:4])  # numeric folders keep their number
    assert "problems: 1" in dataset.summary() and "broken.jpg" in dataset.summary()
    unchecked = load_dataset(root, verify_images=False)
    assert broken in {i.path for i in (*unchecked.train, *unchecked.query, *unchecked.gallery)}


# -- torch data set ---------------------------------------------------------------------------------------

def test_image_dataset_relabels_and_loads_rgb(full_mars: Path) -> None:
    dataset = load_dataset(full_mars, verify_images=False)
    images = dataset.train[::50]

    relabelled = ImageDataset(images, transform=None, relabel=True)
    pids = sorted({i.pid for i in images})
    assert relabelled.num_classes == len(pids) and len(relabelled) == len(images)
    assert relabelled.labels == [pids.index(i.pid) for i in images]
    image, label, camid, index = relabelled[3]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (128, 256)
    assert (label, camid, index) == (pids.index(images[3].pid), images[3].camid, 3)

    raw = ImageDataset(images, transform=np.asarray, relabel=False)
    array, label, _, _ = raw[0]
    assert array.shape == (256, 128, 3) and label == images[0].pid


def test_image_dataset_feeds_a_dataloader_with_identity_batches(full_mars: Path) -> None:
    import torch
    from pytorch_metric_learning.samplers import MPerClassSampler
    from torchvision.transforms import v2 as T

    images = load_dataset(full_mars, verify_images=False).train[::20]
    transform = T.Compose([T.PILToTensor(), T.Resize((64, 32)), T.ToDtype(torch.float32, scale=True)])
    dataset = ImageDataset(images, transform, relabel=True)
    sampler = MPerClassSampler(dataset.labels, m=2, batch_size=8, length_before_new_iter=16)
    batch, labels, camids, indices = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler)))

    assert batch.shape == (8, 3, 64, 32) and batch.dtype == torch.float32
    assert torch.bincount(labels).max() >= 2 and labels.max() < dataset.num_classes
    assert [dataset.labels[i] for i in indices.tolist()] == labels.tolist()
    assert camids.tolist() == [images[i].camid for i in indices.tolist()]


# -- export from the app's store -------------------------------------------------------------------------

BOX_W, BOX_H = 64, 128


def _box(identity: int) -> tuple[float, float, float, float]:
    x, y = 60 + 150 * (identity - 1), 200
    return (x, y, x + BOX_W, y + BOX_H)


def _thumbnail() -> bytes:
    return cv2.imencode(".jpg", np.full((BOX_H, BOX_W, 3), 90, np.uint8))[1].tobytes()


@dataclass(frozen=True)
class TrackSpec:
    """One track for the test store; ``frames`` are positions in the file. ``replayed_from`` adds that many
    frames to frame_index, as after the app looped the file; media_time stays the position when known."""

    identity: int
    source: str
    uri: str
    frames: tuple[int, ...]
    kind: str = "file"
    replayed_from: int = 0
    media_time: bool = True


def _make_store(path: Path, tracks: list[TrackSpec], labels: dict[int, str], targets: set[int]) -> None:
    from reid_desktop.core.store.interface import SightingRecord, TrackKey
    from reid_desktop.core.store.storage import SightingStore

    with SightingStore(path) as store:
        run = store.begin_run(detector="test", embedder="test", embedder_is_fallback=False, provider="cpu",
                              model_key="test", warnings=[], config={})
        for track_id, t in enumerate(tracks, 1):
            key = TrackKey(t.source, t.uri, t.kind, 0, track_id)
            for i, frame in enumerate(t.frames):
                store.record(SightingRecord(
                    run_id=run, track=key, identity_id=t.identity, frame_index=frame + t.replayed_from,
                    timestamp=1000.0 + frame / 10, media_time=frame / 10 if t.media_time else None,
                    box=_box(t.identity), confidence=0.9, match_score=None, quality=0.5,
                    thumbnail=_thumbnail() if i == 0 else None))
        for identity, label in labels.items():
            store.set_label(identity, label)
        for identity in targets:
            store.set_target(identity)


def test_export_store_to_market_layout_loads_back(tmp_path: Path, demo_clip: Path,
                                                  demo_frames: list[np.ndarray]) -> None:
    clip = str(demo_clip)
    database = tmp_path / "sightings.db"
    tracks = [TrackSpec(identity, cam, clip, tuple(range(start, start + 10)))
              for identity in (1, 2, 3, 4) for cam, start in (("cam-b", 40), ("cam-a", 5))]
    _make_store(database, tracks, labels={1: "Alice", 3: "Carol"}, targets={2})  # 4 is not confirmed
    before = database.read_bytes()

    summary = export_store_dataset(database, tmp_path / "export", max_per_track=3)

    assert database.read_bytes() == before
    assert summary.identities == 3 and summary.out_dir == tmp_path / "export"
    assert stat.S_IMODE(summary.out_dir.stat().st_mode) == 0o700  # crops of real people: the user's only
    assert (summary.train_images, summary.test_images, summary.query_images) == (12, 4, 2)
    assert summary.skipped == ()
    dataset = load_dataset(summary.out_dir)
    assert dataset.layout == "market1501" and dataset.problems == ()
    assert dataset.num_train_pids == 2 and dataset.num_test_pids == 1 and dataset.cameras == (1, 2)
    assert {i.pid for i in (*dataset.train, *dataset.query)} == {1, 2, 3}
    assert dataset.num_matched_queries == 2
    info = json.loads((summary.out_dir / "identities.json").read_text())
    assert info["cameras"] == {"1": "cam-a", "2": "cam-b"}
    assert {v["store_identity"]: v["label"] for v in info["identities"].values()} == {1: "Alice", 2: "", 3: "Carol"}
    for image in (*dataset.train, *dataset.query, *dataset.gallery):
        crop = cv2.imread(str(image.path))
        assert crop.shape == (BOX_H, BOX_W, 3)
        frame = int(image.path.name.split("_")[2])
        assert frame in {6, 10, 13, 41, 45, 48}  # three samples spread over each ten-frame track
        store_id = info["identities"][f"{image.pid:04d}"]["store_identity"]
        x1, y1, x2, y2 = (int(v) for v in _box(store_id))
        expected = demo_frames[frame][y1:y2, x1:x2]
        assert np.abs(crop.astype(int) - expected).mean() < 3.0  # the box of that very frame, JPEG aside


def test_export_falls_back_to_best_crops(tmp_path: Path, demo_clip: Path, demo_frames: list[np.ndarray]) -> None:
    clip = str(demo_clip)
    database = tmp_path / "sightings.db"
    _make_store(database, [
        TrackSpec(1, "cam-a", clip, (20, 21), replayed_from=80),  # media time finds the frame
        TrackSpec(1, "cam-live", "rtsp://camera.local/stream", (3, 4), kind="stream", media_time=False),
        TrackSpec(2, "cam-a", clip, (30, 31)),
        TrackSpec(2, "cam-a", clip, (70, 71), replayed_from=80, media_time=False),  # past the end: best crop
        TrackSpec(2, "cam-moved", str(tmp_path / "gone.mp4"), (3,)),  # the file is gone: best crop
    ], labels={1: "Alice", 2: "Bob"}, targets=set())

    summary = export_store_dataset(database, tmp_path / "export", max_per_track=8)

    assert summary.identities == 2 and summary.train_images == 7 and summary.query_images == 0
    assert len(summary.skipped) == 4
    assert any("cam-live" in s and "best crop" in s for s in summary.skipped)
    assert any("cam-moved" in s and "gone.mp4" in s for s in summary.skipped)
    assert any("track 4 on cam-a" in s and "no frame could be read" in s for s in summary.skipped)
    assert any("no test split" in s for s in summary.skipped)
    dataset = load_dataset(summary.out_dir)
    assert dataset.num_train_pids == 2 and dataset.query == () and dataset.cameras == (1, 2, 3)
    replayed = sorted(i.path for i in dataset.train if i.pid == 1 and i.camid == 1)
    assert [int(p.name.split("_")[2]) for p in replayed] == [20, 21]
    x1, y1, x2, y2 = (int(v) for v in _box(1))
    assert np.abs(cv2.imread(str(replayed[0])).astype(int) - demo_frames[20][y1:y2, x1:x2]).mean() < 3.0
    thumbnails = [i for i in dataset.train if cv2.imread(str(i.path)).std() == 0]  # the plain grey best crop
    assert sorted((i.pid, i.camid) for i in thumbnails) == [(1, 2), (2, 1), (2, 3)]


def test_export_refuses_too_few_identities_and_used_folders(tmp_path: Path, demo_clip: Path) -> None:
    database = tmp_path / "sightings.db"
    tracks = [TrackSpec(identity, "cam-a", str(demo_clip), (1, 2)) for identity in (1, 2)]
    _make_store(database, tracks, labels={1: "Alice"}, targets=set())
    with pytest.raises(DatasetError, match="1 confirmed identities with images; a data set needs at least 2"):
        export_store_dataset(database, tmp_path / "export")
    assert not (tmp_path / "export").exists() and not (tmp_path / "export.partial").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_store_dataset(database, tmp_path / "used")
    with pytest.raises(DatasetError, match="database not found"):
        export_store_dataset(tmp_path / "missing.db", tmp_path / "export")
    (tmp_path / "notes.db").write_bytes(b"not a database" * 100)
    with pytest.raises(DatasetError, match="not a usable reid-desktop database"):
        export_store_dataset(tmp_path / "notes.db", tmp_path / "export")


def test_loaded_dataset_is_frozen(full_mars: Path) -> None:
    dataset = load_dataset(full_mars, verify_images=False)
    assert isinstance(dataset, ReidDataset)
    with pytest.raises(AttributeError):
        dataset.train = ()  # type: ignore[misc]


def test_cli_and_window_export_confirmed_people_as_training_data(tmp_path: Path, demo_clip: Path, qtbot) -> None:
    """``reid-trainer dataset OUT --from-store DB`` and File > Export confirmed people as training data."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    database = tmp_path / "sightings.sqlite"
    tracks = [TrackSpec(identity, cam, str(demo_clip), tuple(range(start, start + 10)))
              for identity in (1, 2, 3) for cam, start in (("cam-b", 40), ("cam-a", 5))]
    _make_store(database, tracks, labels={1: "Alice"}, targets={2, 3})
    out = subprocess.run([sys.executable, "-m", "trainer.cli", "dataset", str(tmp_path / "cli"), "--from-store",
                          str(database)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "exported 3 confirmed identities" in out.stdout and "queries with a match" in out.stdout
    again = subprocess.run([sys.executable, "-m", "trainer.cli", "dataset", str(tmp_path / "cli"), "--from-store",
                            str(database)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 3 and "error:" in again.stderr  # never overwrites an earlier export

    from reid_desktop.ui.qt_env import sanitize_qt_environment

    sanitize_qt_environment()
    from reid_desktop.ui.main_window import MainWindow
    from reid_desktop.ui.settings import AppSettings

    window = MainWindow(AppSettings(database=str(database), pipeline={"reid.allow_download": False}),
                        tmp_path / "settings.json")
    qtbot.addWidget(window)
    window.exports.export_training_data(tmp_path / "gui")
    qtbot.waitUntil(lambda: "queries with a match" in window.trainer_tab.dataset_summary.toPlainText(), timeout=120_000)
    assert window.tabs.currentWidget() is window.trainer_tab
    assert window.trainer_tab.data_edit.text() == str(tmp_path / "gui")
    assert load_dataset(tmp_path / "gui").num_train_pids + load_dataset(tmp_path / "gui").num_test_pids == 3
    window.close()
