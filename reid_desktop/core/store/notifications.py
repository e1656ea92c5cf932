"""Hearing PostgreSQL notifications (LISTEN) from a thread and a connection of one's own, through server restarts.

What one process tells the others on a shared database travels as NOTIFY on a channel: identity changes
(core/store/shared_changes.py, :data:`~reid_desktop.core.store.pg_schema.CHANGES_CHANNEL`) and the boxes a node's
cameras show now (core/store/live_boxes.py). A :class:`NotificationListener` keeps one connection listening,
reconnects with back-off when the server or the network goes away, and hands every notification to
:meth:`~NotificationListener.heard` on its thread (psycopg keeps the ones that arrive while ``heard`` queries).
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Any

from reid_desktop.core.store.database_url import PostgresLocation
from reid_desktop.core.store.pg_schema import PgSchemaError, connect

log = logging.getLogger(__name__)

POLL_S = 0.2  # how long a wait for notifications lasts before the stop flag is looked at again
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
REFUSALS_LOGGED = (1, 10, 100)  # which refused notifications are logged (then every thousandth)


class NotificationListener(abc.ABC):
    """LISTEN on ``channel``; subclasses say what a (re)connection and a notification mean."""

    def __init__(self, location: PostgresLocation, channel: str, thread_name: str) -> None:
        self.location, self.channel = location, channel
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while connected and listening
        self.backend_pid = 0  # the server process of the listening connection
        self.refused = 0  # notifications ``heard`` could not take (malformed, hostile)
        self._thread = threading.Thread(target=self._listen, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop listening; ``wait=False`` for a GUI thread, which must not wait for a connection attempt."""
        self._stop.set()
        if wait:
            self._thread.join(timeout=5)

    def connected(self, conn: Any) -> None:  # noqa: B027 - optional: most listeners have nothing to read on connecting
        """Called on every (re)connection, once listening: what may have been missed meanwhile is read here."""

    def polled(self, conn: Any) -> None:  # noqa: B027 - optional: for listeners with something to do regularly
        """Called after every wait for notifications (at least every :data:`POLL_S`); ``conn`` may be queried."""

    @abc.abstractmethod
    def heard(self, conn: Any, note: Any) -> None:
        """One notification (psycopg's ``Notify``: ``channel``, ``payload`` and the sender's server process
        ``pid``); ``conn`` may be queried (no wait is in progress)."""

    def _listen(self) -> None:
        import psycopg

        delay = RETRY_FIRST_S
        try:
            while not self._stop.is_set():
                try:
                    with connect(self.location) as conn:
                        self.backend_pid = int(conn.info.backend_pid)
                        conn.execute(f"LISTEN {self.channel}")
                        self.connected(conn)
                        self.listening.set()
                        delay = RETRY_FIRST_S
                        while not self._stop.is_set():
                            for note in list(conn.notifies(timeout=POLL_S)):  # taken first: no query while it waits
                                self._hear(conn, note)
                            self.polled(conn)
                except (psycopg.Error, PgSchemaError) as exc:
                    self.listening.clear()
                    log.warning("notifications on %s interrupted (%s); listening again in %.0f s", self.channel,
                                exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
        finally:
            self.listening.clear()  # whatever ended the thread, nobody may believe it still listens

    def _hear(self, conn: Any, note: Any) -> None:
        """One notification; one that ``heard`` cannot take is refused, never the end of listening.

        Any role that can connect can NOTIFY anything on the channel: a payload is input, not a command.
        Database errors still propagate (they mean the connection is gone: listen again).
        """
        import psycopg

        try:
            self.heard(conn, note)
        except psycopg.Error:
            raise
        except Exception as exc:
            self.refused += 1
            if self.refused in REFUSALS_LOGGED or self.refused % 1000 == 0:  # a flood is not a flood of log lines
                log.warning("a notification on %s was refused (%d so far): %s: %s; payload %r", self.channel,
                            self.refused, type(exc).__name__, str(exc)[:120], str(note.payload)[:80])
