"""The boxes a node publishes for stations that show its cameras live: their payload (every name, every crowd
fits one notification or says what it left out), what a station may open, and a real server carrying them
from a publisher to a listener that hears only the cameras it watches."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_desktop.core.redaction import redact
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.live_boxes import (
    PAYLOAD_LIMIT,
    LiveBoxes,
    LiveListener,
    LivePublisher,
    format_boxes,
    parse_boxes,
    station_uri,
)
from reid_desktop.core.types import FrameResult, TrackedPerson
from tests.pg_server import PASSWORD

coordinates = st.floats(min_value=0, max_value=4000, allow_nan=False)
persons = st.builds(
    lambda track, identity, target, box, confidence: TrackedPerson(
        track, np.array(box, np.float32), confidence, identity, None, is_target=target),
    st.integers(0, 2**31), st.none() | st.integers(1, 2**62), st.booleans(),
    st.tuples(coordinates, coordinates, coordinates, coordinates), st.floats(0, 1))
names = st.text(min_size=1, max_size=60)


def boxes(node: str, camera: str, people: list[TrackedPerson], media_time: float | None = 12.5) -> LiveBoxes:
    return LiveBoxes(node, camera, 42, 1_800_000_000.25, media_time, 640, 480, (0.5, 0.0, 1.0, 1.0), tuple(people))


@settings(max_examples=60, deadline=None)
@given(names, names, st.lists(persons, max_size=400), st.none() | st.floats(0, 1e6))
def test_every_payload_fits_a_notification_and_reads_back(node: str, camera: str, people: list[TrackedPerson],
                                                           media_time: float | None) -> None:
    sent = boxes(node, camera, people, media_time)
    payload = format_boxes(sent)
    assert len(payload.encode()) <= PAYLOAD_LIMIT
    got = parse_boxes(payload)
    assert (got.node, got.camera, got.frame_index, got.width, got.height, got.region) == (
        node, camera, 42, 640, 480, (0.5, 0.0, 1.0, 1.0))
    assert got.media_time == (None if media_time is None else pytest.approx(media_time))
    assert len(got.persons) + got.left_out == len(people)
    kept = sorted(people, key=lambda p: -p.confidence)[:len(got.persons)]  # the most confident stay
    assert [(p.track_id, p.identity_id, p.is_target) for p in got.persons] == [
        (p.track_id, p.identity_id, p.is_target) for p in kept]
    for mine, theirs in zip(kept, got.persons, strict=True):
        assert np.allclose(mine.box, theirs.box, atol=0.06)


@given(st.text(max_size=200))
def test_what_is_not_a_nodes_boxes_is_refused_with_one_line(payload: str) -> None:
    try:
        parse_boxes(payload)
    except ValueError as exc:
        assert "not a node's live boxes" in str(exc) and "\n" not in str(exc).replace(payload[:80], "")


def test_boxes_are_refused_for_a_bad_region_a_bad_size_or_another_version() -> None:
    good = format_boxes(boxes("n", "c", []))
    for bad in (good.replace('"v":1', '"v":2'), good.replace('"w":640', '"w":0'),
                good.replace("[0.5,0.0,1.0,1.0]", "[0.5,0.0,0.4,1.0]"), good.replace('"t":', '"t":"x","u":')):
        with pytest.raises(ValueError, match="not a node's live boxes"):
            parse_boxes(bad)


def test_boxes_scale_to_the_stations_own_picture() -> None:
    person = TrackedPerson(3, np.array([64, 48, 128, 96], np.float32), 0.9, 7, None, is_target=True)
    result = boxes("n", "c", [person]).on_picture(np.zeros((960, 1280, 3), np.uint8))
    assert result.source_id == "n/c" and result.media_time == 12.5
    assert np.allclose(result.persons[0].box, [128, 96, 256, 192]) and result.persons[0].is_target


def test_a_station_opens_what_it_can_reach_and_says_why_not_otherwise(tmp_path: Path) -> None:
    clip = tmp_path / "gate.mp4"
    clip.write_bytes(b"")
    assert station_uri("n1", str(clip), None) == (str(clip), "")
    assert station_uri("n1", "/nowhere/gate.mp4", None) == (None, "the file /nowhere/gate.mp4 is on node n1, not on "
                                                                 "this station")
    assert station_uri("n1", "0", None)[1] == "a webcam of node n1: its video is only on that machine"
    assert station_uri("n1", "rtsp://cam/stream", None) == ("rtsp://cam/stream", "")
    secret = "rtsp://admin:hunter2@cam/stream"
    stored = redact(secret)
    assert station_uri("n1", stored, None)[0] is None
    assert station_uri("n1", stored, "rtsp://admin:hunter2@other/stream")[0] is None  # another camera's secret
    assert station_uri("n1", stored, secret) == (secret, "")


def test_a_station_hears_the_newest_boxes_of_the_cameras_it_watches(pg_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    location = parse_postgres_url(pg_url)
    heard: list[LiveBoxes] = []
    arrived = threading.Event()

    def deliver(got: LiveBoxes) -> None:
        heard.append(got)
        arrived.set()

    listener = LiveListener(location, deliver)
    listener.watch("node-a/gate")
    listener.start()
    publisher = LivePublisher(location, "node-a", {"gate": (0.0, 0.0, 0.5, 1.0), "hall": None})
    publisher.start()
    try:
        assert listener.listening.wait(30)
        image = np.zeros((480, 320, 3), np.uint8)
        person = TrackedPerson(1, np.array([10, 20, 60, 200], np.float32), 0.8, 5, 0.9, is_target=True)
        for frame in range(50):  # faster than it publishes: only the newest of each burst goes out
            publisher.publish(FrameResult("gate", frame, time.time(), image, (person,)))
            publisher.publish(FrameResult("hall", frame, time.time(), image, ()))
        assert arrived.wait(10)
        time.sleep(3 * 0.1)
        assert heard and {b.source_id for b in heard} == {"node-a/gate"}  # the hall is not watched
        assert heard[-1].frame_index == 49 and heard[-1].region == (0.0, 0.0, 0.5, 1.0)
        assert heard[-1].persons[0].identity_id == 5 and heard[-1].persons[0].is_target
        assert publisher.published < 2 * 50, "bursts are thinned to the newest boxes per camera"
        listener.watch("node-a/gate", False)
        heard.clear()
        publisher.publish(FrameResult("gate", 50, time.time(), image, (person,)))
        time.sleep(1.0)
        assert heard == []
    finally:
        publisher.stop()
        listener.stop()


def test_a_camera_whose_names_do_not_fit_is_said_once_and_the_others_still_go(caplog) -> None:
    publisher = LivePublisher(parse_postgres_url("postgresql://reid@127.0.0.1:9/none"), "node-a", {})
    sets = [boxes("node-a", "x" * 9000, []), boxes("node-a", "gate", [])]
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert [parse_boxes(p).camera for p in publisher._payloads(sets)] == ["gate"]
    assert sum("too long to publish" in r.getMessage() for r in caplog.records) == 1


def test_numbers_too_large_and_nesting_too_deep_are_refused_like_any_bad_payload() -> None:
    good = format_boxes(boxes("n", "c", []))
    assert '"t":1800000000.25' in good
    for bad in (good.replace('"t":1800000000.25', '"t":1' + "0" * 400), "[" * 3000 + "]" * 3000,
                '{"v":1,"p":' + "[" * 3000):
        with pytest.raises(ValueError, match="not a node's live boxes"):
            parse_boxes(bad)


def test_no_payload_stops_a_station_listening(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone who can connect can NOTIFY: numbers past float, 3000 nested brackets, a receiver that fails once.
    The listener refuses each and goes on hearing the good boxes after them."""
    import psycopg

    from reid_desktop.core.store.live_boxes import LIVE_CHANNEL

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    location = parse_postgres_url(pg_url)
    heard: list[LiveBoxes] = []
    arrived = threading.Event()

    def deliver(got: LiveBoxes) -> None:
        if got.frame_index == 13:
            raise RuntimeError("a receiver's own bug")
        heard.append(got)
        arrived.set()

    listener = LiveListener(location, deliver)
    listener.watch("n/c")
    listener.start()
    try:
        assert listener.listening.wait(30)
        good = format_boxes(boxes("n", "c", []))
        unlucky = good.replace('"frame":42', '"frame":13')
        with psycopg.connect(pg_url, password=PASSWORD, autocommit=True) as conn:
            for payload in (good.replace('"t":1800000000.25', '"t":1' + "0" * 400), "[" * 3000 + "]" * 3000,
                            unlucky, good):
                conn.execute("SELECT pg_notify(%s, %s)", (LIVE_CHANNEL, payload))
        assert arrived.wait(10), "the listener stopped hearing"
        assert [b.frame_index for b in heard] == [42]
        assert listener.listening.is_set() and listener.refused == 1  # the failing receiver; the others: not ours
    finally:
        listener.stop()
