"""Faults that recur (a broken camera, a bad model output on every frame) are logged, not floods.

The pipeline skips what failed and goes on; :class:`FaultLog` writes the first occurrence with its
traceback and then one line per interval with how often it happened meanwhile, so a fault that
lasts for days costs a few log lines an hour.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass


@dataclass
class _Seen:
    last_logged: float
    suppressed: int = 0


class FaultLog:
    """Rate-limited error logging per kind of fault. Bounded: at most ``max_kinds`` kinds are remembered."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0, max_kinds: int = 256) -> None:
        self._log = logger
        self.every_s = every_s
        self.max_kinds = max_kinds
        self._seen: dict[str, _Seen] = {}
        self.total = 0

    def report(self, kind: str, message: str, exc: BaseException | None = None) -> None:
        """Log ``message`` now, or count it when ``kind`` was logged less than ``every_s`` ago."""
        self.total += 1
        now = time.monotonic()
        seen = self._seen.get(kind)
        if seen is not None and now - seen.last_logged < self.every_s:
            seen.suppressed += 1
            return
        repeats = f" (and {seen.suppressed} more times since the last report)" if seen and seen.suppressed else ""
        self._log.error("%s%s", message, repeats, exc_info=exc if seen is None else None)
        if seen is None and len(self._seen) >= self.max_kinds:
            self._seen.pop(next(iter(self._seen)))
        self._seen[kind] = _Seen(now)
