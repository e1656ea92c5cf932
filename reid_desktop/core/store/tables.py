"""The history's tables, declared once (SQLAlchemy Core) for both databases: a new SQLite file and a new shared
PostgreSQL database are made from this declaration, each in its own types (:func:`create_statements`).

A shared database also holds what several machines share (``shared``): the nodes and their cameras, the logs of
merges, splits and purges other processes follow, the site's one retention policy, and a few columns (which node
wrote a run, its clock's offset, the transaction that wrote an embedding). SQLite has no sequences, so a file
draws identity ids from its ``sequences`` table instead.

An older database is brought up to date by its dialect's migrations (core/store/migrations.py,
core/store/pg_schema.py); tests/core/test_schema_parity.py checks that a database made by every migration and one
made from this declaration are the same, and that both dialects hold the same history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable
from sqlalchemy.types import TypeEngine, UserDefinedType

# ids and references (SQLite: INTEGER, the row id itself)
KEY: TypeEngine[Any] = BigInteger().with_variant(Integer(), "sqlite")
# seconds since the epoch, and other values that need 15 digits
TIME: TypeEngine[Any] = Double().with_variant(REAL(), "sqlite")
ZERO = text("0")
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


class _TransactionId(UserDefinedType[Any]):
    """PostgreSQL's 64-bit transaction id (``xid8``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def _row_id(name: str = "id", **identity: Any) -> Column[Any]:
    """A primary key the database numbers (SQLite: the row id; PostgreSQL: an identity column)."""
    return Column(name, KEY, Identity(**identity), primary_key=True)


def _sequence(tables: MetaData, name: str) -> Sequence:
    sequence = Sequence(name, metadata=tables)
    tables.info.setdefault("sequences", []).append(sequence)
    return sequence


def history_tables(shared: bool) -> MetaData:
    """The tables of a history: one machine's SQLite file, or (``shared``) a PostgreSQL database several use."""
    tables = MetaData(info={"sequences": []})
    Table("reid_meta" if shared else "meta", tables,  # a shared database may hold other applications' tables
          Column("key", Text, primary_key=True), Column("value", Text, nullable=False))
    _seen_tables(tables, shared)
    _learned_tables(tables, shared)
    if shared:
        _shared_tables(tables)
    else:
        Table("sequences", tables, Column("name", Text, primary_key=True), Column("next", Integer, nullable=False))
    return tables


def _shared_only(shared: bool, *columns: Column[Any]) -> list[Column[Any]]:
    return list(columns) if shared else []


def _seen_tables(tables: MetaData, shared: bool) -> None:
    """What was seen: the runs, cameras, people, their tracks and every sighting."""
    runs = Table(
        "runs", tables, _row_id(),
        Column("started", TIME, nullable=False), Column("finished", TIME),
        Column("status", Text, nullable=False, server_default="running"),
        Column("detector", Text), Column("embedder", Text),
        Column("embedder_is_fallback", Integer, nullable=False, server_default=ZERO),
        Column("provider", Text), Column("model_key", Text),
        Column("warnings", Text, nullable=False, server_default="[]"),
        Column("config", Text, nullable=False, server_default="{}"),
        # the processing node that ran it, and its clock less the server's
        *_shared_only(shared, Column("node", Text, nullable=False, server_default=""),
                      Column("clock_offset", TIME, nullable=False, server_default=ZERO)))
    Index("runs_status", runs.c.status)
    Table("sources", tables, _row_id(), Column("name", Text, nullable=False), Column("uri", Text, nullable=False),
          Column("kind", Text, nullable=False), UniqueConstraint("name", "uri"))
    identity_ids = _sequence(tables, "identity_ids") if shared else None  # one numbering for every node
    Table("identities", tables,
          Column("id", KEY, primary_key=True, autoincrement=False,
                 server_default=identity_ids.next_value() if identity_ids is not None else None),
          Column("label", Text, nullable=False, server_default=""),
          Column("is_target", Integer, nullable=False, server_default=ZERO),
          Column("created", TIME, nullable=False), Column("first_seen", TIME), Column("last_seen", TIME),
          Column("best_quality", TIME, nullable=False, server_default=ZERO), Column("thumbnail", LargeBinary))
    tracks = Table(
        "tracks", tables, _row_id(),
        Column("run_id", KEY, ForeignKey("runs.id"), nullable=False),
        Column("source_id", KEY, ForeignKey("sources.id"), nullable=False),
        Column("segment", Integer, nullable=False, server_default=ZERO),  # tracker restarts within a run
        Column("track_id", Integer, nullable=False),
        Column("identity_id", KEY, ForeignKey("identities.id")),
        Column("first_seen", TIME, nullable=False), Column("last_seen", TIME, nullable=False),
        Column("best_quality", TIME, nullable=False, server_default=ZERO), Column("thumbnail", LargeBinary),
        UniqueConstraint("run_id", "source_id", "segment", "track_id"))
    Index("tracks_identity", tracks.c.identity_id)
    sightings = Table(
        "sightings", tables, _row_id(),
        Column("run_id", KEY, nullable=False),
        Column("source_id", KEY, ForeignKey("sources.id"), nullable=False),
        Column("track_row", KEY, ForeignKey("tracks.id"), nullable=False),
        Column("identity_id", KEY, ForeignKey("identities.id")),
        Column("frame_index", KEY, nullable=False), Column("timestamp", TIME, nullable=False),
        Column("media_time", TIME),
        *(Column(name, REAL, nullable=False) for name in ("x1", "y1", "x2", "y2", "confidence")),
        Column("match_score", REAL))
    Index("sightings_identity", sightings.c.identity_id, sightings.c.timestamp)
    Index("sightings_source", sightings.c.source_id, sightings.c.frame_index)
    Index("sightings_track", sightings.c.track_row)
    Index("sightings_time", sightings.c.timestamp)  # retention finds old sightings by time


def _learned_tables(tables: MetaData, shared: bool) -> None:
    """What was made of it: embeddings, the audit of identity changes, alerts, each camera's mean embedding."""
    embeddings = Table(
        "embeddings", tables, _row_id(),  # SQLite: AUTOINCREMENT, ids never reused (the vector index keeps them)
        Column("track_row", KEY, ForeignKey("tracks.id"), nullable=False),
        Column("identity_id", KEY, ForeignKey("identities.id")),
        Column("sighting_id", KEY, ForeignKey("sightings.id")),
        Column("model_key", Text, nullable=False), Column("quality", REAL, nullable=False),
        Column("vector", LargeBinary, nullable=False),
        # the writing transaction: how another process catches up with its vector index (store/change_feed.py)
        *_shared_only(shared, Column("tx", _TransactionId(), nullable=False,
                                     server_default=text("pg_current_xact_id()"))),
        sqlite_autoincrement=True)
    Index("embeddings_model", embeddings.c.model_key, embeddings.c.identity_id)
    Index("embeddings_track", embeddings.c.track_row)
    Index("embeddings_sighting", embeddings.c.sighting_id)
    if shared:
        Index("embeddings_tx", embeddings.c.tx)
    corrections = Table(  # the audit of identity changes; ``track_row`` is no reference: it outlives retention
        "identity_corrections", tables, _row_id(),
        Column("timestamp", TIME, nullable=False), Column("actor", Text, nullable=False),
        Column("action", Text, nullable=False), Column("track_row", KEY), Column("from_identity", KEY),
        Column("to_identity", KEY), Column("score", REAL))
    Index("identity_corrections_time", corrections.c.timestamp)
    Table("alerts", tables, _row_id(),
          Column("sighting_id", KEY, ForeignKey("sightings.id", ondelete="CASCADE"), nullable=False, unique=True),
          Column("thumbnail", LargeBinary))
    Table("camera_means", tables,  # each camera's mean embedding per re-id model (identity/camera_norm.py)
          Column("source", Text, primary_key=True), Column("model_key", Text, primary_key=True),
          Column("vector", LargeBinary, nullable=False), Column("count", Integer, nullable=False),
          Column("updated", TIME, nullable=False))


def _shared_tables(tables: MetaData) -> None:
    """What only a shared database holds: the processes on it and what they tell each other."""
    Table("nodes", tables, Column("name", Text, primary_key=True), Column("host", Text, nullable=False),
          Column("pid", Integer, nullable=False), Column("started", TIME, nullable=False),
          Column("heartbeat", TIME, nullable=False), Column("state", Text, nullable=False),
          Column("following", Text, nullable=False, server_default=""))  # the targets its matcher follows
    Table("cameras", tables, Column("node", Text, ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True),
          Column("name", Text, primary_key=True), Column("uri", Text, nullable=False),
          Column("state", Text, nullable=False), Column("frames_per_s", REAL, nullable=False, server_default=ZERO),
          Column("updated", TIME, nullable=False))
    changes = _sequence(tables, "identity_merge_seq")  # one order for merges and splits
    merges = Table("identity_merges", tables,  # identities merged away, and the one that holds them now
                   Column("dropped", KEY, primary_key=True, autoincrement=False), Column("kept", KEY, nullable=False),
                   Column("at", TIME, nullable=False),
                   Column("seq", KEY, nullable=False, server_default=changes.next_value()))
    Index("identity_merges_seq", merges.c.seq)
    Index("identity_merges_kept", merges.c.kept)
    splits = Table("identity_splits", tables,  # tracks split off an identity, with the key a writing node knows
                   Column("track_row", KEY, primary_key=True, autoincrement=False),
                   Column("run_id", KEY, nullable=False), Column("source_id", KEY, nullable=False),
                   Column("segment", Integer, nullable=False), Column("track_id", Integer, nullable=False),
                   Column("old", KEY, nullable=False), Column("new", KEY, nullable=False),
                   Column("at", TIME, nullable=False),
                   Column("seq", KEY, nullable=False, server_default=changes.next_value()))
    Index("identity_splits_seq", splits.c.seq)
    Table("retention_policy", tables,  # one row, the database owner's to set
          Column("one_row", Boolean, CheckConstraint("one_row"), primary_key=True, server_default=text("TRUE")),
          Column("days", Integer, CheckConstraint("days >= 0"), nullable=False, server_default=ZERO),
          Column("set_at", TIME), Column("last_run", TIME, nullable=False, server_default=ZERO))
    Table("purges", tables,  # the embeddings each retention round deleted, for every process's vector index
          _row_id("seq", always=True), Column("at", TIME, nullable=False),
          Column("embedding_ids", postgresql.ARRAY(BigInteger), nullable=False))


def create_statements(dialect: str) -> list[str]:
    """The statements that make every table of a new history in ``dialect`` (``sqlite`` or ``postgresql``)."""
    tables = history_tables(shared=dialect == "postgresql")
    compiler = DIALECTS[dialect]
    statements = [str(CreateSequence(sequence).compile(dialect=compiler)) for sequence in tables.info["sequences"]]
    for table in tables.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=compiler)))
        statements += [str(CreateIndex(index).compile(dialect=compiler))
                       for index in sorted(table.indexes, key=lambda index: str(index.name))]
    return statements
