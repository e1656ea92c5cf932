"""The window's camera list, without Qt: one record per camera, kept in step through every change."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.types import SourceState, SourceStatus
from reid_desktop.ui.cameras import AS_FAST_AS_POSSIBLE, CameraError, CameraList, parse_rate, rate_choices, rate_text
from reid_desktop.ui.settings import SavedSource
from tests.conftest import ROOT


def test_the_camera_list_needs_no_qt() -> None:
    code = "import sys, reid_desktop.ui.cameras; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_names_stay_unique_and_order_is_kept(memory_keyring) -> None:
    cameras = CameraList()
    names = [cameras.add("/clips/door.mp4").camera.name for _ in range(3)]
    assert names == ["door", "door-2", "door-3"]
    cameras.add("0", "lobby")
    cameras.rename("door-2", "yard")
    assert cameras.names() == ["door", "yard", "door-3", "lobby"]
    assert [s.name for s in cameras.saved()] == cameras.names()
    with pytest.raises(CameraError, match="already a camera named lobby"):
        cameras.rename("yard", "lobby")
    assert cameras.remove("door") is not None and cameras.remove("door") is None
    assert cameras.names() == ["yard", "door-3", "lobby"]


def test_secrets_go_to_the_keyring_and_follow_renames_and_removals(memory_keyring) -> None:
    cameras = CameraList()
    added = cameras.add("rtsp://127.0.0.1:8554/cam", "gate", username="admin", password="s3cret")
    assert added.warning == "" and added.camera.uri == "rtsp://admin:s3cret@127.0.0.1:8554/cam"
    saved = cameras.saved()[0]
    assert saved.uri == "rtsp://127.0.0.1:8554/cam" and saved.has_password and "s3cret" not in repr(saved)
    assert "s3cret" in str(memory_keyring.secrets)

    cameras.rename("gate", "front")
    assert list(memory_keyring.secrets) == [("reid-desktop", "source:front")]
    restored = CameraList().restore(cameras.saved()[0])
    assert restored.warning == "" and restored.camera.uri == "rtsp://admin:s3cret@127.0.0.1:8554/cam"
    cameras.remove("front")
    assert memory_keyring.secrets == {} and cameras.saved() == []


def test_a_saved_camera_whose_secret_is_gone_says_so() -> None:
    restored = CameraList().restore(SavedSource("gate", "rtsp://127.0.0.1:8554/cam", "", True, False))
    assert "not in the system keyring" in restored.warning


def test_pause_state_and_session_only_cameras(memory_keyring) -> None:
    cameras = CameraList()
    cameras.add("/clips/door.mp4", paused=True)
    demo = cameras.add("/clips/demo.avi", persist=False).camera
    assert demo.transient and [s.name for s in cameras.saved()] == ["door"]
    assert cameras.paused() == {"door"} and cameras.saved()[0].paused
    cameras.set_paused("door", False)
    assert cameras.paused() == set() and not cameras.saved()[0].paused
    assert [s.source_id for s in cameras.specs()] == ["door", "demo"]

    failed = SourceStatus("demo", SourceState.FAILED, "cannot open")
    assert cameras.update(failed) is demo and (demo.state, demo.reason) == (SourceState.FAILED, "cannot open")
    assert cameras.update(SourceStatus("gone", SourceState.LIVE)) is None


def test_a_session_camera_keeps_what_its_spec_says(memory_keyring) -> None:
    from reid_desktop.core.capture.sources import demo_sources

    cameras = CameraList()
    for spec in demo_sources():
        cameras.add_session(spec)
    assert cameras.specs() == demo_sources() and cameras.saved() == []  # region, loop, real time: not saved


def test_the_window_opens_the_very_record_the_core_is_given(memory_keyring) -> None:
    """A camera in the window is its core ``SourceSpec`` plus what only the window knows: nothing of the spec is
    copied field by field (and so nothing, such as the analysis rate, is left behind)."""
    from reid_desktop.core.capture.sources import SourceSpec

    spec = SourceSpec("clip.mp4", "door", (0.0, 0.0, 0.5, 1.0), loop=True, realtime=True, analysis_fps=2.0)
    camera = CameraList().add_session(spec).camera
    assert camera.spec == spec and (camera.name, camera.uri) == ("door", "clip.mp4")


def test_video_files_play_in_real_time_unless_every_frame_is_asked_for(memory_keyring) -> None:
    cameras = CameraList()
    door = cameras.add("/clips/door.mp4").camera
    assert door.spec.realtime and not cameras.saved()[0].analyse_every_frame
    cameras.set_every_frame("door", True)
    assert not door.spec.realtime and cameras.saved()[0].analyse_every_frame
    again = CameraList().restore(cameras.saved()[0]).camera
    assert not again.spec.realtime  # the choice is kept with the camera


def test_a_camera_keeps_its_own_analysis_rate(memory_keyring) -> None:
    cameras = CameraList()
    door = cameras.add("/clips/door.mp4").camera
    assert door.spec.analysis_fps is None and cameras.saved()[0].analysis_fps is None  # the setting for all
    cameras.set_analysis_rate("door", 2.5)
    assert door.spec.analysis_fps == 2.5 and cameras.saved()[0].analysis_fps == 2.5
    assert CameraList().restore(cameras.saved()[0]).camera.spec.analysis_fps == 2.5
    cameras.set_analysis_rate("door", 0.0)  # no limit, whatever the setting for all cameras says
    assert door.spec.analysis_fps == 0.0


def test_analysis_rate_choices_parse_back() -> None:
    choices = rate_choices(4.0)
    assert choices[0] == "Same as all cameras (4 frames/s)" and rate_choices(0)[0].endswith("(as many as the "
                                                                                            "machine manages)")
    assert parse_rate(choices[0], 4.0) is None and parse_rate(AS_FAST_AS_POSSIBLE, 4.0) == 0.0
    assert parse_rate("5 frames/s", 4.0) == 5.0 and parse_rate(" 7,5 ", 4.0) == 7.5
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate("fast", 4.0)
    with pytest.raises(ValueError, match="out of range"):
        parse_rate("-2", 4.0)


@given(st.floats(min_value=0, max_value=1000, allow_nan=False))
def test_every_rate_shown_parses_back_to_itself(rate: float) -> None:
    assert parse_rate(rate_text(rate), 1.0) == pytest.approx(float(f"{rate:g}"))


@given(st.text(max_size=30))
def test_typed_rates_are_a_rate_or_one_clear_error(text: str) -> None:
    try:
        value = parse_rate(text, 3.0)
    except ValueError as exc:
        assert "rate" in str(exc) or "range" in str(exc)
        return
    assert value is None or 0.0 <= value <= 1000.0
