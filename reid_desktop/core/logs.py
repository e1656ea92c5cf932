"""Logging for the window and the command line: redacted everywhere, bounded on disk, private to the user.

Every handler carries :class:`~reid_desktop.core.redaction.RedactingFilter`, the last line of defence
should a URL with credentials reach a log call. The window, which runs unattended for weeks, also
writes ``<data>/logs/reid-desktop.log``: 5 MB a file, 3 old files kept (20 MB at most), mode 0600.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from reid_desktop.core.paths import PRIVATE_FILE_MODE, data_dir, private_dir
from reid_desktop.core.redaction import RedactingFilter

LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_reid_desktop_handler"


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A rotating log whose every file, the ones made at rollover included, is created 0600."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
        return open(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def configure(level: int, log_file: Path | None = None, console_format: str = _FORMAT) -> None:
    """Console logging at ``level`` and, with ``log_file``, a rotating file at INFO (or ``level`` if lower)."""
    root = logging.getLogger()
    for handler in list(root.handlers):  # ours from an earlier call; others' (a test runner's) stay
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter(console_format))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        private_dir(log_file.parent)
        file_handler = PrivateRotatingFileHandler(log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS,
                                                  encoding="utf-8")
        file_handler.setLevel(min(level, logging.INFO))
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(RedactingFilter())
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    logging.getLogger("ultralytics").setLevel(max(level, logging.WARNING))


def default_log_file() -> Path:
    return data_dir() / "logs" / "reid-desktop.log"
