"""Preparing the faster detector runtimes from the window: ``reid-desktop models prepare-detector`` in a child process.

Exporting, calibrating and checking take a minute or two of full CPU; a child process keeps the window and the
running analysis responsive and can be cancelled. Its output is shown as it comes, with the step count as progress.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QProgressBar, QVBoxLayout, QWidget

from reid_desktop.core.paths import app_command
from reid_desktop.ui.trainer_process import without_console_window

_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_CHOSEN = re.compile(r"^\s*(.+?)\s{2,}.*<- auto")


class PrepareDetectorDialog(QDialog):
    """Runs the preparation for one detector and size; ``prepared`` carries the runtime ``auto`` now picks."""

    prepared = Signal(str)

    def __init__(self, imgsz: int, detector_model: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prepare faster detector")
        self.resize(720, 420)
        self.status = QLabel(f"Exporting the detector to the faster runtimes at {imgsz} px, checking each against the "
                             "original and measuring it on this machine. Analysis goes on meanwhile, slower.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.output = QPlainTextEdit(readOnly=True)
        self.output.setMaximumBlockCount(1000)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.status, self.progress, self.output, self.buttons):
            layout.addWidget(widget)
        self.chosen = ""
        self._buffer = ""
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        program, args = app_command("models", "prepare-detector", "--imgsz", str(imgsz),
                                    *(["--detector", detector_model] if detector_model else []))
        self.process.setProgram(program)
        self.process.setArguments(args)
        without_console_window(self.process)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._failed_to_start)

    def start(self) -> None:
        self.process.start()

    def _read(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self.output.appendPlainText(line)
            self.output.verticalScrollBar().setValue(self.output.verticalScrollBar().maximum())
            step = _STEP.match(line)
            if step:
                self.progress.setRange(0, int(step.group(2)))
                self.progress.setValue(int(step.group(1)) - 1)
            chosen = _CHOSEN.match(line)
            if chosen:
                self.chosen = chosen.group(1)

    def _finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read()
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if code == 0 else 0)
        if code == 0 and self.chosen:
            self.status.setText(f"Done: the detector setting 'auto' now runs {self.chosen}.")
            self.prepared.emit(self.chosen)
        elif code == 0:
            self.status.setText("Done, but no faster runtime passed its check here: the detector stays on PyTorch.")
        else:
            self.status.setText(f"Preparation failed (exit status {code}); the output below says why.")
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.status.setText("The preparation could not be started.")
            self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)

    def reject(self) -> None:
        """Cancel stops the child (its half-made export is never used: exports are moved into place whole)."""
        if self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()
            self.process.waitForFinished(3000)
        super().reject()
