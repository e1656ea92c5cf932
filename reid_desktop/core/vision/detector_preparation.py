"""The detector's faster runtimes, prepared in the background the first time a detector and size run on a machine.

Exporting, calibrating and checking every runtime (``reid-desktop models prepare-detector``) takes a minute or two
of CPU. A child process at low priority does it while the cameras run on what ``auto`` has now (PyTorch on a first
start), the likeliest fastest variant first. Each time a variant is done, the fastest that passed its check is
compared with the one running; if it is another, it is loaded here (in the watcher's thread, never the cameras')
and handed to the run loop, which swaps it in between two frames. Its boxes agree with the running one's (that is
the check), so trackers and tracks go on. Every variant's record is kept as soon as it is made: an interrupted
preparation resumes with the variants still missing, and nothing is redone until the checkpoint, the size or the
machine changes (the cache's keys). ``detector.prepare_in_background`` turns it off for a site;
``REID_DESKTOP_BACKGROUND_PREPARE=0`` for one process (test rigs, machines prepared at install).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.paths import app_command
from reid_desktop.core.vision.detection import Detector
from reid_desktop.core.vision.detector_runtimes import (
    REFERENCE,
    DetectorCache,
    Variant,
    checkpoint_of,
    fastest_first,
    load_variant,
)

log = logging.getLogger(__name__)

SWITCH_VARIABLE = "REID_DESKTOP_BACKGROUND_PREPARE"
NICENESS = 10  # POSIX: the cameras' analysis comes first; the preparation takes what CPU is left
_WINDOWS_FLAGS = 0x00004000 | 0x08000000  # BELOW_NORMAL_PRIORITY_CLASS, CREATE_NO_WINDOW
_STEP = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")
PROGRESS_KEPT = 64  # progress lines not yet taken by the run loop (only the newest matter)
STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class DetectorPreparation:
    """Where the background preparation stands: the run loop yields it, the status bar and the CLI show it."""

    done: int  # variants finished
    total: int
    doing: str  # what it does now, or how it ended
    finished: bool = False
    failed: bool = False

    @property
    def text(self) -> str:
        if self.failed:
            return f"Preparing the faster detector failed: {self.doing}"
        if self.finished:
            return f"Faster detector prepared ({self.doing})"
        return f"Preparing the faster detector ({self.done + 1}/{self.total}): {self.doing}"


def enabled(config: DetectorConfig) -> bool:
    return (config.runtime == "auto" and config.prepare_in_background
            and os.environ.get(SWITCH_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off"))


def start_if_needed(config: DetectorConfig, running: Detector) -> BackgroundPreparation | None:
    """Start preparing what this machine has not prepared for this detector and size; None when there is nothing to
    do (turned off, a named runtime, a detector that is already an export, or every variant checked here)."""
    checkpoint = checkpoint_of(config)
    if not enabled(config) or checkpoint is None or not checkpoint.is_file():
        return None
    cache = DetectorCache(checkpoint, config.imgsz)
    missing = fastest_first(cache.unprepared())
    if not missing:
        return None
    return BackgroundPreparation(config, cache, missing, getattr(running, "variant", REFERENCE)).start()


class BackgroundPreparation:
    """``reid-desktop models prepare-detector`` for ``variants`` in a low-priority child, watched by a thread."""

    def __init__(self, config: DetectorConfig, cache: DetectorCache, variants: list[Variant], running: Variant) -> None:
        self.config = config
        self.cache = cache
        self.variants = variants
        self._running = running
        self._progress: collections.deque[DetectorPreparation] = collections.deque(maxlen=PROGRESS_KEPT)
        self._faster: Detector | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child: subprocess.Popen[str] | None = None
        self._watcher = threading.Thread(target=self._watch, name="detector-preparation", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> BackgroundPreparation:
        program, args = app_command("models", "prepare-detector", "--imgsz", str(self.cache.imgsz),
                                    "--detector", str(self.cache.checkpoint),
                                    "--only", ",".join(v.key for v in self.variants))
        self._child = subprocess.Popen([program, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
                                       creationflags=_WINDOWS_FLAGS if sys.platform == "win32" else 0)
        if sys.platform != "win32":  # before the child has started its compute threads, which inherit it
            with contextlib.suppress(OSError):  # it has already ended
                os.setpriority(os.PRIO_PROCESS, self._child.pid, NICENESS)
        self._say(DetectorPreparation(0, len(self.variants), f"starting with {self.variants[0].label}"))
        self._watcher.start()
        return self

    def progress(self) -> list[DetectorPreparation]:
        """What happened since the last call, oldest first."""
        with self._lock:
            taken = list(self._progress)
            self._progress.clear()
        return taken

    def faster_detector(self) -> Detector | None:
        """A faster verified detector, once, when one is ready: the caller swaps it in."""
        with self._lock:
            faster, self._faster = self._faster, None
        return faster

    def stop(self) -> None:
        """End the child (what it finished stays prepared; a half-made export is never used) and the watcher."""
        self._stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._watcher.is_alive():
            self._watcher.join(STOP_WAIT_S)

    def _say(self, news: DetectorPreparation) -> None:
        with self._lock:
            self._progress.append(news)
        log.info("%s", news.text)

    def _watch(self) -> None:
        child = self._child
        assert child is not None and child.stdout is not None
        done, total, last = 0, len(self.variants), ""
        for line in child.stdout:
            line = line.rstrip()
            step = _STEP.match(line)
            if step is None:
                last = line or last
                continue
            number, total, last = int(step.group(1)), int(step.group(2)), step.group(3)
            if number - 1 > done:  # the variant before this one is finished
                done = number - 1
                self._offer_faster()
            self._say(DetectorPreparation(done, total, last))
        code = child.wait()
        if self._stopping.is_set():
            return
        if code != 0:
            self._say(DetectorPreparation(done, total, last or f"exit status {code}", finished=True, failed=True))
            return
        self._offer_faster()
        best = self.cache.fastest()
        self._say(DetectorPreparation(total, total, f"'auto' runs {best.variant.label if best else 'PyTorch'}",
                                      finished=True))

    def _offer_faster(self) -> None:
        """Load the fastest checked variant if it is not the one running (in this thread: loading takes seconds)."""
        best = self.cache.fastest()
        if best is None or best.variant == self._running or self._stopping.is_set():
            return
        try:
            detector = load_variant(best.variant, self.config, self.cache)
        except Exception as exc:  # a runtime's own error as much as ours: the cameras go on with what they have
            log.warning("the prepared %s detector cannot be loaded (%s: %s); the detector stays as it is",
                        best.variant.label, type(exc).__name__, exc)
            return
        self._running = best.variant
        with self._lock:
            self._faster = detector
