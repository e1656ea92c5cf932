"""A loopback TCP relay in front of a PostgreSQL server that can slow every message down, go silent, drop every
connection and lose the reply to a COMMIT.

``delay_s``: each piece of data waits this long before it is passed on, both ways (a slow or distant link).
``frozen``: while set, nothing is passed on either way and connections stay open (a server that stopped
answering, a link that went silent). ``drop_all()``: every relayed connection is cut at once (a network fault);
new ones are relayed again. A connection made while the server is down is closed at once, as the server would
refuse it. With ``lose_next_commit_reply()`` armed, the relay passes the next COMMIT (simple or extended protocol)
and the messages up to its Sync to the server, lets the server commit, and then closes the client's connection
without passing the server's answer on: the client cannot tell whether its transaction committed. Connections
made afterwards are relayed untouched. Clients must connect with ``sslmode=disable`` (the relay reads the protocol).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

_REQUESTS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: untyped, answered with one byte
COMMIT_SETTLE_S = 0.5  # how long the server gets to commit before the client's connection is cut


class PgRelay:
    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self.commits_cut = 0
        self.delay_s = 0.0
        self.frozen = threading.Event()
        self._links: list[_Link] = []
        self._stop = threading.Event()
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> PgRelay:
        self._accepting.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._listener.close()
        self._accepting.join(timeout=5)

    def lose_next_commit_reply(self) -> None:
        self._armed.set()

    def drop_all(self) -> int:
        """Cut every relayed connection; returns how many were open."""
        links, self._links = [link for link in self._links if not link.cut.is_set()], []
        for link in links:
            link.close()
        return len(links)

    def _wait_while_frozen(self, link: _Link) -> None:
        time.sleep(self.delay_s)
        while self.frozen.is_set() and not link.cut.is_set():
            time.sleep(0.01)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.server_port))
            except OSError:  # the server is down: refused, as it would be
                client.close()
                continue
            link = _Link(client, server)
            self._links = [*(kept for kept in self._links if not kept.cut.is_set()), link]
            for pump in (self._from_client, self._from_server):
                threading.Thread(target=pump, args=(link,), daemon=True).start()

    def _from_server(self, link: _Link) -> None:
        try:
            while (data := link.server.recv(65536)) and not link.cut.is_set():
                self._wait_while_frozen(link)
                if not link.hold.is_set():  # after a lost COMMIT: the answer is swallowed
                    link.client.sendall(data)
        except OSError:
            pass
        finally:
            link.close()

    def _from_client(self, link: _Link) -> None:
        buffer, started, commit_seen = b"", False, False
        prepared: set[bytes] = set()  # names of the statements prepared as COMMIT (psycopg prepares frequent ones)
        try:
            while (data := link.client.recv(65536)) and not link.cut.is_set():
                buffer += data
                run_commit = False
                while True:  # the client's messages: a COMMIT, and the Sync (or the simple Query) that runs it
                    if not started:
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!II", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer, started = buffer[length:], code not in _REQUESTS
                        continue
                    if len(buffer) < 5:
                        break
                    kind, length = buffer[:1], struct.unpack("!I", buffer[1:5])[0]
                    if len(buffer) < 1 + length:
                        break
                    body, buffer = buffer[5:1 + length], buffer[1 + length:]
                    if self._commits(kind, body, prepared) and self._armed.is_set():
                        self._armed.clear()
                        commit_seen = True
                        link.hold.set()
                    if commit_seen and kind in (b"Q", b"S"):
                        run_commit = True
                self._wait_while_frozen(link)
                link.server.sendall(data)
                if run_commit:
                    self.commits_cut += 1
                    time.sleep(COMMIT_SETTLE_S)  # the server commits; its answer never reaches the client
                    return
        except OSError:
            pass
        finally:
            link.close()


    @staticmethod
    def _commits(kind: bytes, body: bytes, prepared: set[bytes]) -> bool:
        """Whether this client message runs (or prepares, as the next to run) a COMMIT."""
        if kind == b"Q":
            return body.upper().startswith(b"COMMIT")
        if kind == b"P":  # Parse: statement name, query
            name, _, query = body.partition(b"\0")
            if query.upper().startswith(b"COMMIT"):
                prepared.add(name)
                return True
            prepared.discard(name)
            return False
        if kind == b"B":  # Bind: portal name, statement name
            statement = body.split(b"\0", 2)[1]
            return bool(statement) and statement in prepared
        return False


class _Link:
    """One relayed connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.hold = threading.Event()
        self.cut = threading.Event()

    def close(self) -> None:
        self.cut.set()
        for end in (self.client, self.server):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
