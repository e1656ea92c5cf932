"""Leak canary: a camera whose password is a marker, used for real (the test RTSP server demands it) in a
command-line session and a window session; afterwards the marker is searched for everywhere the app
writes or shows anything: output, logs, settings, the database and its WAL, exports, the HTML report,
thread names, keyring account names and the command lines of every process involved."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from reid_desktop.core import logs
from reid_desktop.core.store.report import write_html_report
from reid_desktop.core.store.storage import SightingStore
from tests.conftest import ROOT
from tests.tools.rtsp import RtspServer, free_port, needs_rtsp

pytestmark = pytest.mark.slow
WAIT_MS = 120_000
MARKER = "Cn4ry#pw/9@Zx"  # with the characters that break naive URL parsing
FORMS = (MARKER, quote(MARKER, safe=""), quote(MARKER), "Cn4ry")  # raw, encoded, and its distinctive core


class Evidence:
    """Everything collected during the sessions, by where it came from."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, where: str, data: bytes | str) -> None:
        self.blobs[where] = self.blobs.get(where, b"") + (data.encode() if isinstance(data, str) else data)

    def add_file(self, where: str, path: Path) -> None:
        if path.exists():
            self.add(where, path.read_bytes())

    def add_database(self, where: str, database: Path) -> None:
        for suffix in ("", "-wal", "-shm", ".lock"):
            self.add_file(f"{where}{suffix}", Path(f"{database}{suffix}"))

    def add_processes(self, root_pid: int) -> None:
        for pid in [root_pid, *descendants(root_pid)]:
            with contextlib.suppress(OSError):  # it ended meanwhile
                self.add(f"/proc/{pid}/cmdline", Path(f"/proc/{pid}/cmdline").read_bytes())

    def leaks(self) -> list[str]:
        return [f"{where}: {form!r}" for where, data in self.blobs.items() for form in FORMS if form.encode() in data]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def camera(long_clip: Path) -> Iterator[int]:
    port = free_port()
    server = RtspServer(long_clip, port, user="operator", password=MARKER)
    server.start()
    yield port
    server.stop()


@pytest.fixture
def debug_log_file(tmp_path: Path) -> Iterator[Path]:
    """The app's own logging set-up (redacting, rotating, private), at debug level, restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    path = tmp_path / "logs" / "reid-desktop.log"
    logs.configure(logging.DEBUG, path)
    yield path
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


@needs_rtsp
def test_a_camera_password_leaves_no_trace(qtbot, make_window, app_settings, memory_keyring, camera: int,
                                           debug_log_file: Path, tmp_path: Path) -> None:
    evidence = Evidence()
    url = f"rtsp://operator@127.0.0.1:{camera}/cam"  # the user in the URL, the password elsewhere

    # -- command line: the password comes from the environment, never the command line -------------------------
    database = tmp_path / "cli.sqlite"
    exports = [tmp_path / "cli.csv", tmp_path / "cli.json"]
    env = {**os.environ, "REID_DESKTOP_PASSWORD_GATE": MARKER}
    # 60 frames of a live stream: the first seconds after connecting (detector warm-up, frames dropped) may show
    # nobody long enough to be stored, however fast the app starts
    cli = subprocess.Popen(
        [sys.executable, "-m", "reid_desktop", "-vv", "process", f"gate={url}", "--db", str(database),
         "--max-frames", "60", "--export-csv", str(exports[0]), "--export-json", str(exports[1]), "--imgsz", "640",
         "--device", "cpu", "--no-download", "--set", "storage.commit_interval_s=0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while cli.poll() is None and time.monotonic() < deadline:
        evidence.add_processes(cli.pid)
        evidence.add_database("cli database (running)", database)
        time.sleep(0.5)
    out, err = cli.communicate(timeout=60)
    evidence.add("cli stdout", out)
    evidence.add("cli stderr", err)
    assert cli.returncode == 0, err.decode()[-2000:]
    evidence.add_database("cli database", database)
    for path in exports:
        evidence.add_file(path.name, path)
    with SightingStore(database, readonly=True) as store:
        people = store.identities()
        assert people and people[0].cameras == ("gate",)  # the server let it in: the password was used
        report = tmp_path / "cli-report.html"
        write_html_report(store, people[0].identity_id, report)
        evidence.add_file(report.name, report)
        assert store._db.execute("SELECT uri FROM sources").fetchall() == [(f"rtsp://***@127.0.0.1:{camera}/cam",)]

    # -- window: the password typed in the stream dialog, the camera left unnamed --------------------------------
    window = make_window(app_settings)
    name = window.sources.add_source(f"rtsp://127.0.0.1:{camera}/cam", "", username="operator", password=MARKER)
    assert name == f"127.0.0.1:{camera}"  # named after its host, never its URL
    feed = window.grid.feeds[name]
    qtbot.waitUntil(lambda: feed.result is not None and any(p.identity_id for p in feed.result.persons),
                    timeout=WAIT_MS)
    gui_database = window.settings.history

    def stored_identity() -> int | None:
        """One the feed shows that a final track holds in the database: a tentative track's identity can still
        move to another one and vanish (an export of it would then fail as unknown)."""
        shown = {p.identity_id for p in feed.result.persons if p.identity_id} if feed.result else set()
        if not gui_database.exists():
            return None
        final = window.settings.pipeline_config().matcher.commit_crops
        with SightingStore(gui_database, readonly=True) as store:
            settled = {row[0] for row in store._db.execute(
                "SELECT identity_id FROM embeddings GROUP BY track_row, identity_id HAVING COUNT(*) >= ?", (final,))}
        return next((i for i in sorted(shown) if i in settled), None)

    qtbot.waitUntil(lambda: stored_identity() is not None, timeout=WAIT_MS)
    identity = stored_identity()
    assert identity is not None
    evidence.add("thread names", "\n".join(t.name for t in threading.enumerate()))
    evidence.add_processes(os.getpid())
    qtbot.wait(1000)
    evidence.add_database("window database (running)", gui_database)
    files = {kind: tmp_path / f"window.{kind}" for kind in ("csv", "json", "html")}
    for kind, path in files.items():
        window.exports.export(identity, path, kind)
    qtbot.waitUntil(lambda: all(p.exists() and p.stat().st_size for p in files.values()), timeout=WAIT_MS)
    evidence.add("window banner and status", window.banner.label.text() + window.statusBar().currentMessage()
                 + feed.reason + window.sources.panel.list.item(0).toolTip())
    window.close()
    for path in files.values():
        evidence.add_file(path.name, path)
    evidence.add_file("settings file", window.settings_file)
    evidence.add_database("window database", gui_database)
    evidence.add("keyring account names", "\n".join(account for _, account in memory_keyring.secrets))
    for log_file in debug_log_file.parent.iterdir():
        evidence.add_file(log_file.name, log_file)

    assert evidence.leaks() == []
    # the WALs were caught while sightings were in them, and the command lines while the processes ran
    assert evidence.blobs["cli database (running)-wal"] and evidence.blobs["window database (running)-wal"]
    assert f"gate={url}".encode() in evidence.blobs[f"/proc/{cli.pid}/cmdline"]
    # and the checks looked at real material: the camera was logged, stored and exported under its name
    assert name.encode() in evidence.blobs["reid-desktop.log"] and b"operator" not in evidence.blobs["settings file"]
    assert name.encode() in evidence.blobs["window.csv"]
    with sqlite3.connect(gui_database) as db:
        assert db.execute("SELECT COUNT(*) FROM sightings").fetchone()[0] > 0
    assert memory_keyring.secrets[("reid-desktop", f"source:{name}")] == \
        f"rtsp://operator:{quote(MARKER, safe='')}@127.0.0.1:{camera}/cam"  # the one place the secret lives
