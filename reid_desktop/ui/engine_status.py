"""What the engine is doing, said in the status bar and the banner.

Which models run and how to make them faster, a faster detector being prepared in the background, cameras whose
analysis falls behind, the frames analysed a second, and the engine or the database stopping: the window shows the
engine's signals here and the operator reads them at a glance, without a dialog in the way.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from reid_desktop.core.store.interface import StorageHealth
from reid_desktop.core.types import PipelineInfo, SourceHealth, SourceState
from reid_desktop.core.vision.detector_preparation import DetectorPreparation
from reid_desktop.ui.banner import MessageBanner
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.engine import Engine
from reid_desktop.ui.feeds import FeedGrid
from reid_desktop.ui.health_panel import HealthPanel, falls_behind
from reid_desktop.ui.settings import AppSettings

ALERT_STYLE = "color: #d33; font-weight: bold;"
FPS_INTERVAL_MS = 1000
GPU_PROVIDERS = ("cuda", "tensorrt")  # the re-id providers an operator asks for to run on a GPU


class EngineStatus(QObject):
    """The status bar's permanent labels and the banner lines about the engine."""

    def __init__(self, engine: Engine, bar: QStatusBar, banner: MessageBanner, health_panel: HealthPanel,
                 grid: FeedGrid, cameras: CameraList, settings: Callable[[], AppSettings]) -> None:
        super().__init__(bar)
        self.bar, self.banner, self.health_panel, self.grid, self.cameras = bar, banner, health_panel, grid, cameras
        self._settings = settings
        self._info: PipelineInfo | None = None  # the engine's last word on its models
        self._behind: dict[str, str] = {}  # camera -> why it falls behind ("" when it does not)
        self.model_label = QLabel("Loading models…")
        self.warning_label = QLabel()
        self.warning_label.setStyleSheet(ALERT_STYLE)
        self.preparation_label = QLabel()  # the faster detector being prepared in the background
        self.preparation_label.hide()
        self.streams_label = QLabel()  # cameras whose analysis falls behind
        self.streams_label.setStyleSheet(ALERT_STYLE)
        self.fps_label = QLabel("0.0 fps")
        for label in (self.preparation_label, self.model_label, self.warning_label, self.streams_label,
                      self.fps_label):
            bar.addPermanentWidget(label)
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(FPS_INTERVAL_MS)
        self._fps_timer.timeout.connect(self._show_fps)
        self._fps_timer.start()
        engine.preparation_progressed.connect(self._on_preparation_progressed)
        engine.health_reported.connect(self._on_health_reported)
        engine.errored.connect(self._on_engine_error)
        engine.restarting.connect(self._on_engine_restarting)
        engine.storage_changed.connect(self._on_storage_changed)

    def loading(self) -> None:
        self.model_label.setText("Loading models…")
        self.warning_label.clear()

    def show_info(self, info: PipelineInfo) -> None:
        """The models that run, on what, and what is wrong with them (a fallback, ImageNet features, no GPU)."""
        self.banner.clear_key("engine")
        self._info = info
        device = f" on {info.detector_device}" if info.detector_device else ""
        provider = info.provider.replace("ExecutionProvider", "")
        about = f" ({info.embedder_description})" if info.embedder_description else ""
        self.model_label.setText(f"Detector: {info.detector}{device}   Re-id: {info.embedder}{about} "
                                 f"[{provider} {info.embedder_precision.upper()}]   "
                                 f"threshold {info.match_threshold:.2f}")
        self.model_label.setToolTip(self._model_notes(info))
        warnings = []
        if info.embedder_is_fallback:
            warnings.append("⚠ No re-id model: using the colour-texture fallback (less accurate); "
                            "Models > Get a re-id model…")
        elif info.embedder_imagenet_only:
            warnings.append("⚠ The re-id model was never trained for re-id (ImageNet features); "
                            "Models > Get a re-id model…")
        requested = self._settings().pipeline_config().reid.providers
        if _reid_on_cpu(info) and requested in GPU_PROVIDERS:
            warnings.append(f"⚠ {requested.upper()} not usable: re-id fell back to CPU")
        self.warning_label.setText("   ".join(warnings))
        self.warning_label.setToolTip("\n".join(info.warnings))

    def _model_notes(self, info: PipelineInfo) -> str:
        """The detector label's tooltip: what runs, and how to make it faster where the operator can."""
        config = self._settings().pipeline_config()
        notes = [f"Re-id model: {info.embedder_description}"] if info.embedder_description else []
        if ("(PyTorch" in info.detector and config.detector.runtime == "auto"
                and self.preparation_label.isHidden()):  # while it is prepared in the background: no advice
            notes.append("The detector runs in PyTorch: Models > Prepare faster detector… makes it several times "
                         "faster on most machines")
        requested = config.reid.providers
        if _reid_on_cpu(info) and requested not in GPU_PROVIDERS:
            notes.append("No usable GPU found: ONNX Runtime runs on the CPU")
        return "\n".join(notes)

    def _on_preparation_progressed(self, news: DetectorPreparation) -> None:
        """Progress in the status bar while it runs; its end as a message (the detector label shows the switch)."""
        if news.finished:
            self.preparation_label.hide()
            self.bar.showMessage(news.text, 10_000)
        else:
            self.preparation_label.setText(f"Preparing faster detector {news.done + 1}/{news.total}…")
            self.preparation_label.setToolTip(f"{news.text}\nIn the background at low priority; the cameras switch "
                                              "to the fastest checked runtime when it is ready, without stopping.")
            self.preparation_label.show()
        if self._info is not None:
            self.model_label.setToolTip(self._model_notes(self._info))

    def _on_health_reported(self, health: SourceHealth) -> None:
        if health.source_id not in self.cameras:  # removed meanwhile
            return
        feed = self.grid.feeds.get(health.source_id)
        display_latency = feed.display_latency_s if feed is not None and health.state is SourceState.LIVE else None
        self.health_panel.show_health(health, display_latency)
        self._behind[health.source_id] = falls_behind(health, display_latency)
        behind = [f"{name}: {why}" for name, why in self._behind.items() if why and name in self.cameras]
        self.streams_label.setText(("⚠ Behind: " + "; ".join(behind)) if behind else "")

    def forget(self, camera: str) -> None:
        """A camera removed or renamed: its health is no longer this name's."""
        self.health_panel.remove(camera)
        self._behind.pop(camera, None)

    def _on_engine_error(self, message: str) -> None:
        self.model_label.setText("Processing stopped")
        self.banner.show_message(f"{message}. Fix it in Settings (Ctrl+,); the cameras stay in the list.")

    def _on_engine_restarting(self, message: str, delay_s: float) -> None:
        self.model_label.setText("Processing restarting…")
        self.banner.show_message(f"Processing stopped unexpectedly ({message}); restarting in {delay_s:.0f} s with "
                                 "the same cameras", key="engine")

    def _on_storage_changed(self, health: StorageHealth) -> None:
        """The database stopped (or resumed) saving: a lasting banner line while it lasts, the video goes on."""
        if health.ok:
            self.banner.clear_key("storage")
            self.bar.showMessage("Saving sightings again", 6000)
        else:
            self.banner.show_message(health.message[:1].upper() + health.message[1:], key="storage")

    def _show_fps(self) -> None:
        """Frames analysed a second over this machine's cameras (node cameras are analysed by their nodes)."""
        total = sum(feed.fps for name, feed in self.grid.feeds.items() if name in self.cameras)
        self.fps_label.setText(f"{total:.1f} fps")

    def stop(self) -> None:
        self._fps_timer.stop()


def _reid_on_cpu(info: PipelineInfo) -> bool:
    """A re-id model (not the fallback) that ONNX Runtime runs on the CPU."""
    return not info.embedder_is_fallback and info.provider.startswith("CPU")
