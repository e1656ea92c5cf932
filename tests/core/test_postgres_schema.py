"""The shared database's foundations, on a real PostgreSQL server (tests/pg_server.py): naming it by URL
without a password, finding the password, migrating the schema once however many nodes start together,
refusing databases that are not ours, one numbering of identities for every node."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.store import database_url
from reid_desktop.core.store.database_url import (
    DEAD_LINK_S,
    DatabaseUrlError,
    PostgresLocation,
    parse_database,
    parse_postgres_url,
)
from reid_desktop.core.store.pg_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PgSchemaError,
    connect,
    oldest_running,
    open_database,
    schema_version,
)
from tests.pg_server import PASSWORD

# -- naming a database --------------------------------------------------------------------------------------

secrets = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=4, max_size=20).filter(
    lambda s: s.strip() == s and not any(c in s for c in "@/:?#[]%&="))


@given(password=secrets)
def test_a_url_holding_a_password_is_refused_without_repeating_it(password: str) -> None:
    for template in ("postgresql://reid:{}@db.site:5432/history",
                     "postgresql://reid@db.site/history?sslmode=require&password={}"):
        with pytest.raises(DatabaseUrlError) as refused:
            parse_database(template.format(password))
        with pytest.raises(DatabaseUrlError) as other:
            parse_database(template.format("0" * 8))
        # the same words whatever the password ("pass" may well be part of them): nothing of it is repeated
        assert str(refused.value) == str(other.value) and "PGPASSWORD" in str(refused.value)


@given(user=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
       host=st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,5})?", fullmatch=True),
       port=st.integers(1, 65535), database=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))
def test_a_postgres_url_names_its_parts(user: str, host: str, port: int, database: str) -> None:
    location = parse_database(f"postgres://{user}@{host}:{port}/{database}")
    assert isinstance(location, PostgresLocation)
    assert (location.user, location.host, location.port, location.database) == (user, host, port, database)
    assert location.url == f"postgresql://{user}@{host}:{port}/{database}"
    assert database in str(location) and host in str(location)


def test_files_and_bad_urls() -> None:
    assert parse_database("~/history.sqlite") == Path.home() / "history.sqlite"
    assert parse_postgres_url("postgresql://reid@db/history").port == 5432
    for bad, says in (("mysql://reid@db/history", "scheme"), ("postgresql://reid@db/", "a host and a database"),
                      ("postgresql://db/history", "needs a user"), ("postgresql://reid@db:99999/h", "malformed")):
        with pytest.raises(DatabaseUrlError, match=says):
            parse_database(bad)


# -- on a real server ------------------------------------------------------------------------------------


@pytest.fixture
def password_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)


def test_a_new_database_gets_the_schema_and_a_second_open_finds_it_done(pg_url: str,
                                                                         password_in_environment) -> None:
    location = parse_postgres_url(pg_url)
    with open_database(location) as conn:
        assert schema_version(conn, pg_url) == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'public'")}
        assert {"sightings", "identities", "tracks", "embeddings", "nodes", "cameras"} <= tables
    with open_database(location) as again:
        assert schema_version(again, pg_url) == SCHEMA_VERSION


def test_embeddings_stored_before_schema_5_count_as_written_long_ago(pg_url: str, password_in_environment) -> None:
    """Schema 5 notes the transaction that writes each embedding (core/store/change_feed.py catches up by it)."""
    location = parse_postgres_url(pg_url)
    with connect(location) as conn:
        for migration in MIGRATIONS[:4]:
            conn.execute(migration)
        conn.execute("UPDATE reid_meta SET value = '4' WHERE key = 'schema_version'")
        conn.execute("INSERT INTO runs (started) VALUES (1)")
        conn.execute("INSERT INTO sources (name, uri, kind) VALUES ('gate', 'gate.mp4', 'file')")
        conn.execute("INSERT INTO tracks (run_id, source_id, track_id, first_seen, last_seen) VALUES (1, 1, 1, 1, 1)")
        conn.execute("INSERT INTO embeddings (track_row, model_key, quality, vector) VALUES (1, 'm', 0.5, '')")
    with open_database(location) as conn:
        assert schema_version(conn, pg_url) == SCHEMA_VERSION >= 5
        conn.execute("INSERT INTO embeddings (track_row, model_key, quality, vector) VALUES (1, 'm', 0.5, '')")
        old, new = (int(tx) for (tx,) in conn.execute("SELECT tx::text FROM embeddings ORDER BY id"))
        assert old == 0 < new <= oldest_running(conn)


def test_nodes_starting_together_migrate_once(pg_url: str, password_in_environment) -> None:
    location = parse_postgres_url(pg_url)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def node() -> None:
        try:
            start.wait(timeout=10)
            open_database(location).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with open_database(location) as conn:
        assert conn.execute("SELECT value FROM reid_meta WHERE key = 'schema_version'").fetchone()[0] \
            == str(SCHEMA_VERSION)


def test_someone_elses_database_is_left_alone(pg_url: str, password_in_environment) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("CREATE TABLE customers (id INT)")
    with pytest.raises(PgSchemaError, match=r"not a reid-desktop database .*customers"):
        open_database(parse_postgres_url(pg_url))
    with psycopg.connect(pg_url) as other:
        assert [r[0] for r in other.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'public'")] == ["customers"]


def test_a_newer_schema_is_refused(pg_url: str, password_in_environment) -> None:
    location = parse_postgres_url(pg_url)
    with open_database(location) as conn:
        conn.execute("UPDATE reid_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(PgSchemaError, match=r"schema 99, newer .*update reid-desktop"):
        open_database(location)


def test_every_node_draws_identity_ids_from_one_sequence(pg_url: str, password_in_environment) -> None:
    location = parse_postgres_url(pg_url)
    with open_database(location) as first, open_database(location) as second:
        drawn = [conn.execute("SELECT nextval('identity_ids')").fetchone()[0]
                 for _ in range(20) for conn in (first, second)]
    assert len(set(drawn)) == 40


def test_the_password_comes_from_the_environment_or_the_keyring_never_the_url(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        """A keyring that keeps its entries in memory: the OS keyrings' interface, no desktop session needed."""

        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.entries: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.entries.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.entries[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.entries.pop((service, username), None)

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # the developer's own ~/.pgpass must not help
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        location = parse_postgres_url(pg_url)
        with pytest.raises(PgSchemaError, match=r"cannot connect to the database .* password") as refused:
            open_database(location)
        assert PASSWORD not in str(refused.value)
        database_url.save_keyring_password(location, PASSWORD)
        with open_database(location) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == location.user
    finally:
        keyring.set_keyring(previous)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    open_database(location).close()


def test_an_unreachable_server_is_one_clear_line(pg_server) -> None:
    port = pg_server.port + 1
    closed = PostgresLocation(f"postgresql://reid@127.0.0.1:{port}/x", "reid", "127.0.0.1", port, "x")
    with pytest.raises(PgSchemaError, match=r"cannot connect to the database x on 127\.0\.0\.1"):
        open_database(closed)


def test_db_password_keeps_the_password_in_the_keyring_where_connections_find_it(
        pg_url: str, memory_keyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command every 'password' message names exists and works: nothing in the URL, the environment or a file."""
    import io

    from reid_desktop import cli

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    location = parse_postgres_url(pg_url)
    with pytest.raises(PgSchemaError, match="reid-desktop db password"):
        open_database(location)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["db", "password", pg_url, "--stdin"]) == cli.EXIT_OK
    assert "kept in the OS keyring" in capsys.readouterr().out
    with open_database(location) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == location.user
    assert cli.main(["db", "password", pg_url.replace("postgresql://", "postgresql://u:pw@"), "--stdin"]) \
        == cli.EXIT_USAGE  # a password in the URL is refused here too


def test_db_roles_give_writers_what_nodes_need_and_viewers_only_reading(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The roles of the README's threat model, on a real server: a writer records, a viewer reads and can neither
    write nor change the tables, and a role that is neither cannot connect."""
    import uuid

    import numpy as np
    import psycopg

    from reid_desktop import cli
    from reid_desktop.core.store.history import open_store
    from reid_desktop.core.store.interface import SightingRecord, StoreError, TrackKey
    from reid_desktop.core.store.pg_store import PgSightingStore

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert cli.main(["db", "roles", pg_url]) == cli.EXIT_OK
    assert "reid_writer" in capsys.readouterr().out
    assert cli.main(["db", "roles", pg_url]) == cli.EXIT_OK  # again: nothing to create, the same grants
    suffix = uuid.uuid4().hex[:6]
    logins = {"writer": f"node_{suffix}", "viewer": f"auditor_{suffix}", "none": f"stranger_{suffix}"}
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for role, login in logins.items():
            member = "" if role == "none" else f" IN ROLE reid_{role}"
            admin.execute(f"CREATE ROLE {login} LOGIN PASSWORD '{PASSWORD}'{member}")

    def as_login(role: str) -> str:
        return pg_url.replace("postgresql://reid@", f"postgresql://{logins[role]}@")

    node = PgSightingStore(parse_postgres_url(as_login("writer")), commit_interval_s=0)
    with node:
        run = node.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key="m",
                             warnings=[], config={})
        vector = np.ones(8, np.float32) / np.sqrt(8)
        node.record(SightingRecord(run_id=run, track=TrackKey("gate", "rtsp://gate", "rtsp", 0, 1),
                                   identity_id=node.allocate_identity_id(), frame_index=0, timestamp=1.0,
                                   media_time=None, box=(1.0, 2.0, 3.0, 4.0), confidence=0.9, match_score=None,
                                   embedding=vector, model_key="m", quality=0.5))
        assert node.flush(), node.health.message
        assert node.purge_expired(0) == 0  # a writer runs the database's retention policy ...
    assert cli.main(["db", "retention", as_login("writer"), "--days", "1"]) == cli.EXIT_USAGE  # ... never sets it
    assert "only the database's owner sets its retention" in capsys.readouterr().err
    assert cli.main(["db", "retention", as_login("writer")]) == cli.EXIT_OK  # and may read it
    assert "everything is kept; last run 0 min ago" in capsys.readouterr().out
    with open_store(as_login("viewer"), readonly=True) as viewer:
        assert len(viewer.identities()) == 1
    with pytest.raises(StoreError, match="permission denied"), \
            PgSightingStore(parse_postgres_url(as_login("viewer"))) as store:
        store.begin_run(detector="d", embedder="e", embedder_is_fallback=False, provider="cpu", model_key="m",
                        warnings=[], config={})
    with psycopg.connect(as_login("viewer")) as con, pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute("DROP TABLE sightings")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(as_login("none")).close()
    assert cli.main(["db", "roles", as_login("writer")]) == cli.EXIT_USAGE  # only the owner grants
    assert "run this as the database's owner" in capsys.readouterr().err


def test_a_link_that_dies_silently_is_given_up_in_seconds(pg_url: str, password_in_environment) -> None:
    """Without these a connection to a server behind a cut cable waits for the OS's retransmissions (minutes)."""
    with connect(parse_postgres_url(pg_url)) as conn:
        used = conn.info.get_parameters()
    assert used["tcp_user_timeout"] == str(DEAD_LINK_S * 1000) and used["keepalives"] == "1"
    assert int(used["keepalives_idle"]) + 3 * int(used["keepalives_interval"]) <= DEAD_LINK_S
