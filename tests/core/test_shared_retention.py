"""Retention on a shared PostgreSQL database (issue 28, item 5), on a real server: one policy for the whole
database, set by its owner and run by one process per round by the server's clock; no machine's own setting
deletes anyone's history; what a purge deletes leaves every node's vector index; merges and splits are not
remembered for ever."""

from __future__ import annotations

import logging
import time

import numpy as np
import psycopg
import pytest

from reid_desktop import cli
from reid_desktop.core.store import pg_store
from reid_desktop.core.store.change_feed import ChangeListener
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.interface import SightingRecord, TrackKey
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.shared_changes import EmbeddingsPurged
from tests.core.test_shared_history import begin, cut_off, wait_for
from tests.pg_server import PASSWORD

DAY = 86400.0


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)


def seen(store: PgSightingStore, run: int, camera: str, track: int, at: float, identity: int) -> None:
    vector = np.random.default_rng(track).normal(size=8).astype(np.float32)
    store.record(SightingRecord(
        run_id=run, track=TrackKey(camera, f"rtsp://cameras/{camera}", "rtsp", 0, track), identity_id=identity,
        frame_index=int(at) % 100_000, timestamp=at, media_time=None, box=(10.0, 20.0, 50.0, 120.0),
        confidence=0.9, match_score=None, embedding=vector / np.linalg.norm(vector), model_key="m", quality=0.5))


def sightings(pg_url: str) -> int:
    with psycopg.connect(pg_url) as con:
        return int(con.execute("SELECT COUNT(*) FROM sightings").fetchone()[0])


def history(store: PgSightingStore, old: int, recent: int) -> None:
    """``old`` people seen 3 days ago, ``recent`` seen now, one track each, on a node's run."""
    run = begin(store)
    now = time.time()
    for person in range(old + recent):
        at = now - 3 * DAY if person < old else now
        seen(store, run, "gate", person + 1, at, store.allocate_identity_id())  # type: ignore[arg-type]
    assert store.flush(), store.health.message


def test_one_stations_setting_deletes_nothing_on_a_shared_database(pg_url: str, caplog) -> None:
    location = parse_postgres_url(pg_url)
    with PgSightingStore(location, commit_interval_s=0, node="gate") as node, \
            PgSightingStore(location, commit_interval_s=0) as station:
        history(node, old=4, recent=2)
        with caplog.at_level(logging.WARNING):
            assert station.purge_expired(1) == 0  # a station set to keep one day: its setting, not the database's
        assert sightings(pg_url) == 6
        assert "storage.retention_days (1) is this machine's setting and is not used on a shared database" \
            in caplog.text and "keep everything" in caplog.text and "reid-desktop db retention" in caplog.text


def test_the_databases_policy_runs_once_per_round_by_the_servers_clock(pg_url: str, capsys,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["db", "retention", pg_url]) == cli.EXIT_OK
    assert "everything is kept; not run yet" in capsys.readouterr().out
    assert cli.main(["db", "retention", pg_url, "--days", "2"]) == cli.EXIT_OK
    assert "older than 2 days are deleted" in capsys.readouterr().out
    location = parse_postgres_url(pg_url)
    with PgSightingStore(location, commit_interval_s=0, node="gate") as node, \
            PgSightingStore(location, commit_interval_s=0) as station:
        history(node, old=4, recent=2)
        skewed = time.time() + 5 * DAY  # the station's clock is days ahead: the server's decides what is old
        with monkeypatch.context() as clock:
            clock.setattr(pg_store.time, "time", lambda: skewed)
            assert station.purge_expired(0) == 4  # its own setting (0: keep all) does not matter either
        history(node, old=3, recent=0)
        assert node.purge_expired(2) == 0  # the round is taken: nothing runs twice
        assert sightings(pg_url) == 2 + 3
        with psycopg.connect(pg_url, autocommit=True) as admin:  # a round later
            admin.execute("UPDATE retention_policy SET last_run = last_run - %s", (pg_store.RETENTION_ROUND_S,))
        assert node.purge_expired(2) == 3
        assert sightings(pg_url) == 2
    assert cli.main(["db", "retention", pg_url]) == cli.EXIT_OK
    assert "last run 0 min ago" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["db", "retention", pg_url, "--days", "-1"])
    assert "days must be 0 to 36500, not -1" in capsys.readouterr().err


def test_every_node_drops_what_a_purge_deleted_from_its_index(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    assert cli.main(["db", "retention", pg_url, "--days", "1"]) == cli.EXIT_OK
    node, purger = PgSightingStore(location, commit_interval_s=0), PgSightingStore(location, commit_interval_s=0)
    heard: list = []
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: node.backend_pid, list)
    try:
        history(node, old=5, recent=3)
        node.attach_index("m", 8)
        assert len(node.index) == 8
        listener.start()
        assert listener.listening.wait(10)
        assert purger.purge_expired(0) == 5
        purged = wait_for(heard, lambda c: isinstance(c, EmbeddingsPurged))
        assert len(purged) == 1 and len(purged[0].embedding_ids) == 5
        node.unindex_embeddings(purged[0].embedding_ids)  # what the node's pipeline does with it, between frames
        assert len(node.index) == 3

        heard.clear()  # a purge while the node's listener is cut off: read when it is back
        cut_off(listener, pg_url)
        history(node, old=2, recent=0)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("UPDATE retention_policy SET last_run = 0")
        assert purger.purge_expired(0) == 2
        assert listener.listening.wait(10)
        caught = wait_for(heard, lambda c: isinstance(c, EmbeddingsPurged))
        assert [len(c.embedding_ids) for c in caught] == [2]
    finally:
        listener.stop()
        node.close()
        purger.close()


def test_merges_and_splits_are_forgotten_after_a_week_in_the_database_and_in_memory(pg_url: str) -> None:
    location = parse_postgres_url(pg_url)
    with PgSightingStore(location, commit_interval_s=0, node="gate") as node, \
            PgSightingStore(location, commit_interval_s=0) as station:
        run = begin(node)
        kept, dropped, split_off = (node.allocate_identity_id() for _ in range(3))
        assert kept is not None and dropped is not None and split_off is not None
        seen(node, run, "gate", 1, time.time(), kept)
        seen(node, run, "gate", 2, time.time(), dropped)
        seen(node, run, "gate", 3, time.time(), kept)
        assert node.flush()
        station.merge_identities(kept, dropped)
        station.split_track(station.sightings(kept)[-1].track_row, split_off)
        seen(node, run, "gate", 4, time.time(), kept)
        assert node.flush()  # the node's transaction reads both
        assert dropped in node._redirects and node._splits
        assert node.purge_expired(0) == 0 and dropped in node._redirects  # a week has not passed
        with psycopg.connect(pg_url, autocommit=True) as admin:  # it has now
            for table in ("identity_merges", "identity_splits"):
                admin.execute(f"UPDATE {table} SET at = at - %s", (pg_store.CHANGES_KEPT_S + 60,))
            admin.execute("UPDATE retention_policy SET last_run = 0")
        seen(node, run, "gate", 5, time.time(), kept)
        node._changes_seq = 0  # read them again, with their times as the database holds them now
        assert node.flush()
        assert station.purge_expired(0) == 0
        node.purge_expired(0)
        assert node._redirects == {} and node._splits == {}
        with psycopg.connect(pg_url) as con:
            assert con.execute("SELECT (SELECT COUNT(*) FROM identity_merges) + "
                               "(SELECT COUNT(*) FROM identity_splits)").fetchone()[0] == 0
