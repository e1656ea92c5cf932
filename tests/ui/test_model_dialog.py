"""Models > Get a re-id model…: offered once on a first start without one, terms before download, a cut
download that resumes, and the cameras switched to the new model without a restart."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QPoint, Qt

from reid_desktop.core.vision import model_catalogue as catalogue
from reid_desktop.core.vision.models import chosen_reid_model
from reid_desktop.ui.model_dialog import GetReidModelDialog
from reid_desktop.ui.settings import load_settings
from tests.tools.file_server import serve
from tests.trainer.test_zoo import fastreid_network, randomised

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "msmt_bot_R50-ibn.pth"
    torch.save({"model": randomised(fastreid_network("bot-r50-ibn"))}, path)
    return path.read_bytes()


@pytest.fixture
def without_model(app_settings):
    app_settings.pipeline = {k: v for k, v in app_settings.pipeline.items() if k != "reid.model"}
    app_settings.pipeline["reid.allow_download"] = True
    return app_settings


def test_a_first_start_without_a_model_offers_one_once(qtbot, make_window, without_model) -> None:
    window = make_window(without_model)
    qtbot.waitUntil(lambda: window.findChild(GetReidModelDialog) is not None, timeout=WAIT_MS)
    dialog = window.findChild(GetReidModelDialog)
    assert dialog.isVisible() and not dialog.isModal()  # the cameras stay usable behind it
    assert "Get a re-id model" in window.engine_status.warning_label.text()
    assert dialog.chosen().name == catalogue.RECOMMENDED
    assert not dialog.download_button.isEnabled()  # not before the terms are accepted
    assert "research use" in dialog.licence.text()
    assert load_settings(window.settings_file)[0].reid_model_offered
    dialog.close()
    window.close()

    again = make_window(load_settings(window.settings_file)[0])
    qtbot.waitUntil(lambda: again.engine.info is not None, timeout=WAIT_MS)
    qtbot.wait(200)
    assert again.findChild(GetReidModelDialog) is None  # asked once


def test_offline_sites_are_not_offered_a_download(qtbot, make_window, without_model) -> None:
    without_model.pipeline["reid.allow_download"] = False
    window = make_window(without_model)
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    qtbot.wait(200)
    assert window.findChild(GetReidModelDialog) is None


def test_download_cut_then_resumed_and_the_cameras_switch_to_it(qtbot, make_window, app_settings,
                                                                checkpoint) -> None:
    window = make_window(app_settings)  # runs OSNet: nothing offered
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    models_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Models")
    next(a for a in models_menu.actions() if a.text() == "Get a re-id model…").trigger()
    dialog = window.findChild(GetReidModelDialog)
    qtbot.waitExposed(dialog)
    dialog.select("fastreid-msmt-bot-r50-ibn")
    box = dialog.accept_terms
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))  # on the tick box
    assert dialog.download_button.isEnabled()
    with serve(checkpoint, mode="cut", cut_at=len(checkpoint) // 2) as server:
        dialog.url = server.url
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        assert not dialog.download_button.isEnabled()  # one download at a time
        qtbot.waitUntil(lambda: "Nothing was installed" in dialog.status.text(), timeout=WAIT_MS)
        assert "resume" in dialog.status.text() and chosen_reid_model() is None
        assert "OSNet" in window.engine_status.model_label.text() or "osnet" in window.engine_status.model_label.text()
        with qtbot.waitSignal(dialog.installed, timeout=WAIT_MS):
            qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert server.requests[-1] == f"bytes={len(checkpoint) // 2}-"
    label = window.engine_status.model_label
    qtbot.waitUntil(lambda: "fastreid-msmt-bot-r50-ibn.onnx" in label.text(), timeout=WAIT_MS)
    assert "trained on MSMT17; Rank-1 77.0%, mAP 54.4%" in label.text()  # the status bar says it
    assert "trained on MSMT17" in label.toolTip()
    row = [e.name for e in catalogue.CATALOGUE].index("fastreid-msmt-bot-r50-ibn")
    assert dialog.table.item(row, 5).text() == "installed" and dialog.table.item(row - 1, 5).text() == ""
    assert "now use" in dialog.status.text()
    assert load_settings(window.settings_file)[0].pipeline["reid.model"].endswith("fastreid-msmt-bot-r50-ibn.onnx")
    dialog.close()


def test_an_imagenet_network_is_flagged_and_a_re_id_model_offered(qtbot, make_window, without_model,
                                                                  tmp_path) -> None:
    from torch import nn

    from reid_desktop.core.vision.model_info import ReidModelInfo
    from trainer.export import export_onnx

    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    info = ReidModelInfo(input_height=64, input_width=32, embedding_dim=8, architecture="resnet50-gap",
                         weights="imagenet (torchvision IMAGENET1K_V2)")
    without_model.pipeline["reid.model"] = str(export_onnx(tiny, info, tmp_path / "imagenet.onnx"))
    window = make_window(without_model)
    qtbot.waitUntil(lambda: window.findChild(GetReidModelDialog) is not None, timeout=WAIT_MS)
    assert "never trained" in window.engine_status.warning_label.text()
    label = window.engine_status.model_label
    assert "ImageNet features, not trained for re-id" in label.text()
    assert "ImageNet features" in window.findChild(GetReidModelDialog).findChildren(type(label))[0].text()
