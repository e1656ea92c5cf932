"""The Trainer tab's views: the options form (built from :class:`TrainConfig`'s declarations) and the plots."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFormLayout, QGridLayout, QGroupBox, QVBoxLayout, QWidget

from reid_desktop.core import options
from reid_desktop.ui.option_form import OptionEditor
from trainer.config import TrainConfig

# Which options the form shows, grouped; everything else keeps its default (CLI for experts).
FORM_GROUPS: dict[str, tuple[str, ...]] = {
    "Optimisation": ("lr", "batch_size", "epochs", "optimizer", "schedule", "milestones", "gamma",
                     "restart_period", "warmup_epochs", "weight_decay"),
    "Model": ("weights", "embedding_dim", "last_stride", "freeze_stages", "freeze_epochs"),
    "Losses": ("ce_weight", "label_smoothing", "triplet_weight", "instances_per_identity", "arcface_weight"),
    "Augmentation": ("flip", "random_erasing", "color_jitter", "grayscale", "posterize", "equalize"),
    "Input and machine": ("height", "width", "device", "workers", "eval_every", "max_steps_per_epoch", "seed"),
}



class OptionsForm(QWidget):
    """The training options, grouped; each editor is built from the option's declaration in :class:`TrainConfig`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editors: dict[str, OptionEditor] = {}
        layout = QVBoxLayout(self)
        for title, names in FORM_GROUPS.items():
            box = QGroupBox(title)
            form = QFormLayout(box)
            for name in names:
                editor = OptionEditor(options.setting(TrainConfig, name))
                self.editors[name] = editor
                form.addRow(editor.setting.label, editor)
            layout.addWidget(box)
        layout.addStretch(1)

    def values(self) -> dict[str, Any]:
        return {name: editor.value() for name, editor in self.editors.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in self.editors:
                self.editors[name].set_value(value)


class TrainingPlots(QWidget):
    """Loss, train top-1 error and learning rate per step; Rank-1 and mAP per evaluation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.curves: dict[str, Any] = {}
        specs = [("loss", "Loss", (0, 0), ("#d62728",)), ("top1_error", "Train top-1 error", (0, 1), ("#1f77b4",)),
                 ("lr", "Learning rate", (1, 0), ("#2ca02c",)), ("accuracy", "Rank-1 / mAP", (1, 1),
                                                                 ("#9467bd", "#ff7f0e"))]
        for key, title, (row, col), colours in specs:
            plot = pg.PlotWidget(title=title)
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.setLabel("bottom", "epoch")
            if key == "accuracy":
                plot.addLegend(offset=(5, 5))
                self.curves["rank1"] = plot.plot(pen=pg.mkPen(colours[0], width=2), symbol="o", name="Rank-1")
                self.curves["mAP"] = plot.plot(pen=pg.mkPen(colours[1], width=2), symbol="s", name="mAP")
            else:
                self.curves[key] = plot.plot(pen=pg.mkPen(colours[0], width=1.5))
            layout.addWidget(plot, row, col)
        self.data: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in self.curves}

    def clear(self) -> None:
        for key, (xs, ys) in self.data.items():
            xs.clear()
            ys.clear()
            self.curves[key].setData([], [])

    def add(self, key: str, x: float, y: float) -> None:
        xs, ys = self.data[key]
        xs.append(x)
        ys.append(y)
        self.curves[key].setData(xs, ys)
