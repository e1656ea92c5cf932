"""The sightings store under a killed process, and the headless CLI on good and bad input."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.store.interface import StoreError
from reid_desktop.core.store.storage import SightingStore
from tests.conftest import ROOT

FAST = ["--imgsz", "960", "--device", "cpu", "--no-download", "-q"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reid_desktop", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def count_sightings(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_store_survives_twenty_kills_at_random_moments(tmp_path: Path, demo_clip: Path) -> None:
    """kill -9 anywhere: while starting, migrating, loading models, writing. Every time the file is sound, what was
    committed is still there, and the next open marks the killed run crashed."""
    db = tmp_path / "crash.sqlite"
    rng = random.Random(20261124)
    committed = 0
    for attempt in range(20):
        proc = subprocess.Popen([sys.executable, "-m", "reid_desktop", "process", str(demo_clip), "--loop",
                                 "--db", str(db), "--set", "storage.commit_interval_s=0.2", *FAST, "--imgsz", "320"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if attempt == 0:  # once surely in the middle of writing
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and count_sightings(db) < 60:
                    time.sleep(0.2)
                assert count_sightings(db) >= 60, "the pipeline never committed"
            else:
                time.sleep(rng.uniform(0.5, 9.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
            now = con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0]
        finally:
            con.close()
        assert now >= committed, f"kill {attempt + 1}: {committed - now} committed sightings lost"
        committed = now
        with SightingStore(db) as store:  # the app carries on with it; the dead run is not left "running"
            assert all(run["status"] == "crashed" for run in store.runs())
    assert committed >= 60


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.sqlite"
    bad.write_text("hello, I am a text file" * 100)
    with pytest.raises(StoreError, match="not a usable reid-desktop database"):
        SightingStore(bad)


@pytest.mark.slow
def test_process_prints_identities_and_exports(tmp_path: Path, demo_clip: Path) -> None:
    db, csv_path, json_path = tmp_path / "s.sqlite", tmp_path / "s.csv", tmp_path / "s.json"
    out = cli("process", f"gate={demo_clip}", "--db", str(db), "--max-frames", "12",
              "--export-csv", str(csv_path), "--export-json", str(json_path), *FAST)
    assert out.returncode == 0, out.stderr
    assert "Processed 12 frames from 1 source in" in out.stdout
    assert "Identities found:" in out.stdout and "gate" in out.stdout
    assert "WARNING: NO NEURAL RE-ID MODEL" in out.stderr  # offline, no weights: said out loud
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("sighting_id,source,identity_id") and len(lines) > 5  # sampled: not every frame
    payload = json.loads(json_path.read_text())
    assert payload["identities"] and len(payload["sightings"]) == len(lines) - 1
    assert payload["runs"][0]["embedder_is_fallback"] is True


@pytest.mark.slow
def test_one_bad_source_among_good_ones(tmp_path: Path, demo_clip: Path) -> None:
    out = cli("process", str(demo_clip), str(tmp_path / "lost.mp4"), "--db", str(tmp_path / "s.sqlite"),
              "--max-frames", "3", *FAST)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: source lost: file not found: {tmp_path / 'lost.mp4'}"]
    assert "Processed 3 frames" in out.stdout


@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda d: str(d / "missing.mp4"), "file not found"),
        (lambda d: write(d / "empty.mp4", b""), "empty.mp4"),
        (lambda d: write(d / "junk.avi", os.urandom(4096)), "junk.avi"),
        (lambda d: "rtsp://admin:pw123@127.0.0.1:9/cam", "rtsp://***@127.0.0.1:9/cam"),
    ],
    ids=["missing", "empty", "corrupt", "refused-url"],
)
def test_every_source_failed(tmp_path: Path, make_source, expected: str) -> None:
    source = make_source(tmp_path)
    out = cli("process", source, "--db", str(tmp_path / "s.sqlite"), "--reconnect-attempts", "2",
              "--set", "sources.reconnect_initial_delay_s=0.1", "--set", "sources.open_timeout_s=2", *FAST)
    assert out.returncode == 4, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0]
    assert "pw123" not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_bad_models_and_settings_exit_with_their_own_status(tmp_path: Path, demo_clip: Path) -> None:
    fake = tmp_path / "reid.onnx"
    fake.write_text("not a model")
    out = cli("process", str(demo_clip), "--reid-model", str(fake), "--db", str(tmp_path / "s.sqlite"), *FAST)
    assert out.returncode == 3 and "error: re-id model reid.onnx is not a readable ONNX file" in out.stderr
    out = cli("process", str(demo_clip), "--detector", str(tmp_path / "nope.pt"), "--db", str(tmp_path / "s.sqlite"))
    assert out.returncode == 3 and "detector model not found" in out.stderr
    out = cli("process", str(demo_clip), "--set", "detector.imgsize=640")
    assert out.returncode == 2 and "did you mean 'imgsz'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_database_in_use_or_locked_at_the_start_is_a_clear_error(tmp_path: Path, demo_clip: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SightingStore(db):  # another reid-desktop writes to it
        out = cli("process", str(demo_clip), "--db", str(db), "--max-frames", "2", *FAST)
    assert out.returncode == 2 and f"is in use by process {os.getpid()}" in out.stderr
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a program that is not ours holds the write lock
    try:
        out = cli("process", str(demo_clip), "--db", str(db), "--max-frames", "2", *FAST)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.returncode == 2 and "database locked by another program" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_sightings_the_database_never_took_are_reported_with_their_own_status(tmp_path: Path,
                                                                              demo_clip: Path) -> None:
    db = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "reid_desktop", "process", str(demo_clip), "--db", str(db),
                             "--set", "storage.commit_interval_s=0.2", "--set", "storage.sightings_per_second=0", *FAST,
                             "--imgsz", "320"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and count_sightings(db) < 20:
        time.sleep(0.2)
    committed = count_sightings(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # from now until the run ends: the rest cannot be written
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 6, err[-2000:]
    assert "error: database locked by another program: sightings are not being saved" in err
    assert "sightings could not be saved (database locked by another program" in err
    assert "Traceback" not in err and "Processed 80 frames" in out  # every frame processed, the summary printed
    assert count_sightings(db) >= committed >= 20  # what was committed before is all there


def test_an_internal_error_has_its_own_exit_status(tmp_path: Path, demo_clip: Path, monkeypatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from reid_desktop import cli as cli_module
    from reid_desktop.core.engine import runner

    def broken(session, spec):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected bug")

    monkeypatch.setattr(runner._Session, "add", broken)
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))  # restored after
    status = cli_module.main(["process", str(demo_clip), "--db", str(tmp_path / "s.sqlite"), *FAST])
    err = capsys.readouterr().err
    assert status == cli_module.EXIT_CRASH == 5
    assert "error: internal error, processing stopped: RuntimeError: injected bug" in err
    with SightingStore(tmp_path / "s.sqlite") as store:
        assert [r["status"] for r in store.runs()] == ["crashed"]  # closed as such, the first error not hidden


def test_models_and_config_commands(osnet_path: Path) -> None:
    out = cli("models", "list")
    assert out.returncode == 0 and "yolo11n-pose.pt" in out.stdout and "CPUExecutionProvider" in out.stdout
    assert "OpenVINO FP32" in out.stdout and "not prepared" in out.stdout and "auto runs PyTorch" in out.stdout
    out = cli("models", "check", str(osnet_path))
    assert out.returncode == 0 and "input 256x128 rgb, 512-d embeddings" in out.stdout
    out = cli("config")
    assert out.returncode == 0 and "[detector]" in out.stdout and "imgsz = 1280" in out.stdout
    assert cli("--version").stdout.startswith("reid-desktop ")


@pytest.mark.slow
def test_search_command_finds_the_person_in_a_processed_video(tmp_path: Path, demo_clip: Path, demo_frames,
                                                              osnet_path: Path, pose_detector) -> None:
    import cv2

    db = tmp_path / "s.sqlite"
    model = ["--reid-model", str(osnet_path)]
    out = cli("process", f"yard={demo_clip}", "--db", str(db), "--max-frames", "15", *model, *FAST)
    assert out.returncode == 0, out.stderr
    crop = tmp_path / "person.png"
    boxes = pose_detector.detect([demo_frames[10]])[0].boxes
    x1, y1, x2, y2 = boxes[np.argmax(boxes[:, 3] - boxes[:, 1]), :4].astype(int)  # the nearest person
    cv2.imwrite(str(crop), demo_frames[10][y1:y2, x1:x2])
    out = cli("search", str(crop), "--db", str(db), "-k", "3", *model)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert len(rows) == 3 and float(rows[0][0]) > 0.8
    assert all(row[4] == "yard" for row in rows)
    con = sqlite3.connect(db)
    rows10 = con.execute("SELECT identity_id, x1, y1, x2, y2 FROM sightings WHERE frame_index = 10").fetchall()
    con.close()
    clicked = min(rows10, key=lambda r: abs(r[1] - x1) + abs(r[2] - y1) + abs(r[3] - x2) + abs(r[4] - y2))[0]
    assert rows[0][2] == str(clicked)  # the best hit is the person the crop was cut from
    # a database built with another model cannot be searched with this one: said plainly
    out = cli("search", str(crop), "--db", str(db), "--no-download")
    assert out.returncode == 0 and "were indexed with" in out.stdout
    out = cli("search", str(tmp_path / "nothing.png"), "--db", str(db))
    assert out.returncode == 2 and "cannot read image" in out.stderr


def test_prepare_detector_then_list_shows_what_auto_runs(tmp_path: Path) -> None:
    out = cli("models", "prepare-detector", "--imgsz", "320", "--runtime", "onnxruntime", "--precision", "fp32")
    assert out.returncode == 0, out.stderr
    assert "[1/1] exporting the detector for ONNX Runtime FP32 at 320 px" in out.stdout
    assert "[1/1] checking ONNX Runtime FP32 against the original" in out.stdout
    assert re.search(r"ONNX Runtime FP32 +[\d.]+ frames/s +agrees +\d+\.\d% with the original +<- auto", out.stdout)
    listed = cli("models", "list", "--imgsz", "320")
    assert re.search(r"ONNX Runtime FP32 .*<- auto", listed.stdout) and "OpenVINO INT8" in listed.stdout
    missing = cli("models", "prepare-detector", "--detector", str(tmp_path / "gone.pt"))
    assert missing.returncode == 3 and "error: detector model not found" in missing.stderr
    unknown = cli("models", "prepare-detector", "--runtime", "tensorrt")
    assert unknown.returncode == 2 and "no tensorrt" in unknown.stderr
    assert "variant runs on this machine" in unknown.stderr


def test_process_and_search_on_a_shared_postgresql_database(tmp_path: Path, pg_url: str, demo_clip: Path,
                                                            demo_frames, osnet_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``--db postgresql://...``: the same commands on the shared database; the password never on the command line."""
    import cv2
    import psycopg

    from tests.pg_server import PASSWORD

    leaked = pg_url.replace("reid@", f"reid:{PASSWORD}@")
    out = cli("process", f"yard={demo_clip}", "--db", leaked, "--max-frames", "2", *FAST)
    assert out.returncode == 2 and "holds a password" in out.stderr and PASSWORD not in out.stderr + out.stdout
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    model = ["--reid-model", str(osnet_path)]
    out = cli("process", f"yard={demo_clip}", "--db", pg_url, "--max-frames", "15", *model, *FAST)
    assert out.returncode == 0, out.stderr
    database = pg_url.rsplit("/", 1)[1]
    assert f"database: {database} on 127.0.0.1" in out.stdout and "Identities found:" in out.stdout
    with psycopg.connect(pg_url) as con:
        sightings, identities, last_frame, runs = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT identity_id), MAX(frame_index), (SELECT COUNT(*) FROM runs "
            "WHERE status = 'finished') FROM sightings").fetchone()
    assert sightings > 0 and identities > 0 and last_frame < 15 and runs == 1
    crop = tmp_path / "person.png"
    cv2.imwrite(str(crop), demo_frames[10][150:450, 300:420])
    out = cli("search", str(crop), "--db", pg_url, "-k", "3", *model)
    assert out.returncode == 0, out.stderr
    hits = [line.split() for line in out.stdout.splitlines()[2:]]
    assert len(hits) == 3 and all(hit[4] == "yard" for hit in hits)
    out = cli("models", "list", "--db", pg_url)  # which backend, and how it is searched, said plainly
    assert out.returncode == 0, out.stderr
    assert f"database: PostgreSQL, {database} on 127.0.0.1" in out.stdout
    assert "vector search: each process's own FAISS index" in out.stdout and "pgvector" in out.stdout


def test_process_demo_runs_the_windows_two_demo_cameras(tmp_path: Path) -> None:
    """One demo: the same two cameras and the same shared strip of ground as the window's ``--demo``."""
    db = tmp_path / "s.sqlite"
    out = cli("process", "--demo", "--db", str(db), "--max-frames", "6", *FAST)
    assert out.returncode == 0, out.stderr
    assert "Processed 12 frames from 2 sources in" in out.stdout
    con = sqlite3.connect(db)
    try:
        names = {row[0] for row in con.execute("SELECT name FROM sources")}
        config = json.loads(con.execute("SELECT config FROM runs").fetchone()[0])
    finally:
        con.close()
    assert names == {"demo-left", "demo-right"}
    assert config["matcher"]["camera_links"] == "demo-left = demo-right"
