"""``reid-desktop`` without a command opens the window; ``--demo`` opens it on the bundled clip."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def sightings_of(database: Path, source: str) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute("SELECT COUNT(*) FROM sightings s JOIN sources src ON src.id = s.source_id "
                             "WHERE src.name = ?", (source,)).fetchone()
            return int(row[0])
    except sqlite3.Error:  # not created yet
        return 0


def identities_in_both(database: Path, first: str, second: str) -> int:
    """Identities whose tracks are in both cameras: people handed over from one camera to the other."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute("SELECT COUNT(*) FROM (SELECT t.identity_id FROM tracks t JOIN sources src "
                             "ON src.id = t.source_id WHERE src.name IN (?, ?) AND t.identity_id IS NOT NULL "
                             "GROUP BY t.identity_id HAVING COUNT(DISTINCT src.name) = 2)", (first, second)).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0


def test_demo_opens_the_window_processes_the_clip_and_closes_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "REID_DESKTOP_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "reid_desktop", "--demo"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    database = data / "sightings.sqlite"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and (
                min(sightings_of(database, "demo-left"), sightings_of(database, "demo-right")) < 20
                or not identities_in_both(database, "demo-left", "demo-right")):
            time.sleep(1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        # the GUI's engine processed both cameras of the demo, and someone kept their number across them
        assert min(sightings_of(database, "demo-left"), sightings_of(database, "demo-right")) >= 20
        assert identities_in_both(database, "demo-left", "demo-right") >= 1
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert (data / "settings.json").exists()
    assert '"sources": []' in (data / "settings.json").read_text()  # the demo cameras are not saved


def test_commands_still_reach_the_headless_cli() -> None:
    from reid_desktop import __version__

    out = subprocess.run([sys.executable, "-m", "reid_desktop", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"reid-desktop {__version__}"
    out = subprocess.run([sys.executable, "-m", "reid_desktop", "gui", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--demo" in out.stdout


def test_closing_while_a_model_is_being_built_exits_cleanly(tmp_path: Path) -> None:
    import json

    import torch
    import torchvision

    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)  # the default model is built from it
    database = tmp_path / "s.sqlite"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"database": str(database), "pipeline": {
        "reid.weights": str(weights), "reid.allow_download": False, "detector.device": "cpu"}}))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "REID_DESKTOP_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "reid_desktop", "--demo", "--settings", str(settings)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not Path(f"{database}.lock").exists():
            time.sleep(0.1)
        time.sleep(0.5)  # the engine holds the database and is loading the detector, then building ResNet-50
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)  # a shutdown while the models are not ready yet
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "QThread: Destroyed while thread is still running" not in stderr and "Traceback" not in stderr
    assert "did not stop within" in stderr  # it did have to wait for the build
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("cancelled",)]
