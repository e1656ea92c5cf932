from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_desktop.core.capture.sources import DEMO_LINKS, SourceKind, SourceSpec, VideoSource, demo_sources
from reid_desktop.core.config import SourceOptions
from reid_desktop.core.redaction import redact
from reid_desktop.core.topology import parse
from reid_desktop.core.types import PreparedPicture, SourceState, SourceStatus
from tests.tools.mjpeg import MjpegCamera


def drain(source: VideoSource, timeout: float = 60.0) -> list:
    frames, deadline = [], time.monotonic() + timeout
    while not source.exhausted and time.monotonic() < deadline:
        frame = source.get()
        if frame is None:
            source.wakeup.wait(0.05)
            source.wakeup.clear()
        else:
            frames.append(frame)
    return frames


def run_to_end(spec: SourceSpec, **options) -> tuple[VideoSource, list, list[SourceStatus]]:
    statuses: list[SourceStatus] = []
    source = VideoSource(spec, SourceOptions(**options), statuses.append).start()
    frames = drain(source)
    source.stop()
    return source, frames, statuses


def test_source_kinds_and_ids() -> None:
    assert SourceSpec("0").kind is SourceKind.WEBCAM
    assert SourceSpec("0").source_id == "webcam0"
    assert SourceSpec("rtsp://cam.local/stream").kind is SourceKind.STREAM
    assert SourceSpec("https://x/y.m3u8").kind is SourceKind.STREAM
    assert SourceSpec("/videos/lobby.mp4").kind is SourceKind.FILE
    assert SourceSpec("/videos/lobby.mp4").source_id == "lobby"
    assert SourceSpec("rtsp://u:p@cam/s", name="gate").source_id == "gate"


def test_credentials_never_appear_in_ids_or_display() -> None:
    spec = SourceSpec("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101")
    assert "s3cret" not in spec.source_id and "admin" not in spec.display_uri
    assert redact("rtsp://admin:s3cret@host/x") == "rtsp://***@host/x"
    assert redact("rtsp://host/x") == "rtsp://host/x"
    assert redact("/path/with@sign.mp4") == "/path/with@sign.mp4"


def test_file_is_read_completely_without_drops(demo_clip: Path) -> None:
    source, frames, statuses = run_to_end(SourceSpec(str(demo_clip)), queue_size=2)
    assert len(frames) == 80 == source.frame_count
    assert source.frames_dropped == 0
    assert [f.index for f in frames] == list(range(80))
    media = [f.media_time for f in frames]
    assert media == sorted(media) and media[-1] == pytest.approx(7.9, abs=0.11)
    assert [s.state for s in statuses] == [SourceState.LIVE, SourceState.ENDED]


def test_realtime_file_keeps_only_the_newest_frame(demo_clip: Path) -> None:
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(realtime=True)).start()
    time.sleep(1.5)  # nobody consumes: a live-like source must not pile frames up
    frame = source.get()
    source.stop()
    assert frame is not None and frame.index >= 5
    assert source.frames_dropped >= 5
    assert source.get() is None


def take(source: VideoSource, count: int, timeout: float = 60.0) -> list:
    """``count`` frames as the pipeline takes them (the source is stopped afterwards)."""
    frames: list = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        frame = source.get()
        if frame is None:
            time.sleep(0.005)
        else:
            frames.append(frame)
    source.stop()
    return frames


def test_loop_restarts_a_file(demo_clip: Path) -> None:
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(loop=True)).start()
    frames = take(source, 100)
    assert len(frames) == 100
    assert source.state is SourceState.LIVE


def test_missing_file_fails_with_the_path(tmp_path: Path) -> None:
    _, frames, statuses = run_to_end(SourceSpec(str(tmp_path / "nope.mp4")))
    assert frames == []
    assert statuses[-1].state is SourceState.FAILED
    assert "file not found" in statuses[-1].reason and "nope.mp4" in statuses[-1].reason


def test_garbage_file_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video" * 1000)
    _, frames, statuses = run_to_end(SourceSpec(str(bad)))
    assert frames == []
    assert statuses[-1].state is SourceState.FAILED
    assert "garbage.mp4" in statuses[-1].reason


def test_empty_file_fails_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    _, frames, statuses = run_to_end(SourceSpec(str(empty)))
    assert frames == [] and statuses[-1].state is SourceState.FAILED


def test_truncated_file_delivers_what_it_has(tmp_path: Path, demo_clip: Path) -> None:
    data = demo_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov atom first (faststart): the index promises 80 frames
    _, frames, statuses = run_to_end(SourceSpec(str(cut)))
    assert 10 < len(frames) < 80
    assert statuses[-1].state is SourceState.ENDED


def test_dead_webcam_reports_and_gives_up() -> None:
    _, frames, statuses = run_to_end(SourceSpec("97"), reconnect_initial_delay_s=0.05, reconnect_max_attempts=2)
    assert frames == []
    assert statuses[0].state is SourceState.CONNECTING
    assert statuses[-1].state is SourceState.FAILED
    assert "webcam 97 is not available" in statuses[-1].reason and "2 attempts" in statuses[-1].reason


def test_refused_stream_backs_off_without_leaking_credentials() -> None:
    spec = SourceSpec("rtsp://operator:hunter2@127.0.0.1:9/live")  # discard port: connection refused
    started = time.monotonic()
    _, frames, statuses = run_to_end(spec, reconnect_initial_delay_s=0.2, reconnect_max_attempts=3,
                                     open_timeout_s=2.0)
    assert frames == []
    assert statuses[-1].state is SourceState.FAILED
    assert all("hunter2" not in s.reason and "operator" not in s.reason for s in statuses)
    assert "rtsp://***@127.0.0.1:9/live" in statuses[-1].reason
    retries = [s.reason for s in statuses if "retrying in" in s.reason]
    assert retries[:2] == [retries[0], retries[1]] and "0.2 s" in retries[0] and "0.4 s" in retries[1]
    assert time.monotonic() - started >= 0.6  # it did wait between attempts


def test_stop_ends_the_reader_thread(demo_clip: Path) -> None:
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(queue_size=1)).start()
    time.sleep(0.3)  # the queue is full and the reader blocks on it
    before = threading.active_count()
    source.stop(timeout=2.0)
    assert not source.is_alive()
    assert threading.active_count() == before - 1


def test_seek_jumps_within_a_file_and_restarts_one_that_ended(demo_clip: Path) -> None:
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(queue_size=2)).start()
    frames = drain(source)
    source._thread.join(5)
    assert source.exhausted and not source.is_alive()
    source.seek(5.0)  # e.g. the operator clicked a sighting at 0:05 in the timeline
    replay = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (replay and source.exhausted):
        frame = source.get()
        if frame is None:
            time.sleep(0.01)
            continue
        replay.append(frame)
    source.stop()
    assert replay, "the ended file was restarted by the seek"
    assert replay[0].media_time == pytest.approx(5.0, abs=0.15)
    assert len(replay) == pytest.approx(30, abs=2)  # 5.0 s .. 7.9 s at 10 fps
    assert replay[0].index > frames[-1].index  # frame numbers keep increasing: a tracker sees a new segment
    with pytest.raises(ValueError, match="live source"):
        VideoSource(SourceSpec("rtsp://127.0.0.1:9/x")).seek(1.0)


def test_a_stream_that_drops_right_after_connecting_backs_off() -> None:
    statuses: list[SourceStatus] = []
    with MjpegCamera(frames_per_connection=8, fps=40) as camera:  # 0.2 s of frames, then it hangs up
        source = VideoSource(SourceSpec(camera.url, "flaky"), SourceOptions(reconnect_initial_delay_s=0.5,
                                                                            stable_after_s=5.0),
                             statuses.append).start()
        time.sleep(4.0)
        source.stop()
        connections = camera.connections
    # 0.5 + 1 + 2 s of back-off fit in 4 s: a handful of connections (the old code made 20, a tight loop)
    assert 2 <= connections <= 5, connections
    reasons = [s.reason for s in statuses if s.state is SourceState.RECONNECTING]
    assert any("after connecting; retrying in 1.0 s" in r for r in reasons), reasons


def test_a_stream_that_stayed_live_reconnects_at_once() -> None:
    with MjpegCamera(frames_per_connection=12) as camera:  # 0.6 s of frames per connection
        source = VideoSource(SourceSpec(camera.url, "steady"), SourceOptions(reconnect_initial_delay_s=5.0,
                                                                             stable_after_s=0.3)).start()
        time.sleep(3.0)
        source.stop()
    assert camera.connections >= 3  # no 5 s back-off after a connection that was live long enough


def test_huge_frames_are_scaled_down_when_decoded(tmp_path: Path) -> None:
    video = tmp_path / "huge.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (4000, 2000))
    for value in (40, 120, 200):
        writer.write(np.full((2000, 4000, 3), value, np.uint8))
    writer.release()
    _, frames, _ = run_to_end(SourceSpec(str(video)), max_frame_pixels=1_000_000)
    assert len(frames) == 3
    assert all(f.image.shape[0] * f.image.shape[1] <= 1_000_000 for f in frames)
    assert frames[0].image.shape[1] / frames[0].image.shape[0] == pytest.approx(2.0, rel=0.01)


def test_a_file_queue_is_bounded_in_bytes(demo_clip: Path) -> None:
    # 768 x 576 x 3 = 1.3 MB a frame: 2 MB hold one frame, whatever the frame count allows
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(queue_size=64, queue_max_mb=2)).start()
    time.sleep(1.0)
    assert source.buffered == 1 and source.buffered_bytes == 768 * 576 * 3
    frames = drain(source)
    source.stop()
    assert len(frames) == 80  # bounded, and still no frame lost


def test_a_stopped_source_frees_its_frames(demo_clip: Path) -> None:
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(queue_size=8)).start()
    time.sleep(1.0)
    assert source.buffered == 8
    source.stop(timeout=5.0)
    assert not source.is_alive() and source.buffered == 0 and source.buffered_bytes == 0


def test_the_demo_is_two_looping_halves_of_the_clip_that_share_a_strip(demo_clip: Path) -> None:
    left, right = demo_sources()
    assert (left.source_id, right.source_id) == ("demo-left", "demo-right") and left.loop and right.loop
    assert left.realtime and right.realtime  # the window plays the demo at the clip's own pace
    assert parse(DEMO_LINKS).possible("demo-left", 0.0, "demo-right", 0.0)  # one person in both at once
    pictures = {}
    for spec in (left, right):
        source = VideoSource(dataclasses.replace(spec, realtime=False)).start()  # read fast for the test
        frames = take(source, 100)  # the clip has 80 frames: it looped
        assert len(frames) == 100 and source.state is SourceState.LIVE
        pictures[spec.name] = frames[0].image
    whole = cv2.VideoCapture(str(demo_clip)).read()[1]
    assert pictures["demo-left"].shape == (576, 422, 3) and pictures["demo-right"].shape == (576, 422, 3)
    assert np.array_equal(pictures["demo-left"], whole[:, :422]) and np.array_equal(pictures["demo-right"],
                                                                                     whole[:, 346:])


@pytest.mark.parametrize("region", [(0.5, 0.0, 0.5, 1.0), (0.0, -0.1, 1.0, 1.0), (0.0, 0.0, 1.2, 1.0)])
def test_an_impossible_region_is_refused_when_the_camera_is_described(region: tuple) -> None:
    with pytest.raises(ValueError, match="expected left < right and top < bottom"):
        SourceSpec("clip.mp4", "cam", region)


def test_every_decoded_picture_reaches_the_display_also_those_analysis_skips(demo_clip: Path) -> None:
    pictures: list = []
    source = VideoSource(SourceSpec(str(demo_clip), "cam", realtime=True), on_picture=pictures.append).start()
    taken = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # a slow analysis: a frame every 0.3 s of a 10 fps clip
        frame = source.get()
        if frame is not None:
            taken.append(frame)
        time.sleep(0.3)
    source.stop()
    assert len(taken) >= 5 and len(pictures) >= 2 * len(taken) and source.frames_dropped > 0
    assert [p.index for p in pictures] == list(range(len(pictures)))  # every one, in order
    assert {f.index for f in taken} <= {p.index for p in pictures}


class RecordingPreparer:
    """A stand-in for the detector's pre-processing: a quarter-size copy, and the threads it ran on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, image: np.ndarray) -> PreparedPicture:
        self.threads.append(threading.current_thread().name)
        return PreparedPicture(320, image[::4, ::4].copy())


def test_a_file_read_for_analysis_has_every_picture_prepared_on_its_reader_thread(demo_clip: Path) -> None:
    prepare = RecordingPreparer()
    source = VideoSource(SourceSpec(str(demo_clip)), SourceOptions(queue_size=2), prepare=prepare).start()
    frames = drain(source)
    source.stop()
    assert len(frames) == 80 and len(prepare.threads) == 80
    assert all(f.prepared is not None and np.array_equal(f.prepared.picture, f.image[::4, ::4]) for f in frames)
    assert threading.main_thread().name not in prepare.threads


def test_a_live_source_prepares_pictures_only_while_analysis_takes_every_one(demo_clip: Path) -> None:
    """Work done ahead for a picture that is then dropped is lost: a camera faster than its analysis prepares
    nothing, one whose every picture is analysed prepares them all."""
    prepare = RecordingPreparer()
    source = VideoSource(SourceSpec(str(demo_clip), loop=True), SourceOptions(realtime=True), prepare=prepare).start()
    prompt: list = []
    deadline = time.monotonic() + 4.5  # the clip runs at 10 frames/s: 45 pictures, each taken as it comes
    while time.monotonic() < deadline:
        frame = source.get()
        if frame is None:
            time.sleep(0.005)
        else:
            prompt.append(frame)
    time.sleep(1.0)  # analysis falls behind: pictures are dropped
    made_before_slow = len(prepare.threads)
    slow = []
    for _ in range(8):  # then takes one picture of three or four
        time.sleep(0.35)
        slow.append(source.get())
    source.stop()
    taken_slowly = [frame for frame in slow if frame is not None]
    assert source.frames_dropped >= 10 and len(taken_slowly) >= 6
    assert prompt[0].prepared is None and all(frame.prepared is not None for frame in prompt[-5:])
    assert all(frame.prepared is None for frame in taken_slowly)
    assert len(prepare.threads) == made_before_slow
