"""Child processes of the app (the trainer, detector preparation), started with this very installation.

``reid-desktop trainer ...`` runs in a :class:`QProcess` (never a thread: training must not share
the window's GIL or crash it). Its standard output is decoded line by line with
:func:`trainer.events.decode`; everything else it prints is passed on as log text.
"""

from __future__ import annotations

import sys
import typing

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from reid_desktop.core.paths import app_command
from trainer import events

STOP_GRACE_MS = 60_000  # a stopping trainer finishes its step or evaluation; after this it is killed
SHUTDOWN_WAIT_MS = 10_000  # the window closes: how long a trainer may take to stop before it is killed


def trainer_command(*args: str) -> tuple[str, list[str]]:
    """The trainer CLI as a child process."""
    return app_command("trainer", *args)


def without_console_window(process: QProcess) -> None:
    if sys.platform == "win32" and hasattr(process, "setCreateProcessArgumentsModifier"):
        process.setCreateProcessArgumentsModifier(_without_console_window)  # untested: no Windows here


def _without_console_window(arguments: typing.Any) -> None:
    """Windows: start the console trainer without flashing a console window (CREATE_NO_WINDOW)."""
    arguments.flags |= 0x08000000


class TrainerProcess(QObject):
    """One run of the trainer CLI: its events, its log lines, and how it ended."""

    received = Signal(object)  # a trainer.events.Event
    log = Signal(str)  # a line the trainer printed that is not an event, or a line about the process
    finished = Signal(str, int)  # finished | stopped | failed, and the exit status

    def __init__(self, args: list[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.args = args
        self._buffer = b""
        self.process = QProcess(self)
        program, full_args = trainer_command(*args)
        self.process.setProgram(program)
        self.process.setArguments(full_args)
        without_console_window(self.process)
        self.process.readyReadStandardOutput.connect(self._on_stdout)
        self.process.readyReadStandardError.connect(self._on_stderr)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step (it keeps its last finished epoch).

        Never waits on the GUI thread: the trainer may be in the middle of an evaluation. ``finished``
        reports the end; one that has not reacted after a grace period is killed.
        """
        self.process.terminate()
        QTimer.singleShot(STOP_GRACE_MS, self.process, self.process.kill)  # no-op once it ended

    def shutdown(self) -> None:
        """Stop now, waiting a bounded time: the app is closing and no process may outlive it."""
        self.process.terminate()
        if not self.process.waitForFinished(SHUTDOWN_WAIT_MS):
            self.process.kill()
            self.process.waitForFinished(3000)

    def _on_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                decoded = events.decode(line)
            except events.EventFormatError as exc:
                self.log.emit(f"error: {exc}")
                continue
            if decoded is None:
                self.log.emit(line.decode(errors="replace"))
            else:
                self.received.emit(decoded)

    def _on_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError().data()).decode(errors="replace").rstrip()
        if text:
            self.log.emit(text)

    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._on_stdout()
        self.finished.emit({0: "finished", 1: "stopped"}.get(code, "failed"), code)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.log.emit("error: the trainer could not be started")
            self.finished.emit("failed", -1)
