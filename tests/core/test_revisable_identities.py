"""Identities that correct themselves: tentative tracks, corrections with an audit, cannot-link, topology,
and the threshold calibrated on the footage."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.config import ConfigError
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.calibration import ThresholdCalibration
from reid_desktop.core.identity.matching import IdentityMatcher, MatchRequest
from reid_desktop.core.store import identity_edits
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.topology import CameraLinks, parse
from reid_desktop.core.types import Detections, Frame
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_pipeline_faults import config
from tests.core.test_store_edits import Builder


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


# -- topology -----------------------------------------------------------------------------------

def test_camera_links_parse_overlaps_and_walking_times() -> None:
    links = parse(" entrance ~ hall : 8 ; hall = stairs ;", same_moment_s=0.5)
    assert links.possible("hall", 100.0, "stairs", 100.0)  # overlapping: at once is fine
    assert not links.possible("entrance", 100.0, "hall", 105.0)  # a walk of at least 8 s
    assert links.possible("entrance", 100.0, "hall", 108.5)
    assert not links.possible("stairs", 100.0, "entrance", 100.2)  # unrelated cameras: not at the same moment
    assert links.possible("stairs", 100.0, "entrance", 101.0)
    assert links.possible("hall", 100.0, "hall", 100.0)
    assert parse(links.describe()) == CameraLinks(links.overlapping, links.min_transit_s)


@pytest.mark.parametrize("text, says", [
    ("a = a", "always linked with itself"), ("a ~ b", "SECONDS"), ("a ~ b : x", "SECONDS"),
    ("a = b = c", "overlap"), ("a = b; b ~ a : 3", "choose one"), ("= b", "overlap")])
def test_camera_links_that_make_no_sense_are_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(text)
    with pytest.raises(ConfigError, match=r"matcher\.camera_links"):
        config(**{"matcher.camera_links": text})


names = st.text(st.characters(blacklist_characters=";=~:", blacklist_categories=("Cs",)), min_size=1,
                max_size=8).map(str.strip).filter(bool)


@given(st.lists(st.tuples(names, names, st.one_of(st.none(), st.integers(0, 3600))), max_size=6))
def test_camera_links_read_back_what_they_write(entries: list[tuple[str, str, int | None]]) -> None:
    overlapping, transit = set(), {}
    for a, b, seconds in entries:
        pair = frozenset((a, b))
        if a == b or pair in overlapping or pair in transit:
            continue
        if seconds is None:
            overlapping.add(pair)
        else:
            transit[pair] = float(seconds)
    links = CameraLinks(frozenset(overlapping), transit)
    assert parse(links.describe()) == links


@given(st.text(max_size=40))
def test_any_camera_links_text_is_read_or_refused_with_a_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse(text)


# -- matcher constraints --------------------------------------------------------------------------

def test_one_person_is_not_in_two_cameras_at_once_unless_they_overlap() -> None:
    for links, expect_linked in ((CameraLinks(), False), (parse("a = b"), True)):
        m = IdentityMatcher(threshold=0.8, links=links)
        first = m.assign([MatchRequest("t1", unit(1, 0, 0))], camera="a", timestamp=10.0)[0]
        m.add(first.identity_id, unit(1, 0, 0)[None], np.ones(1))
        m.seen(first.identity_id, "a", 10.0)
        twin = m.assign([MatchRequest("t2", unit(1, 0, 0))], camera="b", timestamp=10.1)[0]
        assert (twin.identity_id == first.identity_id) is expect_linked
    later = IdentityMatcher(threshold=0.8)  # the same person walks over: a moment later it is them
    first = later.assign([MatchRequest("t1", unit(1, 0, 0))], camera="a", timestamp=10.0)[0]
    later.add(first.identity_id, unit(1, 0, 0)[None], np.ones(1))
    later.seen(first.identity_id, "a", 10.0)
    assert later.assign([MatchRequest("t2", unit(1, 0, 0))], camera="b", timestamp=12.0)[0].identity_id == 1


def test_walking_time_prunes_links_faster_than_the_walk() -> None:
    m = IdentityMatcher(threshold=0.8, links=parse("a ~ b : 20"))
    m.add(5, unit(1, 0, 0)[None], np.ones(1))
    m.seen(5, "a", 100.0)
    assert m.assign([MatchRequest("quick", unit(1, 0, 0))], camera="b", timestamp=110.0)[0].is_new
    assert m.assign([MatchRequest("walked", unit(1, 0, 0))], camera="b", timestamp=121.0)[0].identity_id == 5


def test_a_track_asking_again_looks_past_its_own_new_identity_and_keeps_it_when_nobody_else_fits() -> None:
    m = IdentityMatcher(threshold=0.8)
    m.add(1, unit(1, 0, 0)[None], np.ones(1))
    own = m.assign([MatchRequest("t", unit(0, 1, 0))])[0]
    assert own.is_new and own.identity_id == 2
    m.add(2, unit(0, 1, 0)[None], np.ones(1))  # its own crops: it would always match itself
    still = m.assign([MatchRequest("t", unit(0, 0.99, 0.1), holds=2)])[0]
    assert (still.identity_id, still.is_new) == (2, False)
    moved = m.assign([MatchRequest("t", unit(1, 0.1, 0), holds=2)])[0]
    assert moved.identity_id == 1


# -- calibration ----------------------------------------------------------------------------------

def test_threshold_is_where_only_the_allowed_share_of_people_would_match_someone_around_them() -> None:
    rng = np.random.default_rng(0)
    calibration = ThresholdCalibration(false_accept=0.05, min_scores=50, capacity=300)
    assert calibration.threshold is None
    best_wrong = []
    for _ in range(100):  # frames with four different people (random directions; one crop each)
        people = rng.normal(size=(4, 16)).astype(np.float32)
        people /= np.linalg.norm(people, axis=1, keepdims=True)
        calibration.observe(people, [p[None, :] for p in people])
        best_wrong += [max(float(people[i] @ people[j]) for j in range(4) if j != i) for i in range(4)]
    assert calibration.observed == 300  # bounded: the most recent only
    assert calibration.threshold == pytest.approx(np.quantile(best_wrong[-300:], 0.95), abs=1e-5)


# -- the pipeline: tentative identities corrected in the store -------------------------------------

SIZE = (240, 320)


def person_patch(colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    patch = np.empty((120, 50, 3), np.uint8)
    patch[:] = colour
    return np.clip(patch + rng.integers(-12, 12, patch.shape), 0, 255).astype(np.uint8)


class Scripted:
    """A detector that reports the boxes this test painted (the pictures are synthetic too)."""

    name = "scripted"

    def __init__(self, boxes: Sequence[list[tuple[float, float, float]]]) -> None:
        self.boxes, self.position = list(boxes), 0

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for _ in images:
            rows = [[x, y, x + 50, y + 120, score, 0] for x, y, score in self.boxes[self.position]]
            out.append(Detections(np.asarray(rows, np.float32).reshape(-1, 6)))
            self.position += 1
        return out


def test_a_wrong_first_guess_is_corrected_in_the_store_with_an_audit_row(tmp_path: Path) -> None:
    """Camera a sees a person in blue; later a track in camera b starts with a poor, misleading crop (red,
    weakly detected) and then shows blue: it first gets a new identity, then the blue person's, and its
    stored sightings follow."""
    rng = np.random.default_rng(1)
    blue, red = (200, 60, 40), (40, 40, 210)
    frames, boxes = [], []
    for index in range(40):
        image = np.full((*SIZE, 3), 128, np.uint8)
        where: list[tuple[float, float, float]] = []
        if index < 12 or index >= 20:  # the same place: the tracker keeps one track per appearance
            image[60:180, 100:150] = person_patch(red if index == 20 else blue, rng)
            where.append((100, 60, 0.4 if index == 20 else 0.9))
        frames.append(Frame("a" if index < 20 else "b", index, 1000.0 + index * 0.1, image))
        boxes.append(where)
    cfg = config(**{"reid.embed_every": 1, "reid.track_gallery_size": 2, "matcher.threshold": 0.9,
                    "matcher.commit_crops": 4,
                    "storage.sightings_per_second": 0})
    db = tmp_path / "s.sqlite"
    with SightingStore(db) as store:
        pipeline = Pipeline(cfg, store, detector=Scripted(boxes), embedder=ColorTextureEmbedder())
        shown = [p.identity_id for f in frames for r in pipeline.process([f]) for p in r.persons]
        pipeline.close()
        first = shown[0]
        # the red first crop of camera b's track (after the frame its look-up in the index took): someone new
        guess = next(i for i in shown[12:] if i is not None)
        assert guess != first
        assert shown[-1] == first and pipeline.corrections >= 1
        sightings = store.sightings(source="b")
        assert sightings and {s.identity_id for s in sightings} == {first}  # the timeline follows
        audit = [c for c in store.corrections() if c.actor == "auto"]
        assert [(c.from_identity, c.to_identity) for c in audit] == [(guess, first)]
        assert guess not in {i.identity_id for i in store.identities()}  # the mistaken identity is gone


def test_operator_edits_are_audited_and_the_audit_stays_bounded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(identity_edits, "AUDIT_ROWS", 3)
    with SightingStore(tmp_path / "s.sqlite") as store:
        build = Builder(store)
        build.track("a", 1, [100.0, 101.0], person=1)
        moved = build.track("a", 2, [102.0], person=1)
        store.merge_identities(1, 2)
        new = store.split_track(moved.track_row)
        assert [(c.actor, c.action, c.from_identity, c.to_identity) for c in store.corrections()] == [
            ("operator", "split", 1, new), ("operator", "merge", 2, 1)]
        for _ in range(3):
            store.merge_identities(1, store.split_track(moved.track_row))
        assert len(store.corrections(limit=100)) == 3  # the newest AUDIT_ROWS
        store.purge_older_than(time.time() + 1)  # retention ages the audit out with the sightings
        assert store.corrections() == []


def test_cameras_are_compared_at_the_moment_the_picture_shows() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    assert Frame("file", 3, 1_800_000_000.0, image, media_time=12.5).moment == 12.5  # however fast it is read
    assert Frame("live", 3, 1_800_000_000.0, image).moment == 1_800_000_000.0
