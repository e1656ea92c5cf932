"""Operator edits of the sightings store (merge, split), the target timeline, retention and the HTML report, on
both backends (SQLite, PostgreSQL).

The store is filled through the same writing calls the pipeline makes, so the rows look like a real run's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_desktop.core.store import retention
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.exports import export_csv, export_json
from reid_desktop.core.store.interface import SightingRecord, TrackKey
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.report import write_html_report
from reid_desktop.core.store.retention import KEPT_TRACKS
from reid_desktop.core.store.sql_history import SqlHistory
from reid_desktop.core.store.storage import SightingStore
from tests.pg_server import PASSWORD

MODEL = "test-model"
DIM = 16


def jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (32, 16, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def direction(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Added:
    track_row: int
    sighting_ids: list[int]
    thumbnail: bytes | None


class Builder:
    """Writes tracks the way the pipeline does: sighting records (identity, track, embedding, best crop), flushed."""

    def __init__(self, store: SqlHistory) -> None:
        self.store = store
        self.run = store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu",
                                   model_key=MODEL, warnings=[], config={})
        self._next_track = 1

    def track(self, source: str, identity_id: int | None, times: Sequence[float], *, person: int,
              media_start: float | None = 0.0, quality: float | None = 0.5, kind: str = "file") -> Added:
        store, rng = self.store, np.random.default_rng(self._next_track)
        key = TrackKey(source, f"/videos/{source}.mp4", kind, 0, self._next_track)
        thumbnail = jpeg(self._next_track) if quality is not None else None
        for i, t in enumerate(times):
            vector = direction(person) + 0.05 * rng.normal(size=DIM).astype(np.float32)
            store.record(SightingRecord(
                run_id=self.run, track=key, identity_id=identity_id, frame_index=i, timestamp=t,
                media_time=None if media_start is None else media_start + (t - times[0]), box=(10, 20, 50, 120),
                confidence=0.9, match_score=None, embedding=vector / np.linalg.norm(vector), model_key=MODEL,
                quality=0.5 if quality is None else quality, thumbnail=thumbnail if i == 0 else None))
        assert store.flush()
        track_row = store.track_row(self.run, source, 0, self._next_track)
        assert track_row is not None
        sighting_ids = [r[0] for r in rows(store, "SELECT id FROM sightings WHERE track_row = ? ORDER BY id",
                                           track_row)]
        self._next_track += 1
        return Added(track_row, sighting_ids, thumbnail)


def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlHistory]:
    """A fresh store of the backend ``request.param`` names: a SQLite file, or a database on a real PostgreSQL
    server (for the suites that run on both)."""
    if request.param == "sqlite":
        with SightingStore(tmp_path / "s.sqlite") as s:
            yield s
        return
    url = request.getfixturevalue("pg_url")
    request.getfixturevalue("monkeypatch").setenv("PGPASSWORD", PASSWORD)
    with PgSightingStore(parse_postgres_url(url)) as s:
        yield s



def rows(store: SqlHistory, sql: str, *args: object) -> list[tuple]:
    """A second connection's answer: it sees only what was committed."""
    if isinstance(store, PgSightingStore):
        import psycopg

        with psycopg.connect(store.postgres.url) as con:
            return con.execute(sql.replace("?", "%s"), args).fetchall()
    con = sqlite3.connect(store.path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def assert_consistent(store: SqlHistory) -> None:
    """No row refers to a row that is gone (PostgreSQL checks its references on every statement)."""
    if isinstance(store, PgSightingStore):
        for orphans in ("SELECT COUNT(*) FROM sightings s LEFT JOIN tracks t ON t.id = s.track_row WHERE t.id IS NULL",
                        "SELECT COUNT(*) FROM embeddings e LEFT JOIN identities i ON i.id = e.identity_id "
                        "WHERE e.identity_id IS NOT NULL AND i.id IS NULL"):
            assert rows(store, orphans) == [(0,)]
        return
    con = sqlite3.connect(store.path)
    try:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_merge_moves_every_row_and_search_finds_the_kept_identity(store: SqlHistory, build: Builder) -> None:
    gate = build.track("gate", 1, [100, 101, 102], person=1, quality=0.4)
    yard = build.track("yard", 2, [200, 201], person=2, quality=0.8)
    store.merge_identities(keep=1, drop=2)

    for table, column in (("tracks", "identity_id"), ("sightings", "identity_id"), ("embeddings", "identity_id"),
                          ("identities", "id")):
        assert rows(store, f"SELECT COUNT(*) FROM {table} WHERE {column} = 2") == [(0,)], table
    assert rows(store, "SELECT COUNT(*) FROM embeddings WHERE identity_id = 1") == [(5,)]
    [summary] = store.identities()
    assert (summary.identity_id, summary.cameras, summary.sightings) == (1, ("gate", "yard"), 5)
    assert rows(store, "SELECT first_seen, last_seen FROM identities WHERE id = 1") == [(100, 201)]
    assert store.thumbnail(1) == yard.thumbnail  # drop's crop was the better one
    hits = store.search(direction(2), MODEL, k=2)
    assert [h.sighting.identity_id for h in hits] == [1, 1]
    assert {h.sighting.track_row for h in hits} == {yard.track_row}
    assert store.track_thumbnail(hits[0].sighting.track_row) == yard.thumbnail
    assert store.sighting_track_row(gate.sighting_ids[0]) == gate.track_row
    assert_consistent(store)


def test_merge_keeps_the_target_flag_and_a_label(store: SqlHistory, build: Builder) -> None:
    build.track("gate", 1, [100], person=1)
    build.track("yard", 2, [200], person=2)
    build.track("dock", 3, [300], person=3)
    store.set_target(2)
    store.set_label(2, "courier")
    store.merge_identities(keep=1, drop=2)
    [target] = store.targets()
    assert (target.identity_id, target.label, target.is_target) == (1, "courier", True)

    store.set_label(3, "visitor")
    store.merge_identities(keep=1, drop=3)  # keep's own label wins
    kept = store.identity(1)
    assert kept is not None and kept.label == "courier"
    assert store.identity(3) is None


def test_merge_refuses_itself_and_unknown_identities(store: SqlHistory, build: Builder) -> None:
    build.track("gate", 1, [100], person=1)
    with pytest.raises(ValueError, match="itself"):
        store.merge_identities(1, 1)
    with pytest.raises(ValueError, match="unknown identity 9"):
        store.merge_identities(1, 9)
    with pytest.raises(ValueError, match="unknown identity 9"):
        store.merge_identities(9, 1)
    assert [i.identity_id for i in store.identities()] == [1]


def test_merging_a_person_with_themselves_is_refused_before_the_database_is_asked(store: SqlHistory,
                                                                                 build: Builder) -> None:
    """Bad input is said as what it is, also where the database could not have taken the change (a reader)."""
    build.track("gate", 1, [100], person=1)
    reader = (SightingStore(store.path, readonly=True) if isinstance(store, SightingStore)
              else PgSightingStore(store.postgres, readonly=True))
    with reader, pytest.raises(ValueError, match="cannot merge identity 1 with itself"):
        reader.merge_identities(1, 1)


def test_split_gives_one_track_a_new_identity(store: SqlHistory, build: Builder) -> None:
    gate = build.track("gate", 1, [100, 101, 102], person=1, quality=0.3)
    yard = build.track("yard", 1, [200, 201, 205], person=2, quality=0.9, media_start=12.0)
    build.track("dock", 2, [150], person=3)
    assert store.thumbnail(1) == yard.thumbnail

    new = store.split_track(yard.track_row)
    assert new == 3
    assert [s.id for s in store.sightings(new)] == yard.sighting_ids
    assert rows(store, "SELECT DISTINCT track_row FROM embeddings WHERE identity_id = ?", new) == [(yard.track_row,)]
    assert [s.id for s in store.sightings(1)] == gate.sighting_ids
    assert rows(store, "SELECT first_seen, last_seen FROM identities WHERE id IN (1, 3) ORDER BY id") \
        == [(100, 102), (200, 205)]
    assert store.thumbnail(1) == gate.thumbnail and store.thumbnail(new) == yard.thumbnail
    old = store.identity(1)
    assert old is not None and old.cameras == ("gate",) and old.sightings == 3
    assert_consistent(store)


def test_split_of_the_last_track_deletes_the_identity_unless_it_is_a_target(store: SqlHistory,
                                                                            build: Builder) -> None:
    only = build.track("gate", 1, [100], person=1)
    kept = build.track("yard", 2, [200], person=2)
    store.set_target(2)
    assert store.split_track(only.track_row) == 3
    assert store.identity(1) is None
    assert store.split_track(kept.track_row) == 4
    target = store.identity(2)
    assert target is not None and target.is_target and target.sightings == 0 and target.first_seen is None
    assert store.thumbnail(2) is None
    with pytest.raises(ValueError, match="unknown track row 99"):
        store.split_track(99)
    assert_consistent(store)


def test_track_segments_are_the_timeline_across_cameras(store: SqlHistory, build: Builder) -> None:
    late = build.track("yard", 5, [300, 301, 302, 303], person=1, media_start=61.5)
    early = build.track("gate", 5, [100, 102], person=1, media_start=3.0)
    live = build.track("webcam", 5, [200], person=1, media_start=None, quality=None, kind="webcam")
    build.track("gate", 6, [150], person=2)
    segments = store.track_segments(5)
    assert [s.track_row for s in segments] == [early.track_row, live.track_row, late.track_row]
    assert [(s.source, s.sightings, s.first_seen, s.last_seen) for s in segments] \
        == [("gate", 2, 100, 102), ("webcam", 1, 200, 200), ("yard", 4, 300, 303)]
    assert [(s.first_media_time, s.last_media_time) for s in segments] \
        == [(3.0, 5.0), (None, None), (61.5, 64.5)]
    assert [s.thumbnail for s in segments] == [early.thumbnail, None, late.thumbnail]
    assert all(s.identity_id == 5 and s.run_id == build.run for s in segments)
    assert store.track_segments(42) == []


def test_targets_include_those_not_seen_yet(store: SqlHistory, build: Builder) -> None:
    build.track("gate", 1, [100], person=1)
    build.track("gate", 2, [50], person=2)
    store.ensure_identity(3, 10)
    for identity_id in (3, 1):
        store.set_target(identity_id)
    targets = store.targets()
    assert [t.identity_id for t in targets] == [1, 3]  # the one not seen yet last
    assert (targets[1].sightings, targets[1].cameras, targets[1].first_seen) == (0, (), None)
    assert targets[0].cameras == ("gate",) and targets[0].sightings == 1
    assert [i.identity_id for i in store.identities()] == [2, 1]  # unchanged: only identities with sightings


def test_purge_deletes_old_rows_and_keeps_the_galleries_of_named_and_followed_people(store: SqlHistory,
                                                                                    build: Builder) -> None:
    build.track("gate", 1, [10, 11], person=1)  # old, anonymous: goes entirely
    named = build.track("gate", 2, [20], person=2)  # old but named: their newest tracks stay
    store.set_label(2, "neighbour")
    followed = [build.track("yard", 3, [30 + i], person=3) for i in range(KEPT_TRACKS + 2)]  # old target
    store.set_target(3)
    straddling = build.track("yard", 4, [90, 100, 110], person=4, quality=0.2)
    recent = build.track("dock", 4, [200], person=4, quality=0.1)

    assert store.purge_older_than(100) == 2 + 2 + 1  # person 1, the target's two oldest tracks, straddling's first
    assert rows(store, "SELECT COUNT(*) FROM sightings WHERE timestamp < 100") == [(1 + KEPT_TRACKS,)]
    assert rows(store, "SELECT id FROM identities ORDER BY id") == [(2,), (3,), (4,)]
    assert {r[0] for r in rows(store, "SELECT id FROM tracks")} == {
        named.track_row, *(t.track_row for t in followed[2:]), straddling.track_row, recent.track_row}
    assert rows(store, "SELECT COUNT(*) FROM embeddings") == [(1 + KEPT_TRACKS + 3,)]  # galleries of 2 and 3 kept
    assert rows(store, "SELECT label, first_seen FROM identities WHERE id = 2") == [("neighbour", 20)]
    assert store.track_thumbnail(named.track_row) is not None
    assert rows(store, "SELECT first_seen, last_seen FROM identities WHERE id = 3") == [(32, 30 + KEPT_TRACKS + 1)]
    assert rows(store, "SELECT first_seen, last_seen FROM identities WHERE id = 4") == [(100, 200)]
    assert rows(store, "SELECT first_seen FROM tracks WHERE id = ?", straddling.track_row) == [(100,)]
    assert [t.identity_id for t in store.targets()] == [3]
    assert {i.identity_id for i in store.identities()} == {2, 3, 4}
    assert_consistent(store)
    assert store.purge_older_than(100) == 0

    store.set_target(3, False)  # the operator's say: no longer followed, no longer named
    store.set_label(2, "")
    assert store.purge_older_than(100) == 1 + KEPT_TRACKS
    assert rows(store, "SELECT id FROM identities ORDER BY id") == [(4,)]
    assert rows(store, "SELECT COUNT(*) FROM embeddings") == [(3,)]
    assert_consistent(store)


def test_purge_goes_a_block_at_a_time(store: SqlHistory, build: Builder, monkeypatch) -> None:
    monkeypatch.setattr(retention, "PURGE_BLOCK", 4)
    tracks = [build.track("gate", 10 + i, [float(i), i + 0.5], person=10 + i) for i in range(5)]
    build.track("gate", 99, [500], person=99)
    transactions = []
    begin = store._begin
    monkeypatch.setattr(store, "_begin", lambda: (transactions.append(1), begin())[1])
    assert store.purge_older_than(100) == 10
    assert len(transactions) >= 3  # ten sightings, four per transaction (and one to find nothing is left)
    assert rows(store, "SELECT COUNT(*) FROM tracks") == [(1,)] and not any(
        store.track_thumbnail(t.track_row) for t in tracks)
    assert_consistent(store)


def test_html_report_escapes_text_and_inlines_thumbnails(store: SqlHistory, build: Builder,
                                                        tmp_path: Path) -> None:
    build.track("gate <north>", 7, [100, 101], person=1, media_start=59.96)
    build.track("yard", 7, [200], person=1, quality=None)
    build.track("dock", 7, [300], person=1, media_start=None)
    store.set_label(7, "<script>alert(1)</script>")
    path = tmp_path / "report.html"
    assert write_html_report(store, 7, path) == 3
    text = path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Identity 7" in text
    assert text.count('<img src="data:image/jpeg;base64,') == 2
    assert "gate &lt;north&gt;" in text and "yard" in text and "dock" in text
    assert "01:00.0 – 01:01.0" in text  # 59.96 s rounds to a whole minute, not 00:60.0
    with pytest.raises(ValueError, match="unknown identity 8"):
        write_html_report(store, 8, tmp_path / "none.html")


def test_sightings_carry_their_track_row_and_exports_still_work(store: SqlHistory, build: Builder,
                                                                tmp_path: Path) -> None:
    track = build.track("gate", 1, [100, 101], person=1)
    assert [s.track_row for s in store.sightings(1)] == [track.track_row] * 2
    assert store.sighting_track_row(12345) is None and store.track_thumbnail(12345) is None
    assert export_csv(store, tmp_path / "s.csv") == 2
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header == ("sighting_id,source,identity_id,label,track_id,frame_index,timestamp,media_time,x1,y1,x2,y2,"
                      "confidence,match_score,run_id")
    assert export_json(store, tmp_path / "s.json") == 2
    payload = json.loads((tmp_path / "s.json").read_text())
    assert [s["track_row"] for s in payload["sightings"]] == [track.track_row] * 2


def test_galleries_follow_a_split(store: SqlHistory, build: Builder) -> None:
    gate = build.track("gate", 1, [100, 101], person=1)
    yard = build.track("yard", 1, [200, 201, 202], person=2)
    assert store.identity_gallery(1, MODEL, 10).shape == (5, DIM)
    assert store.track_identity(yard.track_row) == 1
    new = store.split_track(yard.track_row)
    assert store.track_identity(yard.track_row) == new and store.track_identity(gate.track_row) == 1
    assert store.identity_gallery(1, MODEL, 10).shape == (2, DIM)
    assert store.identity_gallery(new, MODEL, 2).shape == (2, DIM)
    assert store.identity_gallery(new, "other-model", 10).shape[0] == 0
    assert store.track_identity(999) is None
