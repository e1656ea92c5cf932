"""A live RTSP camera served by a real gst-rtsp-server on 127.0.0.1: live, lost, reconnected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reid_desktop.core.config import load
from reid_desktop.core.pipeline import Pipeline, PipelineControl, run
from reid_desktop.core.sources import SourceSpec
from reid_desktop.core.types import FrameResult, SourceState, SourceStatus
from tests.tools.rtsp import RTSP_MARKS, RtspServer, free_port

pytestmark = RTSP_MARKS


@pytest.mark.slow
def test_stream_goes_live_survives_server_loss_and_reconnects(tmp_path: Path, long_clip: Path, demo_clip: Path,
                                                              pose_detector) -> None:
    port = free_port()
    server = RtspServer(long_clip, port)
    server.start()
    cfg = load(overrides={
        "sources.realtime": True, "sources.loop": True, "sources.read_timeout_s": 2.0,
        "sources.open_timeout_s": 3.0, "sources.reconnect_initial_delay_s": 0.2,
        "sources.reconnect_max_delay_s": 1.0, "reid.allow_download": False,
    })
    street = SourceSpec(f"rtsp://viewer:secret@127.0.0.1:{port}/cam", "street")
    lobby = SourceSpec(str(demo_clip), "lobby")
    control = PipelineControl()
    phase, lobby_frames_while_down, people_on_street = "live", 0, 0
    history: list[str] = []
    deadline = time.monotonic() + 150
    try:
        for event in run([street, lobby], cfg, control=control, pipeline=Pipeline(cfg, detector=pose_detector)):
            assert time.monotonic() < deadline, f"stuck in phase {phase}: {history}"
            if isinstance(event, SourceStatus):
                assert "secret" not in event.reason
                if event.source_id == "street":
                    history.append(event.state.value)
                    if phase == "down" and event.state is SourceState.RECONNECTING:
                        phase = "reconnecting"
                    elif phase == "restarted" and event.state is SourceState.LIVE:
                        phase = "live-again"
                assert event.state is not SourceState.FAILED, event
            elif isinstance(event, FrameResult):
                if event.source_id == "street":
                    people_on_street += len(event.persons)
                    if phase == "live" and people_on_street >= 10:
                        server.stop()
                        phase = "down"
                    elif phase == "live-again":
                        control.cancel()
                elif phase == "reconnecting":
                    lobby_frames_while_down += 1
                    if lobby_frames_while_down >= 3:  # the other camera carries on meanwhile
                        server.start()
                        phase = "restarted"
    finally:
        server.stop()
    assert phase == "live-again", history
    assert history[0] in ("connecting", "live") and "reconnecting" in history and history[-1] == "live"
    assert lobby_frames_while_down >= 3
