"""How soon an RTSP camera shows its first picture: ``python bench/rtsp_open.py [--opens 5]``.

A real gst-rtsp-server on 127.0.0.1 (the tests' server: Debian's python3-gi and gst-rtsp-server) serves the demo
clip. Each round restarts the server, as a camera that comes back does, and times a capture from the moment it
answers to the first decoded picture, with the app's open timeout (``sources.open_timeout_s``). The baseline runs
first, in the same process: FFmpeg's own look at a new stream (RTSP over TCP only); then the app's FFmpeg options.
Figures only, no asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid_desktop.core.capture import sources  # noqa: E402
from reid_desktop.core.config import SourceOptions  # noqa: E402
from tests.conftest import DEMO_CLIP  # noqa: E402
from tests.tools.rtsp import RtspServer, free_port  # noqa: E402

OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def first_picture_s(server: RtspServer, url: str, open_timeout_s: float) -> float:
    """Seconds from the server's return to the first decoded picture."""
    server.start()
    try:
        started = time.monotonic()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000)])
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
        if not ok:
            raise RuntimeError(f"no picture from {url}")
        return time.monotonic() - started
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=5, help="server restarts per variant")
    args = parser.parse_args()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    timeout_s = SourceOptions().open_timeout_s
    variants = {"FFmpeg's own look (baseline)": "rtsp_transport;tcp",
                "the app's options": sources.FFMPEG_ENVIRONMENT[OPTIONS]}
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "long.mp4"  # long enough never to end during a round
        subprocess.run(["ffmpeg", "-loglevel", "error", "-stream_loop", "9", "-i", str(DEMO_CLIP), "-c", "copy",
                        str(clip)], check=True, timeout=60)
        port = free_port()
        server = RtspServer(clip, port)
        print(f"RTSP camera (H.264 {DEMO_CLIP.name}) restarted {args.opens} times per variant; "
              f"open timeout {timeout_s:.0f} s")
        print(f"{'variant':32} {'FFmpeg options':45} {'median s':>9} {'max s':>7}")
        figures = {}
        for name, value in variants.items():
            os.environ[OPTIONS] = value  # OpenCV reads it at every open
            times = [first_picture_s(server, f"rtsp://127.0.0.1:{port}/cam", timeout_s) for _ in range(args.opens)]
            figures[name] = statistics.median(times)
            print(f"{name:32} {value:45} {figures[name]:9.2f} {max(times):7.2f}")
        baseline, app = figures.values()
        print(f"first picture {baseline / app:.1f}x sooner with the app's options")


if __name__ == "__main__":
    main()
