"""The sightings store keeps history whole: schema upgrades, one writer, honest run states, files only the
user can read, paths taken literally, camera names that can be reused, exports spreadsheets cannot run."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.paths import data_dir
from reid_desktop.core.store.exports import csv_text, export_csv, export_json
from reid_desktop.core.store.interface import SightingRecord, StoreError, TrackKey
from reid_desktop.core.store.migrations import APPLICATION_ID, SCHEMA_VERSION
from reid_desktop.core.store.report import write_html_report
from reid_desktop.core.store.storage import SightingStore
from tests.conftest import ROOT

V1_FIXTURE = ROOT / "tests" / "data" / "store_v1.sqlite"


def record(run: int, source: str, uri: str, track_id: int, identity: int | None, t: float,
           segment: int = 0) -> SightingRecord:
    return SightingRecord(run_id=run, track=TrackKey(source, uri, "file", segment, track_id), identity_id=identity,
                          frame_index=int(t), timestamp=t, media_time=t, box=(1, 2, 30, 80), confidence=0.9,
                          match_score=None)


def new_run(store: SightingStore) -> int:
    return store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key="m",
                           warnings=[], config={})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- schema ------------------------------------------------------------------------------------------------------

def test_a_schema_1_database_is_upgraded_with_everything_kept(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    shutil.copy(V1_FIXTURE, db)
    before = sqlite3.connect(db)
    counts = {t: before.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("runs", "sources", "identities", "tracks", "sightings", "embeddings")}
    old_sightings = before.execute("SELECT s.id, src.name, src.uri, s.track_row, s.identity_id FROM sightings s "
                                   "JOIN sources src ON src.id = s.source_id ORDER BY s.id").fetchall()
    before.close()
    with pytest.raises(StoreError, match=r"schema 1.*upgraded when reid-desktop next processes"):
        SightingStore(db, readonly=True)

    with SightingStore(db) as store:
        assert store.identity(2) is not None and store.identity(2).label == "Alice"  # type: ignore[union-attr]
        assert [t.identity_id for t in store.targets()] == [3]
        new_id = store.allocate_identity_id()
        assert new_id == 6  # the sequence starts after the ids schema 1 handed out
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in counts} == counts
    assert con.execute("SELECT s.id, src.name, src.uri, s.track_row, s.identity_id FROM sightings s JOIN sources src "
                       "ON src.id = s.source_id ORDER BY s.id").fetchall() == old_sightings
    assert con.execute("SELECT DISTINCT segment FROM tracks").fetchall() == [(0,)]
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    with SightingStore(db, readonly=True) as store:  # and now readers can use it
        assert len(store.identities()) == 5


def test_newer_and_foreign_files_are_refused_untouched(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    with SightingStore(newer):
        pass
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    digest = sha256(newer)
    with pytest.raises(StoreError, match="schema 99, newer than this version understands"):
        SightingStore(newer)
    assert sha256(newer) == digest

    foreign = tmp_path / "accounts.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('Ada')")
    con.commit()
    con.close()
    digest = sha256(foreign)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"is not a reid-desktop database .*customers.*refusing to change it"):
            SightingStore(foreign, readonly=readonly)
    assert sha256(foreign) == digest
    assert not Path(f"{foreign}-wal").exists()


# -- one writer, ids from the database, honest run states --------------------------------------------------------

def test_a_second_writer_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SightingStore(db):
        with pytest.raises(StoreError, match=rf"in use by process {os.getpid()} .*close the other one first"):
            SightingStore(db)
        with SightingStore(db, readonly=True):  # readers need no lock
            pass
        script = f"from reid_desktop.core.store.storage import SightingStore; SightingStore({str(db)!r})"
        other = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and f"in use by process {os.getpid()}" in other.stderr
    with SightingStore(db):  # released on close
        pass


def test_identity_ids_come_from_the_database_and_never_repeat(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with SightingStore(db) as store:
        first = [store.allocate_identity_id() for _ in range(3)]
    with SightingStore(db) as store:  # unused ids were given back: numbering stays dense
        second = [store.allocate_identity_id() for _ in range(100)]  # more than one reserved block
    assert first == [1, 2, 3] and second == list(range(4, 104))
    with SightingStore(db) as store:
        run = new_run(store)
        store.record(record(run, "gate", "/a.mp4", 1, 500, 1.0))  # an id nobody allocated (an old file, say)
        assert store.flush()
        assert store.allocate_identity_id() == 501


def test_runs_left_running_by_a_killed_process_are_marked_crashed(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    script = (f"import os, signal\nfrom reid_desktop.core.store.storage import SightingStore\n"
              f"s = SightingStore({str(db)!r})\n"
              "s.begin_run(detector='d', embedder='e', embedder_is_fallback=False, provider='cpu', model_key='m', "
              "warnings=[], config={})\nos.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert killed.returncode == -9
    with SightingStore(db, readonly=True) as store:
        assert [r["status"] for r in store.runs()] == ["running"]  # readers change nothing
    with SightingStore(db) as store:
        [run] = store.runs()
        assert run["status"] == "crashed" and run["finished"] is not None


def test_commits_are_durable(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        # FULL in WAL mode: every commit is synced to disk before it returns (NORMAL may lose the last ones)
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- history stays as recorded ------------------------------------------------------------------------------------

def test_reusing_a_camera_name_keeps_old_sightings_on_their_video(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        run = new_run(store)
        store.record(record(run, "gate", "/videos/monday.mp4", 1, 1, 10.0))
        store.flush()
        run = new_run(store)
        store.record(record(run, "gate", "/videos/tuesday.mp4", 1, 1, 20.0))
        store.flush()
        segments = store.track_segments(1)
        assert [(s.source, s.source_uri) for s in segments] == [("gate", "/videos/monday.mp4"),
                                                                ("gate", "/videos/tuesday.mp4")]
        assert [s.source for s in store.sightings(source="gate")] == ["gate", "gate"]


def test_a_restarted_tracker_never_extends_an_old_track(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        run = new_run(store)
        store.record(record(run, "gate", "/a.mp4", 1, 1, 10.0, segment=0))
        store.record(record(run, "gate", "/a.mp4", 1, 2, 3.0, segment=1))  # after a seek: track 1 again, new person
        store.flush()
        assert store.track_row(run, "gate", 0, 1) != store.track_row(run, "gate", 1, 1)
        assert [s.identity_id for s in store.track_segments(1)] == [1]
        assert [s.identity_id for s in store.track_segments(2)] == [2]


# -- paths and permissions ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["case#12.sqlite", "what?mode=rw.sqlite", "50%41off.sqlite", "a b%2Fc.sqlite"])
def test_database_paths_are_taken_literally(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "cases"
    db = folder / name
    with SightingStore(db) as store:
        run = new_run(store)
        store.record(record(run, "gate", "/a.mp4", 1, 1, 1.0))
    with SightingStore(db, readonly=True) as reader:
        assert len(reader.sightings()) == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("DELETE FROM sightings")
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))) \
        == sorted([name, f"{name}.lock"])


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_biometric_data_is_private_to_the_user(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = data_dir()
        db = folder / "sightings.sqlite"
        with SightingStore(db) as store:
            run = new_run(store)
            store.record(record(run, "gate", "/a.mp4", 1, 1, 1.0))
            store.flush()
            exported = [tmp_path / "s.csv", tmp_path / "s.json"]
            export_csv(store, exported[0])
            export_json(store, exported[1])
            exported.append(tmp_path / "s.html")  # the report holds face crops
            write_html_report(store, 1, exported[-1])
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock"), *exported]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert modes == dict.fromkeys(modes, 0o600)


# -- exports -------------------------------------------------------------------------------------------------------

@given(st.text())
def test_csv_text_never_starts_a_formula_and_loses_nothing(text: str) -> None:
    safe = csv_text(text)
    assert not safe.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert safe == text or safe == "'" + text


def test_csv_export_neutralises_operator_text(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        run = new_run(store)
        store.record(record(run, "=HYPERLINK(\"http://x\")", "/a.mp4", 1, 1, 1.0))
        store.flush()
        store.set_label(1, "@SUM(A1:A9)")
        export_csv(store, tmp_path / "s.csv")
    with (tmp_path / "s.csv").open(newline="", encoding="utf-8") as fh:
        row = next(iter(csv.DictReader(fh)))
    assert row["source"] == "'=HYPERLINK(\"http://x\")" and row["label"] == "'@SUM(A1:A9)"
    assert float(row["x1"]) == 1.0


def test_buffered_records_are_bounded(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite", max_pending_records=10) as store:
        run = new_run(store)
        for i in range(25):
            store.record(record(run, "gate", "/a.mp4", 1, 1, float(i)))
        assert store.pending == 10 and store.health.dropped == 15
        store.flush()
        assert [s.timestamp for s in store.sightings()] == [float(i) for i in range(15, 25)]  # the newest kept


def test_a_record_the_database_refuses_is_skipped_alone(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        run = new_run(store)
        store.record(record(run, "gate", "/a.mp4", 1, 1, 1.0))
        bad = record(run, "gate", "/a.mp4", 2, 2, 2.0)
        store.record(dataclasses.replace(bad, confidence=float("nan")))  # NOT NULL refuses NaN
        store.record(record(run, "yard", "/b.mp4", 3, 3, 3.0))
        assert store.flush() and store.health.ok and store.health.dropped == 1
        assert [s.timestamp for s in store.sightings()] == [1.0, 3.0]
        assert np.isfinite([s.confidence for s in store.sightings()]).all()


def test_edits_see_the_sightings_still_waiting_to_be_written(tmp_path: Path) -> None:
    with SightingStore(tmp_path / "s.sqlite", commit_interval_s=3600) as store:
        run = new_run(store)
        store.record(record(run, "gate", "/a.mp4", 1, 1, 10.0))
        store.record(record(run, "yard", "/b.mp4", 2, 2, 20.0))
        assert store.pending == 2  # seen a moment ago, not committed yet
        store.merge_identities(keep=1, drop=2)
        merged = store.identity(1)
        assert merged is not None and merged.cameras == ("gate", "yard") and merged.last_seen == 20.0
        assert store.identity(2) is None
