"""Processing nodes on a real PostgreSQL server: real ``reid-desktop node`` processes, each running the left or
the right half of the demo clip as its cameras; a clean stop by SIGTERM, and a node killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reid_desktop.core import config as config_mod
from reid_desktop.core.engine.node import load_node_file
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.live_boxes import LiveBoxes, LiveListener
from reid_desktop.core.store.pg_schema import DOWN_AFTER_S
from reid_desktop.core.store.pg_store import PgSightingStore, camera_health
from tests.conftest import ROOT, shared_path
from tests.pg_server import PASSWORD

WAIT_S = 240  # model loading and the first frames of two nodes on a 2-core machine


def node_file(folder: Path, name: str, demo_clip: Path, half: str) -> Path:
    region = "[0.0, 0.0, 0.5, 1.0]" if half == "left" else "[0.5, 0.0, 1.0, 1.0]"
    path = folder / f"{name}.toml"
    path.write_text(f"""
[node]
name = "{name}"

[[cameras]]
name = "{name}-{half}"
uri = "{demo_clip}"
region = {region}
loop = true
realtime = true

[detector]
imgsz = 640
device = "cpu"

[reid]
allow_download = false
""")
    return path


def test_node_files_say_what_is_wrong(tmp_path: Path, demo_clip: Path) -> None:
    good = load_node_file(node_file(tmp_path, "a", demo_clip, "left"))
    assert good.name == "a" and good.cameras[0].region == (0.0, 0.0, 0.5, 1.0) and good.config.detector.imgsz == 640
    for text, says in (("[detector]\nimgsz = 640\n", "names no cameras"),
                       ('[[cameras]]\nname = "x"\n', "needs name and uri"),
                       ('[[cameras]]\nname = "x"\nuri = "a.mp4"\nzoom = 2\n', "unknown keys: zoom"),
                       ('[[cameras]]\nname = "x"\nuri = "a.mp4"\n[[cameras]]\nname = "x"\nuri = "b.mp4"\n',
                        "share a name"),
                       ('[[cameras]]\nname = "x"\nuri = "a.mp4"\nregion = [0.6, 0, 0.5, 1]\n', "region"),
                       ('node = "x"\n[[cameras]]\nname = "x"\nuri = "a.mp4"\n', "must be a table"),
                       ('cameras = [1]\n', "must be a \\[\\[cameras\\]\\] table"),
                       ('[node]\nnmae = "east"\n[[cameras]]\nname = "x"\nuri = "a.mp4"\n', "unknown keys: nmae"),
                       ('[node]\nname = 3\n[[cameras]]\nname = "x"\nuri = "a.mp4"\n', "name must be text")):
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(config_mod.ConfigError, match=says):
            load_node_file(path)


@pytest.fixture
def start_node(pg_url: str, tmp_path: Path, demo_clip: Path) -> Iterator[Callable[[str, str], subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(name: str, half: str) -> subprocess.Popen:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        process = subprocess.Popen([sys.executable, "-m", "reid_desktop", "node", "--db", pg_url, "--config",
                                    str(node_file(tmp_path, name, demo_clip, half))], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def query(url: str, sql: str, *args: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, password=PASSWORD) as con:
        return con.execute(sql, args).fetchall()


def wait_for(condition: Callable[[], bool], what: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"a node exited ({process.returncode}) while waiting for {what}: {process.stdout.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT_S} s")
        time.sleep(1)


def sightings(url: str, camera: str) -> int:
    return int(query(url, "SELECT COUNT(*) FROM sightings s JOIN sources src ON src.id = s.source_id "
                          "WHERE src.name = %s", camera)[0][0])  # the cameras are live: the tables exist


def person_in_view(url: str, heard: list[LiveBoxes], node: str, camera: str) -> int | None:
    """The identity in ``node``'s newest live boxes with the most stored sightings on ``camera``."""
    newest = [boxes for boxes in list(heard) if boxes.node == node][-1:]
    in_view = {p.identity_id for boxes in newest for p in boxes.persons
               if p.identity_id is not None and not p.tentative}
    stored = dict(query(url, "SELECT s.identity_id, COUNT(*) FROM sightings s JOIN sources src ON src.id = s.source_id "
                             "WHERE src.name = %s AND s.identity_id IS NOT NULL GROUP BY s.identity_id", camera))
    candidates = [identity for identity in in_view if identity in stored]
    return max(candidates, key=lambda identity: stored[identity]) if candidates else None


def cameras_by_name(url: str) -> dict[str, tuple[str, float]]:
    """What a station shows of every node's cameras (nothing before the first node made the tables)."""
    import psycopg

    with psycopg.connect(url, password=PASSWORD) as con:
        try:
            return {c.name: (c.state, c.frames_per_s) for c in camera_health(con)}
        except psycopg.errors.UndefinedTable:
            return {}


@pytest.mark.slow
def test_two_nodes_share_one_history_follow_a_target_and_a_killed_one_shows_down(
        pg_url: str, start_node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    heard: list[LiveBoxes] = []  # what a station watching both cameras live gets from the nodes
    live = LiveListener(parse_postgres_url(pg_url), heard.append)
    live.watch("node-a/node-a-left")
    live.watch("node-b/node-b-right")
    live.start()
    left, right = start_node("node-a", "left"), start_node("node-b", "right")
    wait_for(lambda: all(state == "live" and rate > 0 for state, rate in cameras_by_name(pg_url).values())
             and len(cameras_by_name(pg_url)) == 2, "live cameras on both nodes", [left, right])
    wait_for(lambda: sightings(pg_url, "node-a-left") > 0 and sightings(pg_url, "node-b-right") > 0,
             "sightings from both nodes", [left, right])
    identities = query(pg_url, "SELECT DISTINCT s.identity_id, src.name FROM sightings s "
                               "JOIN sources src ON src.id = s.source_id WHERE s.identity_id IS NOT NULL")
    by_node = [{i for i, camera in identities if camera == name} for name in ("node-a-left", "node-b-right")]
    assert by_node[0] and by_node[1]
    wait_for(lambda: {b.source_id for b in heard} == {"node-a/node-a-left", "node-b/node-b-right"},
             "live boxes from both nodes", [left, right])
    assert {b.region for b in heard} == {(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)}
    # a target set on a station: every node follows it, and the node that sees the person highlights it. The target
    # is a person node-a has in view now and has stored longest (not one who may just have left the picture)
    chosen: list[int | None] = [None]

    def in_view() -> bool:
        chosen[0] = person_in_view(pg_url, heard, "node-a", "node-a-left")
        return chosen[0] is not None

    wait_for(in_view, "a stored person in node-a's view", [left, right])
    target = chosen[0]
    with PgSightingStore(parse_postgres_url(pg_url)) as station:
        station.set_target(target)
    following = "SELECT name FROM nodes WHERE %s = ANY(string_to_array(following, ',')::bigint[]) ORDER BY name"
    wait_for(lambda: query(pg_url, following, target) == [("node-a",), ("node-b",)],
             "both nodes following the target", [left, right])
    alerts = "SELECT COUNT(*) FROM alerts a JOIN sightings s ON s.id = a.sighting_id WHERE s.identity_id = %s"
    wait_for(lambda: query(pg_url, alerts, target)[0][0] > 0, "node-a highlighting the target", [left, right])
    wait_for(lambda: any(p.identity_id == target and p.is_target for b in list(heard) for p in b.persons
                         if b.node == "node-a"), "the target highlighted in node-a's live boxes", [left, right])
    live.stop()

    twin = start_node("node-a", "right")  # a second node under a running one's name is refused
    assert twin.wait(timeout=120) == 2 and "already running" in (twin.stdout.read() if twin.stdout else "")

    left.send_signal(signal.SIGKILL)
    left.wait(timeout=30)
    committed = sightings(pg_url, "node-a-left")
    right_before = sightings(pg_url, "node-b-right")
    time.sleep(DOWN_AFTER_S + 1)
    health = cameras_by_name(pg_url)
    assert health["node-a-left"] == ("down", 0.0) and health["node-b-right"][0] == "live"
    assert sightings(pg_url, "node-a-left") == committed, "what the killed node committed stays, nothing more comes"
    wait_for(lambda: sightings(pg_url, "node-b-right") > right_before, "the other node going on", [right])

    right.send_signal(signal.SIGTERM)
    assert right.wait(timeout=60) == 0, right.stdout.read() if right.stdout else ""
    assert query(pg_url, "SELECT state FROM nodes WHERE name = 'node-b'") == [("stopped",)]
    assert query(pg_url, "SELECT node, status FROM runs ORDER BY node") == [("node-a", "running"),
                                                                            ("node-b", "stopped")]
    assert cameras_by_name(pg_url)["node-b-right"] == ("down", 0.0)
    again = start_node("node-a", "left")  # the killed node back: its open run is closed as crashed
    wait_for(lambda: cameras_by_name(pg_url)["node-a-left"][0] == "live", "node-a back", [again])
    assert ("node-a", "crashed") in query(pg_url, "SELECT node, status FROM runs")
    assert sightings(pg_url, "node-a-left") >= committed


def test_a_node_told_to_stop_while_it_starts_finishes_starting_and_stops_cleanly(
        pg_url: str, start_node: Callable[[str, str], subprocess.Popen]) -> None:
    """SIGTERM while the models load: no exception thrown into a native library's import (which aborted the
    process at exit, or failed the import); the node's run is recorded as stopped, the node as stopped."""
    node = start_node("node-a", "left")
    assert node.stdout is not None
    for line in node.stdout:  # the models load next, for seconds
        if "cameras into" in line:
            break
    node.send_signal(signal.SIGTERM)
    out, _ = node.communicate(timeout=WAIT_S)
    assert node.returncode == 0, out
    assert "terminate called" not in out and "internal error" not in out and out.count("stopping") == 1, out
    assert query(pg_url, "SELECT state FROM nodes WHERE name = 'node-a'") == [("stopped",)]
    assert query(pg_url, "SELECT node, status FROM runs") == [("node-a", "stopped")]


def test_a_node_needs_a_shared_database(tmp_path: Path, demo_clip: Path) -> None:
    path = node_file(tmp_path, "solo", demo_clip, "left")
    out = subprocess.run([sys.executable, "-m", "reid_desktop", "node", "--db", str(tmp_path / "s.sqlite"),
                          "--config", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "a node writes to a shared PostgreSQL database" in out.stderr


def test_the_systemd_unit_runs_a_node_command_this_version_understands() -> None:
    """packaging/linux/reid-desktop-node@.service: its command line parses, and a stop is a SIGTERM."""
    import shlex

    from reid_desktop.cli import build_parser, cmd_node

    unit = (ROOT / "packaging" / "linux" / "reid-desktop-node@.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    command = shlex.split(lines["ExecStart"].replace("${REID_DESKTOP_DB}", "postgresql://node@db/history")
                          .replace("%i", "gate"))
    assert command[0] == "/usr/bin/reid-desktop"
    args = build_parser().parse_args(command[1:])
    assert args.func is cmd_node and (args.db, args.config, args.name) == (
        "postgresql://node@db/history", "/etc/reid-desktop/gate.toml", "gate")
    assert lines["KillSignal"] == "SIGTERM" and "REID_DESKTOP_DATA_DIR" in lines["Environment"]


@pytest.mark.parametrize("skew_s", [-60.0, 60.0])
def test_machines_compare_the_servers_clock_not_their_own(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                          skew_s: float) -> None:
    """A machine whose clock is a minute off neither admits a second node under a live node's name (marking its
    run crashed) nor shows a healthy node as down: heartbeats are written and aged by the server's clock."""
    import psycopg

    from reid_desktop.core.capture.sources import SourceSpec
    from reid_desktop.core.store import node_health as node_mod
    from reid_desktop.core.store.pg_schema import PgSchemaError

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    location = parse_postgres_url(pg_url)
    live = node_mod.NodeHealth(location, "east")
    live.add_camera(SourceSpec("rtsp://cam/gate", "gate"))
    live.start()
    try:
        with psycopg.connect(pg_url, autocommit=True) as con:  # as if it ran in another process, elsewhere
            con.execute("UPDATE nodes SET host = 'elsewhere', pid = 1 WHERE name = 'east'")
        real_time = time.time
        monkeypatch.setattr(node_mod.time, "time", lambda: real_time() + skew_s)  # this machine's clock is off
        with psycopg.connect(pg_url) as con:
            assert [(c.name, c.node_up) for c in camera_health(con)] == [("gate", True)]
        second = node_mod.NodeHealth(location, "east")
        with pytest.raises(PgSchemaError, match="already running on elsewhere"):
            second.start()
    finally:
        live.stop()


def test_process_on_a_shared_database_follows_a_target_set_elsewhere_while_it_runs(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``process --db postgresql://...`` hears what the other processes change while it runs, as a node and a
    station do (one assembly for all three: core/engine/engine_setup.py): a target set on a station is followed, and the
    person's next sighting is an alert. It once heard nothing: only the window and ``node`` listened."""
    import psycopg

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    clip = shared_path("data/vtest.avi")
    # the clip loops (the run ends when told to), so the people followed are seen again whenever they were chosen
    process = subprocess.Popen([sys.executable, "-m", "reid_desktop", "process", f"yard={clip}", "--db", pg_url,
                                "--imgsz", "640", "--device", "cpu", "--no-download", "--loop", "-q"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the people in view now who have been walking a while, once there are two: the one person of the clip's
    # first seconds leaves the picture before the sightings that show them are even committed
    in_view = ("SELECT s.identity_id FROM sightings s WHERE s.identity_id IS NOT NULL GROUP BY s.identity_id "
               "HAVING MAX(s.timestamp) >= (SELECT MAX(timestamp) - 1 FROM sightings) AND COUNT(*) >= 3")

    def walking() -> bool:
        try:
            return len(query(pg_url, in_view)) >= 2
        except psycopg.errors.UndefinedTable:  # the process has not made the tables yet
            return False

    try:
        wait_for(walking, "people in view", [process])
        targets = [row[0] for row in query(pg_url, in_view)]
        with PgSightingStore(parse_postgres_url(pg_url)) as station:
            for target in targets:
                station.set_target(target)
        alerts = ("SELECT COUNT(*) FROM alerts a JOIN sightings s ON s.id = a.sighting_id "
                  "WHERE s.identity_id = ANY(%s)")
        wait_for(lambda: query(pg_url, alerts, targets)[0][0] > 0, "alert for a target set elsewhere", [process])
    finally:
        process.send_signal(signal.SIGINT)  # stops after the frame in progress, says what it saved, exits 130
        assert process.wait(timeout=120) == 130, process.stdout.read() if process.stdout else ""
