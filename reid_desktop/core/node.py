"""A processing node: a long-lived headless process running a set of cameras into the shared database.

Its cameras and settings come from one TOML file (``[[cameras]]`` tables beside the usual settings sections).
Its presence is kept in the database by :class:`NodeHealth`: the ``nodes`` row (host, process, state,
heartbeat) and one ``cameras`` row per camera (state, frames per second), written every
:data:`HEARTBEAT_S` from its own thread and connection, so stations see every node's cameras and a node
that died (``kill -9``, power, network) shows as down once its heartbeat is :data:`DOWN_AFTER_S` old.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_desktop.core import config as config_mod
from reid_desktop.core.database_url import PostgresLocation
from reid_desktop.core.notifications import NotificationListener
from reid_desktop.core.pg_schema import CHANGES_CHANNEL, PgSchemaError, open_database
from reid_desktop.core.pipeline import Pipeline
from reid_desktop.core.redaction import redact
from reid_desktop.core.runner import PipelineControl
from reid_desktop.core.shared_changes import (
    EmbeddingsAdded,
    SharedChange,
    SharedEmbeddings,
    TargetChanged,
    parse_change,
)
from reid_desktop.core.sources import SourceSpec
from reid_desktop.core.store import CameraHealth

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
DOWN_AFTER_S = 3 * HEARTBEAT_S  # a node whose heartbeat is older than this is down
CATCH_UP_BLOCK = 5000  # embeddings read at a time when a listener catches up after a reconnection


@dataclass(frozen=True)
class NodeFile:
    """What a node runs: its name, its cameras and the pipeline's settings."""

    name: str
    cameras: list[SourceSpec]
    config: config_mod.PipelineConfig


def load_node_file(path: Path, overrides: dict[str, Any] | None = None) -> NodeFile:
    """Read ``[node]``, ``[[cameras]]`` and the settings sections; :class:`ConfigError` names what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise config_mod.ConfigError(f"node file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise config_mod.ConfigError(f"node file {path} is not valid TOML: {exc}") from None
    node = data.pop("node", {})
    cameras = data.pop("cameras", [])
    if not isinstance(cameras, list) or not cameras:
        raise config_mod.ConfigError(f"node file {path} names no cameras: add [[cameras]] tables with name and uri")
    specs = []
    for number, camera in enumerate(cameras, start=1):
        unknown = set(camera) - {"name", "uri", "region", "loop", "realtime", "analysis_fps"}
        if unknown or "uri" not in camera or "name" not in camera:
            raise config_mod.ConfigError(f"camera {number} of {path}: needs name and uri" +
                                         (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""))
        region = camera.get("region")
        try:
            specs.append(SourceSpec(str(camera["uri"]), str(camera["name"]),
                                    tuple(float(v) for v in region) if region else None,  # type: ignore[arg-type]
                                    bool(camera.get("loop", False)), bool(camera.get("realtime", False)),
                                    camera.get("analysis_fps")))
        except (TypeError, ValueError) as exc:
            raise config_mod.ConfigError(f"camera {camera['name']} of {path}: {exc}") from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise config_mod.ConfigError(f"node file {path}: two cameras share a name")
    config = config_mod.apply(config_mod.PipelineConfig(), data)
    if overrides:
        config = config_mod.apply(config, overrides)
    return NodeFile(str(node.get("name") or socket.gethostname()), specs, config)


@dataclass
class _Camera:
    uri: str
    state: str = "connecting"
    frames: int = 0


@dataclass
class NodeHealth:
    """This node's rows in the database, kept fresh from a thread of its own (see the module's docstring)."""

    location: PostgresLocation
    name: str
    cameras: dict[str, _Camera] = field(default_factory=dict)
    following: set[int] = field(default_factory=set)  # the targets this node's matcher follows

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._last = time.monotonic()
        self.started = time.time()

    def follows(self, identity_id: int, is_target: bool) -> None:
        """The pipeline has taken on (or dropped) a target: the next heartbeat says so."""
        with self._lock:
            if is_target:
                self.following.add(identity_id)
            else:
                self.following.discard(identity_id)

    def add_camera(self, spec: SourceSpec) -> None:
        with self._lock:
            self.cameras[spec.source_id] = _Camera(redact(spec.uri))

    def camera_state(self, source_id: str, state: str) -> None:
        with self._lock:
            if source_id in self.cameras:
                self.cameras[source_id].state = state

    def frame(self, source_id: str) -> None:
        with self._lock:
            if source_id in self.cameras:
                self.cameras[source_id].frames += 1

    def start(self) -> None:
        """Register the node (its name must not be running elsewhere) and start the heartbeat."""
        self._conn = open_database(self.location)
        row = self._conn.execute("SELECT host, pid, heartbeat, state FROM nodes WHERE name = %s",
                                 (self.name,)).fetchone()
        if row and row[3] == "running" and time.time() - row[2] < DOWN_AFTER_S \
                and (row[0], row[1]) != (socket.gethostname(), os.getpid()):
            raise PgSchemaError(f"a node named {self.name} is already running on {row[0]} (process {row[1]}): "
                                "give this one another name ([node] name in its file)")
        with self._conn.transaction():  # this node's runs a kill -9 or power cut left open
            self._conn.execute("UPDATE runs SET status = 'crashed', finished = COALESCE((SELECT MAX(timestamp) "
                               "FROM sightings WHERE run_id = runs.id), started) "
                               "WHERE node = %s AND status = 'running'", (self.name,))
        self._write("running")
        self._thread = threading.Thread(target=self._beat, name=f"node-heartbeat-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, state: str = "stopped") -> None:
        """The last heartbeat, saying how the node ended; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S + 5)
        try:
            self._write(state)
        except Exception as exc:  # the database is gone: stations will see the heartbeat stop instead
            log.warning("node %s: could not record its stop (%s)", self.name, exc)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self._conn.closed or self._conn.broken:
                    self._conn = open_database(self.location)
                self._write("running")
            except Exception as exc:  # a server restart: the next beat tries again
                log.warning("node %s: heartbeat not written (%s)", self.name, exc)

    def _write(self, state: str) -> None:
        now, elapsed = time.time(), max(time.monotonic() - self._last, 1e-6)
        with self._lock:
            rows = [(self.name, source_id, camera.uri, camera.state if state == "running" else state,
                     camera.frames / elapsed, now) for source_id, camera in self.cameras.items()]
            for camera in self.cameras.values():
                camera.frames = 0
            self._last = time.monotonic()
            following = ",".join(str(i) for i in sorted(self.following)) if state == "running" else ""
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO nodes (name, host, pid, started, heartbeat, state, following) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET host = excluded.host, "
                "pid = excluded.pid, started = excluded.started, heartbeat = excluded.heartbeat, "
                "state = excluded.state, following = excluded.following",
                (self.name, socket.gethostname(), os.getpid(), self.started, now, state, following))
            for row in rows:
                self._conn.execute(
                    "INSERT INTO cameras (node, name, uri, state, frames_per_s, updated) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (node, name) DO UPDATE SET uri = excluded.uri, "
                    "state = excluded.state, frames_per_s = excluded.frames_per_s, updated = excluded.updated", row)


class ChangeListener(NotificationListener):
    """Hears what other processes change on the shared database (NOTIFY on
    :data:`~reid_desktop.core.pg_schema.CHANGES_CHANNEL`) and hands each change to ``apply`` at once.

    Announced embeddings are read here, so the pipeline only has to add them; the changes ``own_backend``
    (the server process of this node's store) announced are left out: they are in effect already. On every
    (re)connection it first hands over every current target, so a target set while the server or the network
    was away is followed as soon as it is back, and after a reconnection the embeddings other runs than
    ``own_runs`` stored since the newest one it heard of (notifications are not kept for a listener that is
    away), in blocks of :data:`CATCH_UP_BLOCK`.
    """

    def __init__(self, location: PostgresLocation, apply: Callable[[SharedChange | SharedEmbeddings], None],
                 model_key: Callable[[], str], own_backend: Callable[[], int],
                 own_runs: Callable[[], Collection[int]]) -> None:
        super().__init__(location, CHANGES_CHANNEL, "change-listener")
        self.apply, self.model_key, self.own_backend, self.own_runs = apply, model_key, own_backend, own_runs
        self.heard_up_to = 0  # the newest embedding id heard of (0: none yet; the index attach read the rest)

    def connected(self, conn: Any) -> None:
        for (identity_id,) in conn.execute("SELECT id FROM identities WHERE is_target = 1").fetchall():
            self.apply(TargetChanged(int(identity_id), True))
        if self.heard_up_to:
            self._catch_up(conn)

    def _catch_up(self, conn: Any) -> None:
        """The embeddings announced while this listener was away (other runs' only)."""
        (newest,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()
        if newest <= self.heard_up_to:
            return
        own = set(self.own_runs())
        runs = sorted(int(run) for (run,) in conn.execute(
            "SELECT DISTINCT t.run_id FROM embeddings e JOIN tracks t ON t.id = e.track_row WHERE e.id > %s",
            (self.heard_up_to,)) if int(run) not in own)
        first = self.heard_up_to + 1
        log.info("catching up on embeddings %d to %d of %d runs", first, newest, len(runs))
        while runs and first <= newest:
            self._hand_over_added(conn, EmbeddingsAdded(first, min(first + CATCH_UP_BLOCK - 1, newest), tuple(runs)))
            first += CATCH_UP_BLOCK
        self.heard_up_to = max(self.heard_up_to, int(newest))

    def heard(self, conn: Any, pid: int, payload: str) -> None:
        if pid != self.own_backend():
            self._hand_over(conn, payload)

    def _hand_over(self, conn: Any, payload: str) -> None:
        try:
            change = parse_change(payload)
        except ValueError as exc:  # another version's, or someone else's NOTIFY on our channel
            log.warning("%s", exc)
            return
        if isinstance(change, EmbeddingsAdded):
            self._hand_over_added(conn, change)
        else:
            self.apply(change)

    def _hand_over_added(self, conn: Any, added: EmbeddingsAdded) -> None:
        self.heard_up_to = max(self.heard_up_to, added.last_id)
        shared = read_embeddings(conn, added, self.model_key())
        if shared is not None:
            self.apply(shared)


def follow_shared_changes(location: PostgresLocation, control: PipelineControl, pipeline: Pipeline,
                          own_backend: Callable[[], int],
                          applied: Callable[[SharedChange | SharedEmbeddings], None] | None = None) -> ChangeListener:
    """Start listening for other processes' changes and apply each to the running ``pipeline`` between frames
    (through ``control``); ``applied`` hears each one the pipeline has taken on."""
    def apply(change: SharedChange | SharedEmbeddings) -> None:
        def taken_on(done: Future[None]) -> None:
            if applied is not None and not done.cancelled() and done.exception() is None:
                applied(change)

        control.submit(lambda p: p.apply_change(change)).add_done_callback(taken_on)

    listener = ChangeListener(location, apply, lambda: pipeline.embedder.key, own_backend,
                              lambda: [run for run in (pipeline.run_id,) if run is not None])
    listener.start()
    return listener


def read_embeddings(conn: Any, added: EmbeddingsAdded, model_key: str) -> SharedEmbeddings | None:
    """The rows an :class:`EmbeddingsAdded` announced (of ``model_key``, still stored, with an identity), with
    the camera and time of each and each identity's creation; None when none is left."""
    rows = conn.execute(
        "SELECT e.id, e.identity_id, e.quality, e.vector, src.name, s.timestamp, i.created FROM embeddings e "
        "JOIN tracks t ON t.id = e.track_row JOIN sightings s ON s.id = e.sighting_id "
        "JOIN sources src ON src.id = s.source_id JOIN identities i ON i.id = e.identity_id "
        "WHERE e.id BETWEEN %s AND %s AND t.run_id = ANY(%s) AND e.model_key = %s ORDER BY e.id",
        (added.first_id, added.last_id, list(added.run_ids), model_key)).fetchall()
    if not rows:
        return None
    return SharedEmbeddings(
        added.run_ids, model_key, np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float32), np.stack([np.frombuffer(r[3], np.float32) for r in rows]),
        tuple(str(r[4]) for r in rows), np.array([r[5] for r in rows], np.float64),
        {int(r[1]): float(r[6]) for r in rows})


def camera_health(conn: Any, now: float | None = None) -> list[CameraHealth]:
    """Every node's cameras as a station shows them: a camera of a node that stopped or went silent is down."""
    now = time.time() if now is None else now
    out = []
    for node, name, uri, state, rate, node_state, heartbeat in conn.execute(
            "SELECT c.node, c.name, c.uri, c.state, c.frames_per_s, n.state, n.heartbeat FROM cameras c "
            "JOIN nodes n ON n.name = c.node ORDER BY c.node, c.name"):
        up = node_state == "running" and now - heartbeat <= DOWN_AFTER_S
        out.append(CameraHealth(node, name, uri, state if up else "down", float(rate) if up else 0.0, up))
    return out
