"""Camera-aware normalisation: a camera's cast is taken out, a new camera starts neutral, the mean is bounded and
kept with the camera in the store (both backends)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.camera_norm import CameraNormaliser
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.types import CameraMean, Frame
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_pipeline_faults import config
from tests.core.test_revisable_identities import SIZE, Scripted, person_patch

DIM = 32


def people(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.normal(size=(count, DIM)).astype(np.float32)


def seen_by(camera_cast: np.ndarray, person: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Crops of ``person`` through a camera whose cast adds ``camera_cast`` to every embedding."""
    vectors = person + camera_cast + 0.3 * rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_cameras_cast_no_longer_pulls_its_people_together() -> None:
    """Two cameras with strong, different casts see the same five people: without normalisation a person scores
    higher with someone else in their own camera than with themselves in the other camera; with it, the reverse."""
    rng = np.random.default_rng(3)
    crowd = people(rng, 5)
    casts = {"north": 3.0 * rng.normal(size=DIM).astype(np.float32),
             "south": 3.0 * rng.normal(size=DIM).astype(np.float32)}
    normaliser = CameraNormaliser(settle=10)
    seen = {camera: [normaliser.learn_and_apply(camera, seen_by(cast, p, rng, 60)) for p in crowd]
            for camera, cast in casts.items()}
    raw = {camera: [seen_by(cast, p, rng, 60) for p in crowd] for camera, cast in casts.items()}

    def separated(views: dict[str, list[np.ndarray]]) -> bool:
        means = {c: [v.mean(axis=0) / np.linalg.norm(v.mean(axis=0)) for v in vs] for c, vs in views.items()}
        for i in range(len(crowd)):
            same = float(means["north"][i] @ means["south"][i])
            neighbour = max(float(means["north"][i] @ means["north"][j]) for j in range(len(crowd)) if j != i)
            if same <= neighbour:
                return False
        return True

    assert not separated(raw)
    later = {camera: [normaliser.apply(camera, seen_by(cast, p, rng, 60)) for p in crowd]
             for camera, cast in casts.items()}
    assert separated(later) and seen


def test_a_new_camera_starts_neutral_and_settles_as_it_learns() -> None:
    rng = np.random.default_rng(0)
    cast = np.zeros(DIM, np.float32)
    cast[0] = 5.0
    normaliser = CameraNormaliser(settle=50)
    first = seen_by(cast, people(rng, 1)[0], rng, 1)
    assert np.allclose(normaliser.apply("gate", first), first)  # never seen: unchanged
    learned = normaliser.learn_and_apply("gate", first)
    assert float(learned[0] @ first[0]) > 0.99  # one crop: hardly any of its mean taken out
    for _ in range(20):
        normaliser.learn_and_apply("gate", seen_by(cast, people(rng, 1)[0], rng, 20))
    mean = normaliser.means["gate"]
    assert mean.count == 401 and mean.vector[0] > 0.5  # it learned the cast
    after = normaliser.apply("gate", seen_by(cast, people(rng, 1)[0], rng, 50))
    assert abs(float(after.mean(axis=0)[0])) < 0.3  # and takes it out
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)


def test_the_running_mean_is_bounded_and_follows_slow_changes() -> None:
    rng = np.random.default_rng(1)
    normaliser = CameraNormaliser(settle=10, memory=100)
    day, night = np.zeros(DIM, np.float32), np.zeros(DIM, np.float32)
    day[1], night[2] = 4.0, 4.0
    for cast in (day, night):
        for _ in range(30):
            normaliser.learn_and_apply("yard", seen_by(cast, people(rng, 1)[0], rng, 10))
    mean = normaliser.means["yard"]
    assert mean.count == 100  # weighs at most `memory` crops
    assert mean.vector[2] > 2 * abs(mean.vector[1])  # the night's cast now, not the day's


def test_a_picture_from_a_file_is_normalised_with_the_cameras_average() -> None:
    normaliser = CameraNormaliser(settle=1)
    normaliser.restore("a", CameraMean(np.array([1.0, 0.0, 0.0], np.float32), 1000))
    normaliser.restore("b", CameraMean(np.array([0.0, 1.0, 0.0], np.float32), 1000))
    query = np.array([[0.6, 0.6, 0.5]], np.float32)
    expected = query - np.array([0.5, 0.5, 0.0]) * 1000 / 1001
    assert np.allclose(normaliser.apply(None, query), expected / np.linalg.norm(expected), atol=1e-6)


def test_camera_means_are_kept_with_the_camera_per_model(store: SightingStore) -> None:
    means = {"gate": CameraMean(np.arange(4, dtype=np.float32), 120),
             "yard": CameraMean(-np.ones(4, np.float32), 7)}
    store.save_camera_means("osnet", means)
    store.save_camera_means("osnet", {"gate": CameraMean(np.full(4, 2.0, np.float32), 130)})  # updated in place
    store.save_camera_means("resnet", {"gate": CameraMean(np.zeros(8, np.float32), 1)})
    kept = store.camera_means("osnet")
    assert set(kept) == {"gate", "yard"}
    assert np.array_equal(kept["gate"].vector, np.full(4, 2.0)) and kept["gate"].count == 130
    assert np.array_equal(kept["yard"].vector, -np.ones(4)) and kept["yard"].count == 7
    assert set(store.camera_means("resnet")) == {"gate"} and store.camera_means("other") == {}


def test_a_restarted_pipeline_goes_on_from_the_kept_means(tmp_path: Path) -> None:
    """A run learns a camera's mean from its crops and keeps it; the next run starts from it, not neutral."""
    rng = np.random.default_rng(2)
    frames, boxes = [], []
    for index in range(30):
        image = np.full((*SIZE, 3), 90, np.uint8)
        image[60:180, 100:150] = person_patch((30, 160, 200), rng)
        frames.append(Frame("porch", index, 1000.0 + index * 0.1, image))
        boxes.append([(100, 60, 0.9)])
    cfg = config(**{"reid.embed_every": 1})
    with SightingStore(tmp_path / "s.sqlite") as history:
        pipeline = Pipeline(cfg, history, detector=Scripted(boxes), embedder=ColorTextureEmbedder())
        for frame in frames:
            pipeline.process([frame])
        assert pipeline.normaliser is not None
        learned = pipeline.normaliser.means["porch"]
        pipeline.close()
        again = Pipeline(cfg, history, detector=Scripted(boxes), embedder=ColorTextureEmbedder())
        assert again.normaliser is not None
        kept = again.normaliser.means["porch"]
        assert kept.count == learned.count == 30 and np.allclose(kept.vector, learned.vector)
        again.close()
    off = config(**{"matcher.camera_normalisation": False})
    with SightingStore(tmp_path / "s.sqlite") as history:
        assert Pipeline(off, history, detector=Scripted(boxes), embedder=ColorTextureEmbedder()).normaliser is None


@pytest.mark.parametrize("count", [0, 1])
def test_nothing_to_learn_from_changes_nothing(count: int) -> None:
    normaliser = CameraNormaliser()
    vectors = np.eye(DIM, dtype=np.float32)[:count]
    assert np.array_equal(normaliser.learn_and_apply("x", vectors), vectors)
    assert ("x" in normaliser) == bool(count)
