"""The status bar's word on the models: what runs, and what the operator is told when re-id runs on the CPU."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QStatusBar

from reid_desktop.core.types import PipelineInfo
from reid_desktop.ui.banner import MessageBanner
from reid_desktop.ui.cameras import CameraList
from reid_desktop.ui.engine import Engine
from reid_desktop.ui.engine_status import EngineStatus
from reid_desktop.ui.feeds import FeedGrid
from reid_desktop.ui.health_panel import HealthPanel
from reid_desktop.ui.settings import AppSettings

FELL_BACK = "CUDA not usable: re-id fell back to CPU"
NO_GPU = "No usable GPU found: ONNX Runtime runs on the CPU"


def running(provider: str, fallback: bool = False) -> PipelineInfo:
    return PipelineInfo(detector="yolo11n-pose (ONNX Runtime FP32)", detector_device="cpu",
                        embedder="colour fallback" if fallback else "osnet_x0_25", embedder_key="m",
                        provider=provider, embedder_precision="fp32", embedder_is_fallback=fallback,
                        match_threshold=0.6, warnings=(), run_id=1)


@pytest.mark.parametrize(("requested", "info", "warned", "noted"), [
    ("cuda", running("CPUExecutionProvider"), True, False),  # asked for the GPU, did not get it: a warning
    ("cuda", running("CUDAExecutionProvider"), False, False),
    ("auto", running("CPUExecutionProvider"), False, True),  # nothing asked: a quiet note in the tooltip
    ("cpu", running("CPUExecutionProvider"), False, True),
    ("cuda", running("CPUExecutionProvider", fallback=True), False, False),  # no model: the fallback warning only
])
def test_re_id_on_the_cpu_is_a_warning_only_when_a_gpu_was_asked_for(qtbot, requested: str, info: PipelineInfo,
                                                                     warned: bool, noted: bool) -> None:
    bar, engine = QStatusBar(), Engine()
    qtbot.addWidget(bar)
    settings = AppSettings(pipeline={"reid.providers": requested})
    status = EngineStatus(engine, bar, MessageBanner(), HealthPanel(), FeedGrid(), CameraList(), lambda: settings)
    status.show_info(info)
    assert (FELL_BACK in status.warning_label.text()) is warned
    assert (NO_GPU in status.model_label.toolTip()) is noted
    assert ("No re-id model" in status.warning_label.text()) is info.embedder_is_fallback
    status.stop()
