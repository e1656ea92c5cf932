"""Getting a re-id model from the window: the catalogue, its licence note, and the download in a child process.

``reid-desktop models download NAME --progress lines`` does the work (download, verification, conversion,
parity check) in a child process, so the window and the running analysis stay responsive and Cancel
kills it cleanly: nothing is installed until the converted model has passed its check, and a cancelled
download resumes next time. ``installed`` carries the new model's path; the window then switches to it.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core.paths import app_command
from reid_desktop.core.vision import model_catalogue as catalogue
from reid_desktop.ui.trainer_process import without_console_window

_PROGRESS = re.compile(r"^\[download\] (\d+) (\d+)$")
_INSTALLED = re.compile(r"^installed (.+?\.onnx) \(")
COLUMNS = ("Model", "Trained on", "Rank-1", "mAP", "Input", "Here")


class GetReidModelDialog(QDialog):
    """Choose a catalogue model, accept its terms, download it; ``installed`` emits the installed ONNX path."""

    installed = Signal(str)

    def __init__(self, parent: QWidget | None = None, reason: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Get a re-id model")
        self.resize(820, 560)
        intro = QLabel((reason + "\n\n" if reason else "") +
                       "A re-id model trained to tell people apart is what keeps one identity per person across "
                       "cameras. These are FastReID's published ResNet-50 models; the figures are the authors', on "
                       "each data set's own test set. ★ marks the recommended one.")
        intro.setWordWrap(True)
        self.table = QTableWidget(len(catalogue.CATALOGUE), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        for row, item in enumerate(catalogue.CATALOGUE):
            star = "★ " if item.name == catalogue.RECOMMENDED else ""
            for column, text in enumerate((star + item.name, item.dataset, f"{item.rank1:.1f} %", f"{item.mAP:.1f} %",
                                           f"{item.input_height}×{item.input_width}")):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self._show_installed()
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.licence = QLabel()
        self.licence.setWordWrap(True)
        self.licence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.accept_terms = QCheckBox("I have checked that these terms allow my use of the model")
        self.accept_terms.toggled.connect(self._update_button)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.hide()
        self.output = QPlainTextEdit(readOnly=True)
        self.output.setMaximumBlockCount(500)
        self.output.setMaximumHeight(110)
        self.output.hide()  # until there is something to show
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.download_button = QPushButton("Download and use")
        self.buttons.addButton(self.download_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.download_button.clicked.connect(self.start_download)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (intro, self.table, self.licence, self.accept_terms, self.status, self.progress, self.output,
                       self.buttons):
            layout.addWidget(widget)
        self.url: str | None = None  # a mirror instead of the catalogue's address (tests, offline sites)
        self.installed_path = ""
        self._buffer = ""
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        without_console_window(self.process)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._failed_to_start)
        self.select(catalogue.RECOMMENDED)

    def _show_installed(self) -> None:
        for row, item in enumerate(catalogue.CATALOGUE):
            here = "installed" if catalogue.installed_path(item.name).exists() else ""
            self.table.setItem(row, 5, QTableWidgetItem(here))

    def select(self, name: str) -> None:
        names = [item.name for item in catalogue.CATALOGUE]
        self.table.selectRow(names.index(name))

    def chosen(self) -> catalogue.CatalogueEntry:
        return catalogue.CATALOGUE[max(self.table.currentRow(), 0)]

    def _selection_changed(self) -> None:
        item = self.chosen()
        self.licence.setText(f"<b>{item.name}</b>: {item.describe()}.<br>{item.licence}<br>"
                             f"<small>From {item.url}</small>")
        self._update_button()

    def _busy(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def _update_button(self) -> None:
        self.download_button.setEnabled(self.accept_terms.isChecked() and not self._busy())

    def start_download(self) -> None:
        item = self.chosen()
        program, args = app_command("models", "download", item.name, "--yes", "--progress", "lines",
                                    *(["--url", self.url] if self.url else []))
        self.process.setProgram(program)
        self.process.setArguments(args)
        self.output.clear()
        self.output.show()
        self.status.setText(f"Downloading {item.name}… Analysis goes on meanwhile.")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.table.setEnabled(False)
        self.process.start()
        self._update_button()

    def _read(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            progress = _PROGRESS.match(line.strip())
            if progress:
                done, total = int(progress.group(1)), int(progress.group(2))
                if total:
                    self.progress.setRange(0, 1000)
                    self.progress.setValue(int(1000 * done / total))
                    self.progress.setFormat(f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
                continue
            if line.startswith("converting"):
                self.status.setText("Converting to ONNX and checking it against PyTorch…")
                self.progress.setRange(0, 0)
            installed = _INSTALLED.match(line)
            if installed:
                self.installed_path = installed.group(1)
            self.output.appendPlainText(line)

    def _finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read()
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if code == 0 else 0)
        self.progress.setFormat("")
        self.table.setEnabled(True)
        self._show_installed()
        if code == 0 and self.installed_path:
            self.status.setText(f"Installed and checked: the cameras now use {self.chosen().name}.")
            self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
            self.installed.emit(self.installed_path)
        else:
            errors = [line for line in self.output.toPlainText().splitlines() if line.startswith("error:")]
            self.status.setText((errors[-1] if errors else f"The download stopped (exit status {code}).") +
                                " Nothing was installed; the current model stays in use.")
        self._update_button()

    def _failed_to_start(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.status.setText("The download could not be started.")
            self.table.setEnabled(True)
            self._update_button()

    def reject(self) -> None:
        """Cancel stops the child: nothing half-installed; the partial download resumes next time."""
        if self._busy():
            self.process.kill()
            self.process.waitForFinished(3000)
        super().reject()
