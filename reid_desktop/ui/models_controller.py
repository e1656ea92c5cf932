"""The models the engine runs, changed from the window: a re-id model from the catalogue or the Trainer, and a
faster detector prepared from the menu.

A new re-id model replaces the running one between frames (the cameras keep running); a prepared detector takes
effect when processing restarts, which the window does when ``detector.runtime`` is ``auto``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.types import PipelineInfo
from reid_desktop.core.vision.models import load_embedder
from reid_desktop.ui.detector_dialog import PrepareDetectorDialog
from reid_desktop.ui.engine import EngineClient
from reid_desktop.ui.model_dialog import GetReidModelDialog
from reid_desktop.ui.settings import AppSettings


class ModelsController(QObject):
    status_message = Signal(str, int)
    swapped = Signal(object)  # PipelineInfo of the pipeline after a hot swap
    restart_requested = Signal()  # a faster detector is ready and 'auto' will choose it

    def __init__(self, client: EngineClient, window: QWidget, settings: Callable[[], AppSettings],
                 save: Callable[[], None]) -> None:
        super().__init__(window)
        self.client, self._window, self._settings, self._save = client, window, settings, save

    def get_reid_model_dialog(self, reason: str = "") -> GetReidModelDialog:
        """The catalogue; a model downloaded there replaces the running one (no restart)."""
        dialog = GetReidModelDialog(self._window, reason)
        dialog.installed.connect(self.use_reid_model)
        dialog.show()
        return dialog

    def offer_reid_model(self, info: PipelineInfo) -> None:
        """On the first start without a re-id-trained model, offer one once (not for sites that stay offline)."""
        if info.embedder_is_fallback:
            reason = ("No re-id model is installed: the colour-texture descriptor runs, and people keep their "
                      "identity across cameras much less often.")
        elif info.embedder_imagenet_only:
            reason = "The re-id model runs ImageNet features, which were never trained to tell people apart."
        else:
            return
        settings = self._settings()
        if settings.reid_model_offered or not settings.pipeline_config().reid.allow_download:
            return
        settings.reid_model_offered = True
        self._save()
        self.get_reid_model_dialog(reason)

    def use_reid_model(self, path: str) -> None:
        """Hot-swap the running pipeline's re-id model (the cameras keep running) and remember it."""

        def swap(pipeline: Pipeline) -> PipelineInfo:
            embedder, warnings = load_embedder(dataclasses.replace(pipeline.config.reid, model=path))
            return pipeline.set_embedder(embedder, warnings)

        def swapped(info: PipelineInfo) -> None:
            self._settings().pipeline["reid.model"] = path
            self._save()
            self.swapped.emit(info)
            self.status_message.emit(f"Re-id model switched to {Path(path).name}", 6000)

        self.client.submit(swap, swapped, what=f"switch to {Path(path).name}")

    def prepare_detector_dialog(self) -> None:
        detector = self._settings().pipeline_config().detector
        dialog = PrepareDetectorDialog(detector.imgsz, detector.model, self._window)
        dialog.prepared.connect(self._detector_prepared)
        dialog.start()
        dialog.open()

    def _detector_prepared(self, label: str) -> None:
        if self._settings().pipeline_config().detector.runtime == "auto":
            self.status_message.emit(f"Detector prepared: restarting processing with {label}", 6000)
            self.restart_requested.emit()
