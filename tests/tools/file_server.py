"""A loopback HTTP server for model downloads in tests: serves one file, honours Range, and can misbehave.

``mode``: ``"ok"``; ``"cut"`` (announces the whole length, closes after ``cut_at`` bytes, once);
``"wrong"`` (serves other bytes of the same length); ``"no-range"`` (ignores Range, always 200).
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class FileServer:
    payload: bytes
    mode: str = "ok"
    cut_at: int = 0
    requests: list[str | None] = field(default_factory=list)  # each request's Range header
    url: str = ""


@contextmanager
def serve(payload: bytes, mode: str = "ok", cut_at: int = 0) -> Iterator[FileServer]:
    state = FileServer(payload, mode, cut_at)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            state.requests.append(wanted)
            body = state.payload if state.mode != "wrong" else bytes(255 - b for b in state.payload)
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
            if match and state.mode != "no-range":
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if state.mode == "cut":
                state.mode = "ok"  # the next request gets the rest
                self.wfile.write(body[start:state.cut_at])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/model.pth"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
