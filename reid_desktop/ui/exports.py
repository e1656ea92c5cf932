"""Exports the operator asks for: a target's sightings (CSV, JSON, HTML report) and training data.

Writing runs on the thread pool (through the :class:`EngineClient`), never on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from reid_desktop.core.store.exports import export_csv, export_json
from reid_desktop.core.store.interface import HistoryReader
from reid_desktop.core.store.report import write_html_report
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.targets_panel import TargetsPanel
from trainer.store_export import ExportSummary, export_store_dataset

FILTERS = {"csv": "CSV (*.csv)", "json": "JSON (*.json)", "html": "HTML report (*.html)"}


class ExportController(QObject):
    status_message = Signal(str, int)
    training_data_ready = Signal(str)  # the folder of an exported data set, for the Trainer tab

    def __init__(self, client: EngineClient, targets: TargetsPanel, dialog_parent: QWidget,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client, self.targets = client, targets
        self._dialog_parent = dialog_parent

    def _export_identity(self) -> int | None:
        ids = self.targets.selected_ids() or self.targets.identity_ids()[:1]
        if not ids:
            self.client.report("Select a target to export first")
            return None
        return ids[0]

    def export_dialog(self, kind: str) -> None:
        identity_id = self._export_identity()
        if identity_id is None:
            return
        path, _ = QFileDialog.getSaveFileName(self._dialog_parent, "Export", f"target-{identity_id}.{kind}",
                                              FILTERS[kind])
        if path:
            self.export(identity_id, Path(path), kind)

    def export(self, identity_id: int, path: Path, kind: str) -> None:
        def write(store: HistoryReader) -> int:
            if kind == "csv":
                return export_csv(store, path, identity_id)
            if kind == "json":
                return export_json(store, path, identity_id)
            return write_html_report(store, identity_id, path)

        self.client.read(write, lambda n: self.status_message.emit(f"Exported {n or 0} rows to {path}", 6000),
                         f"export to {path}")

    def export_training_data_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._dialog_parent, "Empty folder for the training data set")
        if folder:
            self.export_training_data(Path(folder) / "reid-dataset")

    def export_training_data(self, out_dir: Path) -> None:
        """Named or followed identities -> a Market-1501-layout data set, handed to the Trainer tab."""
        database = self.client.database

        def done(summary: ExportSummary) -> None:
            self.status_message.emit(f"Exported {summary.identities} people ({summary.train_images} training, "
                                     f"{summary.test_images} test images) to {out_dir}", 8000)
            self.training_data_ready.emit(str(out_dir))

        self.client.in_background(lambda: export_store_dataset(database, out_dir), done,
                                  "export training data")
