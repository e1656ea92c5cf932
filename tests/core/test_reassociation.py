"""Background re-association: hand-offs the engine missed are linked through the learned camera links, what
nothing supports is left apart, the operator's decisions are never changed, the engine never waits, and the window
stays bounded; through the real pipeline the corrections reach the store (audited) and the live labels."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.identity.reassociation import ReassociationSettings, Reassociator
from reid_desktop.core.identity.tracklets import TrackletView, TrackletWindow
from reid_desktop.core.store.interface import TrackKey
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.topology import CameraLinks, parse
from reid_desktop.core.types import Detections, Frame
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_pipeline_faults import config
from tests.core.test_revisable_identities import SIZE, person_patch

DIM = 16
WALK_S = 3.0


def view(key: Hashable, camera: str, start: float, end: float, look: np.ndarray, identity: int | None,
         locked: bool = False, entry: tuple[float, float] = (0.1, 0.5), exit: tuple[float, float] = (0.9, 0.5),
         ended: bool = True) -> TrackletView:
    path = np.array([[start, *entry], [end, *exit]])
    return TrackletView(key, TrackKey(camera, f"{camera}.mp4", "file", 0, hash(key) % 10_000), camera, start, end,
                        entry, exit, path, (look / np.linalg.norm(look)).astype(np.float32), 5, 20, identity,
                        locked, ended)


def looks(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.normal(size=(count, DIM)).astype(np.float32)


def seen(look: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return look + 0.15 * rng.normal(size=DIM).astype(np.float32)


def walkers(rng: np.random.Generator, count: int, yard_identity: int = 100) -> list[TrackletView]:
    """``count`` people walk through gate and then yard (a 3 s walk), one every 20 s; the engine missed every
    hand-off: each yard track holds a new identity."""
    people = looks(rng, count)
    views = []
    for p, look in enumerate(people):
        t = 20.0 * p
        views.append(view(("gate", p), "gate", t, t + 5, seen(look, rng), identity=p + 1))
        views.append(view(("yard", p), "yard", t + 5 + WALK_S, t + 12, seen(look, rng), identity=yard_identity + p))
    return views


def settle(views: Sequence[TrackletView], links: CameraLinks | None = None, threshold: float = 0.8):
    reassociator = Reassociator(ReassociationSettings(horizon_s=60.0), links or CameraLinks())
    try:
        return reassociator.settle(views, threshold)
    finally:
        reassociator.close()


def test_hand_offs_the_engine_missed_are_linked_through_the_learned_walk() -> None:
    views = walkers(np.random.default_rng(0), 12)
    result = settle(views)
    assert result is not None
    moved = {change.key: change.identity_id for change in result.reassignments}
    assert moved == {("yard", p): p + 1 for p in range(12)}  # each yard track takes its walker's gate identity
    assert result.evidence.evidence("gate", "yard", WALK_S) > 0


def test_alike_people_at_a_gap_the_links_do_not_support_are_left_apart() -> None:
    """Twins: the second walks into the yard 40 s after the first left the gate; the learned walk is 3 s."""
    rng = np.random.default_rng(1)
    views = walkers(rng, 12)
    twin = views[0].descriptor
    views.append(view(("yard", "twin"), "yard", 45.0, 50.0, seen(twin, rng), identity=1))  # the engine linked it
    views.append(view(("gate", "other"), "gate", 46.0, 49.0, seen(twin, rng), identity=1))
    result = settle(views)
    assert result is not None
    changed = {c.key: c for c in result.reassignments}
    # the twin and the other were linked by appearance alone, where the window can tell: they get identities of
    # their own (one keeps 1: it holds walker 0's gate track)
    assert ("yard", "twin") in changed or ("gate", "other") in changed
    assert changed.get(("yard", 0)) is not None and changed[("yard", 0)].identity_id == 1


def test_what_the_window_cannot_tell_is_left_as_the_engine_linked_it() -> None:
    """No links learned yet (a new installation): the engine's appearance links stand."""
    rng = np.random.default_rng(2)
    look = looks(rng, 1)[0]
    views = [view("a", "gate", 0.0, 4.0, seen(look, rng), identity=7),
             view("b", "yard", 30.0, 40.0, seen(look, rng), identity=7)]
    result = settle(views)
    assert result is not None and result.reassignments == ()


def test_the_operators_decisions_are_never_changed() -> None:
    rng = np.random.default_rng(3)
    views = walkers(rng, 12)
    views[1] = view(("yard", 0), "yard", 8.0, 12.0, views[1].descriptor, identity=500, locked=True)  # split off
    views[3] = view(("yard", 1), "yard", 28.0, 32.0, views[3].descriptor, identity=101, locked=True)  # followed
    result = settle(views)
    assert result is not None
    keys = {c.key for c in result.reassignments}
    assert ("yard", 0) not in keys and ("yard", 1) not in keys
    assert all(c.previous != 500 or c.identity_id is None for c in result.reassignments)
    # the gate track of walker 1 joins the followed yard track: it takes the operator's identity
    assert {c.key: c.identity_id for c in result.reassignments}.get(("gate", 1)) == 101


def test_people_seen_together_in_one_camera_are_never_one_chain() -> None:
    rng = np.random.default_rng(4)
    views = walkers(rng, 12)
    look = views[0].descriptor
    views += [view("twin-a", "gate", 300.0, 306.0, seen(look, rng), identity=900),
              view("twin-b", "gate", 303.0, 309.0, seen(look, rng), identity=900)]
    result = settle(views)
    assert result is not None
    final = {v.key: v.identity_id for v in views}
    final.update({c.key: c.identity_id for c in result.reassignments})
    assert final["twin-a"] != final["twin-b"]


def test_overlapping_cameras_link_a_person_seen_in_both_at_once() -> None:
    rng = np.random.default_rng(5)
    people = looks(rng, 6)
    views = []
    for p, look in enumerate(people):
        t = 30.0 * p
        views.append(view(("north", p), "north", t, t + 10, seen(look, rng), identity=p + 1))
        views.append(view(("south", p), "south", t + 6, t + 16, seen(look, rng), identity=50 + p))
    result = settle(views, parse("north = south"))
    assert result is not None
    assert {c.key: c.identity_id for c in result.reassignments} == {("south", p): p + 1 for p in range(6)}
    apart = settle(views)  # not declared: one person cannot be in both at once
    assert apart is not None and apart.reassignments == ()


def walking(key: Hashable, camera: str, start: float, end: float, place: Callable[[float], tuple[float, float]],
            look: np.ndarray, identity: int) -> TrackletView:
    """A track whose foot point is ``place(moment)``, kept every half second as the engine keeps it."""
    moments = np.arange(start, end + 1e-9, 0.5)
    path = np.array([[m, *place(float(m))] for m in moments])
    return TrackletView(key, TrackKey(camera, f"{camera}.mp4", "file", 0, hash(key) % 10_000), camera, start, end,
                        place(start), place(end), path, (look / np.linalg.norm(look)).astype(np.float32), 5, 20,
                        identity, False, True)


def test_overlapping_cameras_learn_where_one_picture_lies_in_the_other_and_link_unlike_looks_by_it() -> None:
    """North sees the ground at x 0-1, south the same ground from x 0.7 on (north's 0.7 is south's 0): people walk
    from north into south, and through the two cameras they look nothing alike (as a colour cast can make them).
    Someone stands in north meanwhile, so most pairs seen together are two people. The pass learns the map and
    joins each walker's two tracks; a south track that walks where nobody in north is stays apart."""
    rng = np.random.default_rng(7)
    views, lane = [], {}
    for p in range(12):
        t, lane[p] = 20.0 * p, 0.5 + 0.02 * (p % 5)
        walk = (lambda start, y: lambda m: (0.2 + 0.08 * (m - start), y))(t, lane[p])
        views.append(walking(("north", p), "north", t, t + 10, walk, looks(rng, 1)[0], identity=p + 1))
        views.append(walking(("stands", p), "north", t, t + 10, lambda m: (0.35, 0.8), looks(rng, 1)[0], 40 + p))
        mapped = (lambda w: lambda m: (w(m)[0] - 0.7, w(m)[1]))(walk)
        views.append(walking(("south", p), "south", t + 6.5, t + 16, mapped, looks(rng, 1)[0], identity=70 + p))
    stray = views[-1]  # the last south track walks a lane nobody in north walks
    views[-1] = walking(stray.key, "south", stray.start, stray.end, lambda m: (0.5, 0.95), stray.descriptor, 81)
    # someone in south who looks just like walker 3 while walker 3 is in north, far from where the map puts them
    views.append(walking("double", "south", 62.0, 69.0, lambda m: (0.6, 0.2), views[9].descriptor, identity=90))
    result = settle(views, parse("north = south"))
    assert result is not None
    assert ("north", "south") in result.evidence.ground
    moved = {c.key: c.identity_id for c in result.reassignments}
    assert moved == {("south", p): p + 1 for p in range(11)}  # and the double keeps their own identity
    without_map = settle(views[:6], parse("north = south"))  # two walkers: too few pairs to learn a map from
    assert without_map is not None and without_map.reassignments == ()
    setting_off = Reassociator(ReassociationSettings(horizon_s=60.0, place_links=False), parse("north = south"))
    try:
        off = setting_off.settle(views, 0.8)
    finally:
        setting_off.close()
    assert off is not None and not off.evidence.ground
    found = [c for c in off.reassignments if c.key[0] == "south" and c.identity_id == c.key[1] + 1]
    assert len(found) < 6, found  # appearance alone finds few of the 11 (their looks are unrelated)


def test_a_pass_runs_beside_the_engine_which_never_waits() -> None:
    views = walkers(np.random.default_rng(6), 150)
    reassociator = Reassociator(ReassociationSettings(interval_s=5.0), CameraLinks())
    try:
        assert reassociator.due(100.0)
        started = time.perf_counter()
        reassociator.submit(views, 0.8, 100.0)
        assert time.perf_counter() - started < 0.5  # handed over, not run here
        assert not reassociator.due(200.0)  # one at a time
        deadline = time.monotonic() + 60
        result = reassociator.take()
        while result is None and time.monotonic() < deadline:
            time.sleep(0.05)
            result = reassociator.take()
        assert result is not None and reassociator.take() is None  # taken once
        assert not reassociator.due(103.0) and reassociator.due(105.0)
    finally:
        reassociator.close()


def test_the_window_stays_bounded_over_a_long_run() -> None:
    window = TrackletWindow(window_s=600.0, max_tracklets=500)
    key = TrackKey("gate", "gate.mp4", "file", 0, 0)
    for n in range(20_000):  # a day of people, one every 4 s
        moment = 4.0 * n
        window.saw(n, key, "gate", moment, (0.5, 0.5), n).add_appearance(np.ones(DIM, np.float32))
        window.saw(n, key, "gate", moment + 3, (0.6, 0.5), n)
        window.end(n)
        assert len(window) <= 500
    newest = 4.0 * 19_999 + 3
    kept = window.snapshot()
    assert len(kept) == 151 and all(v.end >= newest - 600 for v in kept)  # the last ten minutes
    window.saw("new", key, "gate", newest, (0.5, 0.5), None)
    assert len(window.snapshot()) == 151  # a track with no appearance yet is not re-associated


# -- through the real pipeline -------------------------------------------------------------------------

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200), (40, 200, 200),
           (230, 130, 30), (30, 130, 230), (130, 30, 230), (130, 230, 30), (230, 30, 130), (30, 230, 130)]


class Painted:
    """Pictures and the boxes painted into them: the detector reports exactly those."""

    name = "painted"

    def __init__(self) -> None:
        self.boxes: dict[int, list[tuple[float, float]]] = {}

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            rows = [[x, y, x + 50, y + 120, 0.9, 0] for x, y in self.boxes.get(id(image), [])]
            out.append(Detections(np.asarray(rows, np.float32).reshape(-1, 6)))
        return out


def dressed(person: int, rng: np.random.Generator) -> np.ndarray:
    """A person's picture: a coat and trousers of their own colours."""
    patch = person_patch(COLOURS[person % 12], rng)
    patch[70:] = person_patch(COLOURS[(5 * person + 3) % 12], rng)[70:]
    return patch


def walk(detector: Painted, pairs: int, rng: np.random.Generator) -> list[list[Frame]]:
    """People walk in twos through camera ``gate`` (2 s), then after a 1 s walk through ``yard`` (4 s); a pair
    every 6 to 14 s. Returns the frames of each moment (both cameras)."""
    arrivals = np.cumsum(rng.uniform(6.0, 14.0, pairs)) - 6.0
    steps: list[list[Frame]] = []
    for index in range(int((arrivals[-1] + 9.0) * 10)):
        moment = index * 0.1
        frames = []
        for camera, (begin, end) in (("gate", (0.0, 2.0)), ("yard", (3.0, 7.0))):
            image = np.full((*SIZE, 3), 128, np.uint8)
            boxes = []
            for pair, arrival in enumerate(arrivals):
                since = moment - arrival
                if begin <= since < end:
                    for side, x in enumerate((40.0, 200.0)):
                        image[60:180, int(x):int(x) + 50] = dressed(2 * pair + side, rng)
                        boxes.append((x, 60.0))
            detector.boxes[id(image)] = boxes
            frames.append(Frame(camera, index, 1000.0 + moment, image, moment))
        steps.append(frames)
    return steps


def test_through_the_pipeline_hand_offs_are_corrected_in_the_store_and_on_screen(tmp_path: Path) -> None:
    """The engine's own matcher is told to link nothing (threshold 1): every yard track starts as someone new.
    Re-association learns the 1 s walk and gives each yard track its walker's identity: stored with an audit row,
    and shown on the live track once the pass is taken."""
    rng = np.random.default_rng(7)
    detector = Painted()
    steps = walk(detector, pairs=6, rng=rng)
    cfg = config(**{"reid.embed_every": 2, "matcher.threshold": 1.0, "matcher.reassociation_interval_s": 0.5,
                    "storage.sightings_per_second": 0})
    shown: dict[tuple[str, int], list[int | None]] = {}
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=detector, embedder=ColorTextureEmbedder())
        for frames in steps:
            for result in pipeline.process(frames):
                for person in result.persons:
                    shown.setdefault((result.source_id, person.track_id), []).append(person.identity_id)
            time.sleep(0.002)  # a camera's pace: the passes have time to finish
        pipeline.close()
        by_camera = {camera: store.sightings(source=camera) for camera in ("gate", "yard")}
        audit = [c for c in store.corrections(limit=1000) if c.actor == "auto" and c.action == "reassign"]
    assert audit, "no re-association correction was stored"
    gate_ids = {s.identity_id for s in by_camera["gate"]} - {None}  # None: a track's first frames (look-up)
    yard_ids = {s.identity_id for s in by_camera["yard"]}
    assert len(gate_ids) == 12  # twelve people
    assert len(yard_ids & gate_ids) >= 10  # the walkers keep their identity into the yard
    corrected_live = [ids for key, ids in shown.items() if key[0] == "yard" and len(set(ids) - {None}) > 1
                      and ids[-1] in gate_ids]
    assert corrected_live, "no live yard track took its walker's identity while it was on screen"


@pytest.mark.parametrize("enabled", [True, False])
def test_re_association_is_a_setting(tmp_path: Path, enabled: bool) -> None:
    cfg = config(**{"matcher.reassociation": enabled})
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(cfg, store, detector=Painted(), embedder=ColorTextureEmbedder())
        assert pipeline.regrouping.active == enabled
        pipeline.close()
