"""A real RTSP camera for tests: Debian's gst-rtsp-server run by Debian's own python3 on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).resolve().parent / "rtsp_server.py"


def _gst_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert all(Gst.ElementFactory.find(e) for e in ('qtdemux', 'h264parse', 'rtph264pay'))")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60).returncode == 0


RTSP_MARKS = [
    pytest.mark.rtsp,
    pytest.mark.skipif(not _gst_available(), reason="needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0 and "
                                                    "gstreamer1.0-plugins-good/bad (make system-deps)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to lengthen the demo clip"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """``user`` and ``password`` make it require Basic authentication (passed in its environment)."""

    def __init__(self, video: Path, port: int, mount: str = "/cam", user: str = "", password: str = "",
                 lifetime_s: int = 150) -> None:
        self.args = [SYSTEM_PYTHON, str(SERVER), str(video), str(port), mount, str(lifetime_s)]
        self.env = {**os.environ, "RTSP_TEST_USER": user, "RTSP_TEST_PASSWORD": password}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def needs_rtsp(test):
    """Mark a test as needing the RTSP stack (skipped with the reason when it is missing)."""
    for mark in RTSP_MARKS:
        test = mark(test)
    return test
