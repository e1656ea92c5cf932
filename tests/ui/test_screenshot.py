"""The main window on a real X server (Xvfb) with live feeds, saved as a PNG and checked for content."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.tools.screens import read_window_with_video

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Debian's xvfb (make test installs it)")
def test_the_demo_on_a_real_screen_shows_a_followed_person_on_both_cameras(tmp_path: Path, osnet_path: Path) -> None:
    out = tmp_path / "main-window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "REID_DESKTOP_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1400x860x24", sys.executable, "tests/tools/gui_screenshot.py", str(out),
         str(osnet_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "platform=xcb screen=1400x860" in proc.stdout
    image = read_window_with_video(out, 1400, 860)
    target_red = np.all(np.abs(image.astype(int) - [40, 40, 255]) < 30, axis=2)  # BGR of the target frame
    assert target_red.sum() > 100  # the highlighted target is drawn
    # on both demo cameras: the person was handed over from one to the other and is followed on both
    feeds = {}
    for line in proc.stdout.splitlines():
        if line.startswith("feed="):
            name, x, y, w, h = line[len("feed="):].split()
            feeds[name] = (int(x), int(y), int(w), int(h))
    assert set(feeds) == {"demo-left", "demo-right"}, proc.stdout
    for name, (x, y, w, h) in feeds.items():
        assert target_red[y:y + h, x:x + w].sum() > 30, f"no followed person drawn on {name}"
