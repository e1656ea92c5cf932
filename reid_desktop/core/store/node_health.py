"""A processing node's presence in the shared database: the ``nodes`` row (host, process, state, heartbeat) and one
``cameras`` row per camera (state, frames per second), written every :data:`HEARTBEAT_S` from a thread and
connection of its own, so stations see every node's cameras and a node that died (``kill -9``, power, network)
shows as down once its heartbeat is :data:`DOWN_AFTER_S` old. PostgreSQL only."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.redaction import redact
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.pg_schema import DOWN_AFTER_S, HEARTBEAT_S, SERVER_NOW, PgSchemaError, open_database

log = logging.getLogger(__name__)


@dataclass
class NodeCamera:
    uri: str
    state: str = "connecting"
    frames: int = 0


@dataclass
class NodeHealth:
    """This node's rows in the database, kept fresh from a thread of its own (see the module's docstring)."""

    location: PostgresLocation
    name: str
    cameras: dict[str, NodeCamera] = field(default_factory=dict)
    following: set[int] = field(default_factory=set)  # the targets this node's matcher follows

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._last = time.monotonic()
        self.started = time.time()

    def follows_exactly(self, identity_ids: frozenset[int]) -> None:
        """The pipeline follows these and no others (read from the database after a (re)connection)."""
        with self._lock:
            self.following = set(identity_ids)

    def follows(self, identity_id: int, is_target: bool) -> None:
        """The pipeline has taken on (or dropped) a target: the next heartbeat says so."""
        with self._lock:
            if is_target:
                self.following.add(identity_id)
            else:
                self.following.discard(identity_id)

    def add_camera(self, spec: SourceSpec) -> None:
        with self._lock:
            self.cameras[spec.source_id] = NodeCamera(redact(spec.uri))

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
        row = self._conn.execute(f"SELECT host, pid, {SERVER_NOW} - heartbeat, state FROM nodes WHERE name = %s",
                                 (self.name,)).fetchone()
        if row and row[3] == "running" and row[2] < DOWN_AFTER_S \
                and (row[0], row[1]) != (socket.gethostname(), os.getpid()):
            self._conn.close()
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
        """This node's rows, stamped with the server's clock: machines compare one clock, not their own."""
        elapsed = max(time.monotonic() - self._last, 1e-6)
        with self._lock:
            rows = [(self.name, source_id, camera.uri, camera.state if state == "running" else state,
                     camera.frames / elapsed) for source_id, camera in self.cameras.items()]
            for camera in self.cameras.values():
                camera.frames = 0
            self._last = time.monotonic()
            following = ",".join(str(i) for i in sorted(self.following)) if state == "running" else ""
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO nodes (name, host, pid, started, heartbeat, state, following) "
                f"VALUES (%s, %s, %s, %s, {SERVER_NOW}, %s, %s) ON CONFLICT (name) DO UPDATE SET host = excluded.host, "
                "pid = excluded.pid, started = excluded.started, heartbeat = excluded.heartbeat, "
                "state = excluded.state, following = excluded.following",
                (self.name, socket.gethostname(), os.getpid(), self.started, state, following))
            for row in rows:
                self._conn.execute(
                    "INSERT INTO cameras (node, name, uri, state, frames_per_s, updated) "
                    f"VALUES (%s, %s, %s, %s, %s, {SERVER_NOW}) ON CONFLICT (node, name) DO UPDATE SET "
                    "uri = excluded.uri, state = excluded.state, frames_per_s = excluded.frames_per_s, "
                    "updated = excluded.updated", row)


