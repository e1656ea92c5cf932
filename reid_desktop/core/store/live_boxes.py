"""What a node's cameras show right now, for operator stations that open the cameras' streams themselves.

A processing node publishes the boxes of every camera's newest analysed frame (each person's track,
global identity and whether it is followed) as a NOTIFY on :data:`LIVE_CHANNEL`. A station that watches one
of those cameras decodes the stream on its own and draws the newest boxes it heard over its own pictures,
scaled from the node's frame size to its own (the feed carries them along their motion and says how far
they lag). Nothing of this is stored, and nothing waits for it: the :class:`LivePublisher` keeps only the
newest boxes per camera and sends at most one set every :data:`PUBLISH_EVERY_S` per camera, from a thread
and a connection of its own; while the database is away boxes are simply not sent.

One JSON object per notification: PostgreSQL refuses payloads of 8000 bytes, so a crowded frame keeps its most
confident persons and says how many were left out.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_desktop.core.capture.sources import SourceKind, SourceSpec
from reid_desktop.core.redaction import MASK, redact
from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.notifications import NotificationListener
from reid_desktop.core.store.pg_schema import PgSchemaError, connect
from reid_desktop.core.types import FrameResult, TrackedPerson

log = logging.getLogger(__name__)

LIVE_CHANNEL = "reid_live"
PAYLOAD_LIMIT = 7900  # bytes; the server's limit is 8000
PUBLISH_EVERY_S = 0.1  # per camera: ten sets of boxes a second at most
VERSION = 1

Region = tuple[float, float, float, float]


def remote_source_id(node: str, camera: str) -> str:
    """How a station names a node's camera: cameras of two nodes may share a name."""
    return f"{node}/{camera}"


@dataclass(frozen=True)
class LiveBoxes:
    """The persons of one analysed frame of a node's camera, in the pixels of that node's (cut, scaled) frame.

    ``region`` is the camera's region as the node cuts it, so that a station cuts its pictures the same way;
    ``left_out`` counts persons that did not fit into one notification.
    """

    node: str
    camera: str
    frame_index: int
    timestamp: float
    media_time: float | None
    width: int
    height: int
    region: Region | None
    persons: tuple[TrackedPerson, ...]
    left_out: int = 0

    @property
    def source_id(self) -> str:
        return remote_source_id(self.node, self.camera)

    def on_picture(self, image: np.ndarray) -> FrameResult:
        """These boxes as the result of a frame of another size (the station's own picture of the camera)."""
        scale_x, scale_y = image.shape[1] / self.width, image.shape[0] / self.height
        scale = np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
        persons = tuple(TrackedPerson(p.track_id, (p.box[:4] * scale).astype(np.float32), p.confidence,
                                      p.identity_id, p.match_score, None, p.is_target) for p in self.persons)
        return FrameResult(self.source_id, self.frame_index, self.timestamp, image, persons, self.media_time)


def boxes_of(node: str, result: FrameResult, region: Region | None) -> LiveBoxes:
    height, width = result.image.shape[:2]
    return LiveBoxes(node, result.source_id, result.frame_index, result.timestamp, result.media_time, width,
                     height, region, result.persons)


def _person_fields(person: TrackedPerson) -> list[Any]:
    x1, y1, x2, y2 = (round(float(v), 1) for v in person.box[:4])
    return [person.track_id, person.identity_id, int(person.is_target), x1, y1, x2, y2,
            round(float(person.confidence), 3)]


def format_boxes(boxes: LiveBoxes) -> str:
    """The payload of ``boxes``, at most :data:`PAYLOAD_LIMIT` bytes (read back by :func:`parse_boxes`);
    ValueError when even the names do not fit."""
    head = {"v": VERSION, "node": boxes.node, "camera": boxes.camera, "frame": boxes.frame_index,
            "t": boxes.timestamp, "m": boxes.media_time, "w": boxes.width, "h": boxes.height,
            "region": list(boxes.region) if boxes.region is not None else None}
    persons = [json.dumps(_person_fields(p), separators=(",", ":"))
               for p in sorted(boxes.persons, key=lambda p: -p.confidence)]
    base = len(json.dumps({**head, "p": [], "x": len(persons) + boxes.left_out}, separators=(",", ":")).encode())
    if base > PAYLOAD_LIMIT:
        raise ValueError(f"the names of camera {boxes.camera[:40]!r} of node {boxes.node[:40]!r} are too long to "
                         "publish its boxes")
    kept, size = [], base
    for text in persons:
        if size + len(text) + 1 > PAYLOAD_LIMIT:
            break
        kept.append(text)
        size += len(text) + 1
    left_out = len(persons) - len(kept) + boxes.left_out
    return json.dumps({**head, "x": left_out}, separators=(",", ":"))[:-1] + f',"p":[{",".join(kept)}]}}'


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def parse_boxes(payload: str) -> LiveBoxes:
    """A payload back into its boxes; ValueError for one that is not ours (another version, someone else's)."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError("not version 1")
        persons = []
        for fields in data["p"]:
            track, identity, target, x1, y1, x2, y2, confidence = fields
            persons.append(TrackedPerson(_integer(track), np.array([_number(v) for v in (x1, y1, x2, y2)],
                                                                   np.float32), _number(confidence),
                                         None if identity is None else _integer(identity), None,
                                         is_target=bool(_integer(target))))
        region = data["region"]
        if region is not None:
            region = tuple(_number(v) for v in region)
            SourceSpec("-", "-", region)  # the checks of a camera's region
        width, height = _integer(data["w"]), _integer(data["h"])
        if width <= 0 or height <= 0 or not isinstance(data["node"], str) or not isinstance(data["camera"], str):
            raise ValueError("bad size or names")
        media_time = None if data["m"] is None else _number(data["m"])
        return LiveBoxes(data["node"], data["camera"], _integer(data["frame"]), _number(data["t"]), media_time,
                         width, height, region, tuple(persons), _integer(data["x"]))
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:  # whatever anyone can NOTIFY
        raise ValueError(f"not a node's live boxes ({type(exc).__name__}: {str(exc)[:80]}): {payload[:80]!r}") from None


class LivePublisher:
    """A node's newest boxes per camera, sent from a thread and a connection of its own (see the module)."""

    def __init__(self, location: PostgresLocation, node: str, regions: dict[str, Region | None]) -> None:
        self.location, self.node, self.regions = location, node, regions
        self._lock = threading.Lock()
        self._pending: dict[str, LiveBoxes] = {}
        self._sent_at: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.published = 0  # notifications sent (for the tests and the log)
        self._unpublishable: set[str] = set()  # cameras whose names do not fit a notification
        self._thread = threading.Thread(target=self._run, name=f"live-boxes-{node}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def publish(self, result: FrameResult) -> None:
        """Called by the run loop with every analysed frame; never waits for the database."""
        boxes = boxes_of(self.node, result, self.regions.get(result.source_id))
        with self._lock:
            self._pending[result.source_id] = boxes
        self._wake.set()

    def _due(self) -> list[LiveBoxes]:
        now = time.monotonic()
        with self._lock:
            due = [b for camera, b in self._pending.items() if now - self._sent_at.get(camera, -1e9) >= PUBLISH_EVERY_S]
            for boxes in due:
                del self._pending[boxes.camera]
                self._sent_at[boxes.camera] = now
        return due

    def _payloads(self, due: list[LiveBoxes]) -> list[str]:
        payloads = []
        for boxes in due:
            try:
                payloads.append(format_boxes(boxes))
            except ValueError as exc:  # said once per camera, not ten times a second
                if boxes.camera not in self._unpublishable:
                    self._unpublishable.add(boxes.camera)
                    log.warning("%s", exc)
        return payloads

    def _run(self) -> None:
        import psycopg

        conn: Any = None
        while not self._stop.is_set():
            self._wake.wait(PUBLISH_EVERY_S)
            self._wake.clear()
            payloads = self._payloads(self._due())
            if not payloads:
                continue
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(self.location)
                    log.info("node %s: publishing live boxes", self.node)
                with conn.transaction():  # one commit for all cameras: NOTIFY serialises commits server-wide
                    for payload in payloads:
                        conn.execute("SELECT pg_notify(%s, %s)", (LIVE_CHANNEL, payload))
                self.published += len(payloads)
            except (psycopg.Error, PgSchemaError) as exc:  # live only: these boxes are stale by the next try
                if conn is not None:
                    conn.close()
                    conn = None
                    log.warning("node %s: live boxes not sent (%s)", self.node, exc)
                self._stop.wait(1.0)
        if conn is not None:
            conn.close()


class LiveListener(NotificationListener):
    """A station's ear for the boxes of the node cameras it watches: ``deliver`` gets them on this thread."""

    def __init__(self, location: PostgresLocation, deliver: Callable[[LiveBoxes], None]) -> None:
        super().__init__(location, LIVE_CHANNEL, "live-boxes-listener")
        self.deliver = deliver
        self._lock = threading.Lock()
        self._watched: set[str] = set()

    def watch(self, source_id: str, watched: bool = True) -> None:
        with self._lock:
            (self._watched.add if watched else self._watched.discard)(source_id)

    def heard(self, conn: Any, note: Any) -> None:
        try:
            boxes = parse_boxes(note.payload)
        except ValueError as exc:
            log.debug("%s", exc)
            return
        with self._lock:
            wanted = boxes.source_id in self._watched
        if wanted:
            self.deliver(boxes)


def hides_credentials(uri: str) -> bool:
    """A node's camera address as stored (redacted) that had credentials or secret parameters taken out."""
    return MASK in uri


def station_uri(node: str, uri: str, secret_url: str | None) -> tuple[str | None, str]:
    """What a station opens to show a node's camera (its stored, redacted ``uri``), or None and why it cannot.

    ``secret_url`` is the camera's full URL from this station's keyring, when the operator gave it.
    """
    spec = SourceSpec(uri)
    if spec.kind is SourceKind.WEBCAM:
        return None, f"a webcam of node {node}: its video is only on that machine"
    if spec.kind is SourceKind.FILE:
        if Path(uri).is_file():
            return uri, ""
        return None, f"the file {uri} is on node {node}, not on this station"
    if hides_credentials(uri):
        if secret_url is not None and redact(secret_url) == uri:
            return secret_url, ""
        return None, "the stream needs a user name and password that this station does not have"
    return uri, ""
