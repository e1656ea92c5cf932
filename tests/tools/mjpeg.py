"""A real HTTP MJPEG camera on 127.0.0.1 (multipart/x-mixed-replace, as cheap IP cameras serve it) whose
connections can be made to drop after a few frames: for reconnection tests."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from types import TracebackType

import cv2
import numpy as np


class MjpegCamera:
    """Serves ``frames_per_connection`` frames of ``size`` per connection, then closes it; counts connections."""

    def __init__(self, frames_per_connection: int, size: tuple[int, int] = (160, 120), fps: float = 20.0) -> None:
        image = np.full((size[1], size[0], 3), (0, 128, 255), np.uint8)
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        self.connections = 0
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(frames_per_connection):
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg.tobytes() + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1.0 / fps)
                except OSError:  # the client went away first
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/video.mjpg"
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-camera", daemon=True)

    def __enter__(self) -> MjpegCamera:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
