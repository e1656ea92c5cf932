"""The Trainer tab: pick a data set, set the options, train in a separate process, watch it learn.

Training runs as ``reid-desktop trainer train --events ...`` (the same executable, so it works
when frozen) in a :class:`TrainerProcess`; its typed events drive the progress bar, the plots and
the log. Stop sends SIGTERM: the trainer keeps its last finished epoch and can resume from it.
"Use this model" exports the best checkpoint to ONNX in another trainer process and hands the
file to the main window, which hot-swaps the running pipeline's re-id model.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from reid_desktop.core import options
from reid_desktop.core.paths import data_dir, models_dir
from reid_desktop.ui.tasks import Dispatcher
from reid_desktop.ui.trainer_process import TrainerProcess
from reid_desktop.ui.training_views import OptionsForm, TrainingPlots
from trainer import events
from trainer.config import TrainConfig
from trainer.datasets import load_dataset

log = logging.getLogger(__name__)

def runs_dir() -> Path:
    path = data_dir() / "training"
    path.mkdir(parents=True, exist_ok=True)
    return path


class TrainerTab(QWidget):
    model_ready = Signal(str)  # an exported ONNX file the operator wants the live pipeline to use
    event_received = Signal(object)  # every trainer event (trainer.events.Event), after the tab handled it
    run_finished = Signal(str)  # finished | stopped | failed

    def __init__(self, dispatcher: Dispatcher, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dispatcher = dispatcher
        self.process: TrainerProcess | None = None
        self.exporter: TrainerProcess | None = None
        self.run_dir: Path | None = None
        self._started_at = 0.0
        self._total_steps = 0
        self._steps_per_epoch = 1

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_inputs())
        splitter.addWidget(self._build_results())
        splitter.setSizes([380, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._set_running(False)
        self.refresh_runs()

    def _build_inputs(self) -> QWidget:
        """Data set, options, start / stop / resume, and the search box."""
        left = QWidget()
        left_layout = QVBoxLayout(left)
        data_row = QHBoxLayout()
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("Market-1501, MARS-style or one folder per identity")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        check = QPushButton("Check")
        check.clicked.connect(self.check_dataset)
        data_row.addWidget(QLabel("Data set"))
        data_row.addWidget(self.data_edit, 1)
        data_row.addWidget(browse)
        data_row.addWidget(check)
        left_layout.addLayout(data_row)
        self.dataset_summary = QPlainTextEdit("Pick a data set to see its identities, images and cameras.")
        self.dataset_summary.setReadOnly(True)
        self.dataset_summary.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.dataset_summary.setStyleSheet("font-family: monospace;")
        self.dataset_summary.setMaximumHeight(150)
        left_layout.addWidget(self.dataset_summary)
        self.options = OptionsForm()
        scroll = QScrollArea()
        scroll.setWidget(self.options)
        scroll.setWidgetResizable(True)
        left_layout.addWidget(scroll, 1)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume selected run")
        self.resume_button.clicked.connect(self.resume_selected)
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self._build_search_box())
        return left

    def _build_results(self) -> QWidget:
        """Progress and plots, the log, and the runs and search results tables."""
        right = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.eta_label = QLabel("idle")
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.eta_label)
        top_layout.addLayout(progress_row)
        self.plots = TrainingPlots()
        top_layout.addWidget(self.plots, 1)
        right.addWidget(top)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        right.addWidget(self.log_view)
        runs = QWidget()
        runs_layout = QVBoxLayout(runs)
        self.runs_table = QTableWidget(0, 9)
        self.runs_table.setHorizontalHeaderLabels(["Run", "Status", "Data set", "lr", "Batch", "Epochs", "Rank-1",
                                                   "mAP", "Train time"])
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.setSortingEnabled(True)
        runs_layout.addWidget(self.runs_table)
        self.use_button = QPushButton("Use this model in the live view")
        self.use_button.setToolTip("Export the selected run's best checkpoint to ONNX and switch the running "
                                   "cameras to it")
        self.use_button.clicked.connect(self.use_selected_model)
        runs_layout.addWidget(self.use_button)
        self.results_tabs = QTabWidget()
        self.results_tabs.addTab(runs, "Runs")
        self.search_table = QTableWidget(0, 9)
        self.search_table.setHorizontalHeaderLabels(["Trial", "lr", "Batch", "Status", "Rank-1", "Rank-5", "Rank-10",
                                                     "mAP", "Train time"])
        self.search_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results_tabs.addTab(self.search_table, "Search results")
        right.addWidget(self.results_tabs)
        right.setSizes([420, 160, 200])
        return right

    def _build_search_box(self) -> QGroupBox:
        box = QGroupBox("Hyper-parameter search (Optuna)")
        form = QFormLayout(box)
        self.search_sampler = QComboBox()
        self.search_sampler.addItems(["grid", "tpe"])
        self.search_sampler.setToolTip("grid: every learning rate x batch size (the study's table); tpe: Bayesian")
        self.search_lrs = QLineEdit("0.01,0.03,0.06,0.09,0.12")
        self.search_batches = QLineEdit("16,32,64")
        self.search_trials = QSpinBox()
        self.search_trials.setRange(0, 1000)
        self.search_trials.setSpecialValueText("whole grid / 20")
        self.search_storage = QLineEdit()
        self.search_storage.setPlaceholderText("SQLite in the data folder; or postgresql://… to share")
        self.search_button = QPushButton("Start search")
        self.search_button.clicked.connect(self.start_search)
        form.addRow("Sampler", self.search_sampler)
        form.addRow("Learning rates", self.search_lrs)
        form.addRow("Batch sizes", self.search_batches)
        form.addRow("Trials", self.search_trials)
        form.addRow("Storage", self.search_storage)
        form.addRow(self.search_button)
        return box

    def start_search(self) -> None:
        """Run ``reid-trainer search`` with the options above (epochs etc.) as the base of every trial."""
        try:
            cfg = self.config()
        except ValueError as exc:
            self._log(f"error: {exc}")
            return
        skip = {"lr", "batch_size", "output"}
        args = options.to_flags(cfg, skip)
        args += ["--sampler", self.search_sampler.currentText(), "--lrs", self.search_lrs.text().strip(),
                 "--batch-sizes", self.search_batches.text().strip(), "--trials", str(self.search_trials.value()),
                 "--folder", str(runs_dir() / "search" / time.strftime("%Y%m%d-%H%M%S"))]
        if self.search_storage.text().strip():
            args += ["--storage", self.search_storage.text().strip()]
        self.search_table.setRowCount(0)
        self.results_tabs.setCurrentIndex(1)
        self._launch(["search", "--events", *args])

    def _add_trial_row(self, event: events.TrialEnded) -> None:
        row = self.search_table.rowCount()
        self.search_table.insertRow(row)

        def pct(value: float | None) -> str:
            return "" if value is None else f"{value:.1%}"

        seconds = event.train_seconds
        cells = [str(event.number), f"{event.lr:.4g}", str(event.batch_size), event.status, pct(event.rank1),
                 pct(event.rank5), pct(event.rank10), pct(event.mAP),
                 "" if seconds is None else f"{seconds / 60:.1f} min"]
        for col, text in enumerate(cells):
            self.search_table.setItem(row, col, QTableWidgetItem(text))
        self.search_table.resizeColumnsToContents()

    # -- data set -------------------------------------------------------------------------------

    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Re-id data set folder", self.data_edit.text())
        if path:
            self.data_edit.setText(path)
            self.check_dataset()

    def check_dataset(self) -> None:
        """Run the validator on the thread pool (it opens every image) and show its summary."""
        path = self.data_edit.text().strip()
        if not path:
            return
        self.dataset_summary.setPlainText("Checking…")

        def load() -> str:
            return load_dataset(path).summary()

        self.dispatcher.in_background(load, self.dataset_summary.setPlainText,
                                      lambda message: self.dataset_summary.setPlainText(f"Cannot use it: {message}"))

    # -- training process -----------------------------------------------------------------------

    def config(self) -> TrainConfig:
        values = {**self.options.values(), "data": self.data_edit.text().strip()}
        cfg = TrainConfig.from_dict(values)
        if not cfg.data:
            raise ValueError("choose a data set first")
        cfg.output = str(runs_dir() / time.strftime("%Y%m%d-%H%M%S"))
        return cfg

    def start(self) -> None:
        try:
            cfg = self.config()
        except ValueError as exc:
            self._log(f"error: {exc}")
            self.eta_label.setText(str(exc))
            return
        self._launch(["train", "--events", *options.to_flags(cfg)])

    def resume_selected(self) -> None:
        run = self._selected_run()
        if run is None or not (run / "last.pt").exists():
            self._log("select a run with a checkpoint (last.pt) to resume")
            return
        self._launch(["train", "--events", "--resume", str(run / "last.pt")])

    def _launch(self, args: list[str]) -> None:
        if self.process is not None:
            return
        self.plots.clear()
        self.progress.setValue(0)
        self.log_view.clear()
        process = TrainerProcess(args, self)
        process.received.connect(self._handle)
        process.log.connect(self._log)
        process.finished.connect(self._on_finished)
        self.process = process
        self._started_at = time.monotonic()
        self._set_running(True)
        self.eta_label.setText("starting…")
        self._log("$ reid-trainer " + " ".join(args))
        process.start()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step; :meth:`_on_finished` reports the end."""
        if self.process is None:
            return
        self.eta_label.setText("stopping…")
        self.stop_button.setEnabled(False)
        self.process.stop()

    def _set_running(self, running: bool) -> None:
        self.search_button.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _handle(self, event: events.Event) -> None:
        match event:
            case events.Started():
                self.run_dir = Path(event.run_dir)
                self._steps_per_epoch = event.steps_per_epoch
                self._total_steps = event.epochs * self._steps_per_epoch
                self.progress.setRange(0, self._total_steps)
                self._log(f"training {event.identities} identities, {event.images} images on {event.device} "
                          f"({event.weights}) -> {event.run_dir}")
            case events.Step():
                x = event.epoch - 1 + event.step / max(event.steps, 1)
                self.plots.add("loss", x, event.loss)
                self.plots.add("top1_error", x, event.top1_error)
                self.plots.add("lr", x, event.lr)
                done = (event.epoch - 1) * self._steps_per_epoch + event.step
                self.progress.setValue(done)
                elapsed = time.monotonic() - self._started_at
                remaining = elapsed / max(done, 1) * (self._total_steps - done)
                self.eta_label.setText(f"epoch {event.epoch}  {event.images_per_s:.0f} img/s  ETA "
                                       f"{int(remaining // 60)}:{int(remaining % 60):02d}")
            case events.Evaluated():
                self.plots.add("rank1", event.epoch, event.rank1)
                self.plots.add("mAP", event.epoch, event.mAP)
                self._log(f"epoch {event.epoch}: Rank-1 {event.rank1:.1%}  Rank-5 {event.rank5:.1%}  "
                          f"Rank-10 {event.rank10:.1%}  mAP {event.mAP:.1%}")
            case events.EpochEnded():
                self._log(f"epoch {event.epoch} done: loss {event.loss:.3f} in {event.seconds:.0f} s")
                self.refresh_runs()
            case events.Warned():
                self._log(f"warning: {event.message}")
            case events.Failed():
                self._log(f"error: {event.message}")
                self.eta_label.setText(event.message[:120])
            case events.Finished():
                self._log(f"run {event.status} after {event.epochs_done} epochs")
            case events.TrialStarted():
                self.plots.clear()
                self._started_at = time.monotonic()
                self._log(f"trial {event.number}: lr {event.lr:g}, batch {event.batch_size}")
            case events.TrialEnded():
                self._add_trial_row(event)
                self._log(f"trial {event.number} {event.status}")
        self.event_received.emit(event)

    def _on_finished(self, outcome: str, code: int) -> None:
        if outcome == "failed" and "error" not in self.eta_label.text():
            self.eta_label.setText(f"trainer exited with status {code}: see the log")
        elif outcome != "failed":
            self.eta_label.setText(outcome)
        if self.process is not None:
            self.process.deleteLater()
        self.process = None
        self._set_running(False)
        self.refresh_runs()
        self.run_finished.emit(outcome)

    def _log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    # -- runs -----------------------------------------------------------------------------------

    def refresh_runs(self) -> None:
        def read() -> list[tuple[Path, dict[str, Any]]]:
            out = []
            for summary in sorted(runs_dir().glob("*/summary.json"), reverse=True):
                try:
                    out.append((summary.parent, json.loads(summary.read_text(encoding="utf-8"))))
                except (OSError, ValueError):
                    continue
            return out

        self.dispatcher.in_background(read, self._show_runs)

    def _show_runs(self, runs: list[tuple[Path, dict[str, Any]]]) -> None:
        self.runs_table.setSortingEnabled(False)
        self.runs_table.setRowCount(len(runs))
        for row, (path, summary) in enumerate(runs):
            cfg, best = summary.get("config", {}), summary.get("best") or {}
            seconds = float(summary.get("train_seconds", 0.0))
            cells = [path.name, summary.get("status", ""), Path(summary.get("dataset", "")).name,
                     f"{cfg.get('lr', '')}", f"{cfg.get('batch_size', '')}",
                     f"{summary.get('epochs_done', 0)}/{cfg.get('epochs', '')}",
                     f"{best['rank1']:.1%}" if "rank1" in best else "", f"{best['mAP']:.1%}" if "mAP" in best else "",
                     f"{int(seconds // 60)} min {int(seconds % 60)} s"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, str(path))
                self.runs_table.setItem(row, col, item)
        self.runs_table.setSortingEnabled(True)
        self.runs_table.resizeColumnsToContents()

    def _selected_run(self) -> Path | None:
        items = self.runs_table.selectedItems()
        if items:
            return Path(items[0].data(Qt.ItemDataRole.UserRole))
        return self.run_dir

    def use_selected_model(self) -> None:
        run = self._selected_run()
        checkpoint = run / "best.pt" if run is not None else None
        if checkpoint is None or not checkpoint.exists():
            self._log("select a run that has been evaluated at least once (best.pt)")
            return
        if self.exporter is not None:
            return
        output = models_dir() / f"reid-{run.name}.onnx"  # type: ignore[union-attr]
        exporter = TrainerProcess(["export", str(checkpoint), "--output", str(output)], self)
        exporter.log.connect(self._log)

        def exported(_outcome: str, code: int) -> None:
            exporter.deleteLater()
            self.exporter = None
            self.use_button.setEnabled(True)
            if code == 0 and output.exists():
                self._log(f"exported {output}; switching the live view to it")
                self.model_ready.emit(str(output))
            else:
                self._log(f"error: export failed (status {code})")

        exporter.finished.connect(exported)
        self.exporter = exporter
        self.use_button.setEnabled(False)
        self._log(f"exporting {checkpoint} -> {output}")
        exporter.start()

    def shutdown(self) -> None:
        """The window closes: stop a running trainer or exporter so no process outlives the app."""
        for process in (self.process, self.exporter):
            if process is not None:
                process.shutdown()
