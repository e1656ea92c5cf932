"""The Trainer tab: a real training subprocess driven from the GUI, stopped, then its model hot-swapped
into the running pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from reid_desktop.core.store.storage import SightingStore
from tests.trainer.conftest import mini_mars  # noqa: F401 - fixture
from trainer.events import Step

pytestmark = pytest.mark.slow
WAIT_MS = 240_000


def set_tiny_options(tab, data: Path, **extra) -> None:
    tab.data_edit.setText(str(data))
    tab.options.set_values({"weights": "random", "height": 64, "width": 32, "batch_size": 16, "optimizer": "adamw",
                            "lr": 0.001, "weight_decay": 0.01, "schedule": "constant", "workers": 0, "device": "cpu",
                            "random_erasing": False, **extra})


def test_start_shows_progress_and_stop_ends_the_process(qtbot, make_window, app_settings, mini_mars) -> None:  # noqa: F811
    window = make_window(app_settings)
    tab = window.trainer_tab
    set_tiny_options(tab, mini_mars, epochs=50, eval_every=50)
    tab.check_dataset()
    qtbot.waitUntil(lambda: "queries with a match" in tab.dataset_summary.toPlainText(), timeout=WAIT_MS)
    steps: list[Step] = []
    tab.event_received.connect(lambda e: steps.append(e) if isinstance(e, Step) else None)
    qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert not tab.start_button.isEnabled() and tab.stop_button.isEnabled()
    window.tabs.setCurrentWidget(tab)  # the operator watches: the plots are really painted
    assert not window.sources_dock.isVisible() and not window.targets_dock.isVisible()  # the tab gets the window
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=WAIT_MS)
    assert tab.progress.value() >= 3 and "ETA" in tab.eta_label.text()
    assert len(tab.plots.data["loss"][1]) >= 3 and len(tab.plots.data["lr"][1]) >= 3
    picture = tab.plots.grab().toImage()
    assert picture.width() > 100 and len({picture.pixel(x, picture.height() // 4)
                                          for x in range(0, picture.width(), 3)}) > 3  # axes and curves drawn
    with qtbot.waitSignal(tab.run_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(tab.stop_button, Qt.MouseButton.LeftButton)
    assert finished.args[0] == "stopped"
    window.tabs.setCurrentIndex(0)
    assert window.sources_dock.isVisible() and window.targets_dock.isVisible()  # the live view's docks come back
    assert tab.process is None and tab.start_button.isEnabled()
    assert "$ reid-trainer train --events" in tab.log_view.toPlainText()


def test_a_finished_run_is_listed_and_its_model_replaces_the_live_one(qtbot, make_window, app_settings, demo_clip,
                                                                      mini_mars) -> None:  # noqa: F811
    app_settings.pipeline["sources.loop"] = True  # the camera must still be running when the new model arrives
    window = make_window(app_settings)
    window.sources.add_files([str(demo_clip)])
    qtbot.waitUntil(lambda: window.engine.info is not None, timeout=WAIT_MS)
    before = window.engine.info
    tab = window.trainer_tab
    set_tiny_options(tab, mini_mars, epochs=1, eval_every=1, max_steps_per_epoch=3)
    with qtbot.waitSignal(tab.run_finished, timeout=WAIT_MS) as finished:
        tab.start()
    assert finished.args[0] == "finished"
    qtbot.waitUntil(lambda: tab.runs_table.rowCount() == 1 and tab.runs_table.item(0, 1).text() == "finished",
                    timeout=WAIT_MS)
    assert tab.runs_table.item(0, 7).text().endswith("%")  # best mAP of the run
    tab.runs_table.selectRow(0)
    with qtbot.waitSignal(window.models.swapped, timeout=WAIT_MS) as swapped:
        qtbot.mouseClick(tab.use_button, Qt.MouseButton.LeftButton)
    info = swapped.args[0]
    assert info.embedder_key != before.embedder_key and info.embedder.startswith("reid-")
    assert "reid-" in window.engine_status.model_label.text()
    assert window.settings.pipeline["reid.model"].endswith(".onnx")
    # the cameras kept running and now produce embeddings of the new model (2048-d instead of OSNet's 512)
    database = window.settings.history

    def new_embeddings() -> int:
        with SightingStore(database, readonly=True) as store:
            return store.embedding_stamp(info.embedder_key)["count"]

    qtbot.waitUntil(lambda: new_embeddings() > 0, timeout=WAIT_MS)
    with SightingStore(database, readonly=True) as store:
        runs = store.runs()
        assert runs[-2]["status"] == "model changed" and runs[-1]["model_key"] == info.embedder_key
        *_, gallery = next(store.identity_galleries(info.embedder_key, 5, recent=10))
        assert gallery.shape[1] == 2048


def test_search_panel_fills_the_results_table_live(qtbot, make_window, app_settings, mini_mars) -> None:  # noqa: F811
    window = make_window(app_settings)
    tab = window.trainer_tab
    set_tiny_options(tab, mini_mars, epochs=1, eval_every=1, max_steps_per_epoch=2)
    tab.search_lrs.setText("0.001,100000")
    tab.search_batches.setText("16")
    with qtbot.waitSignal(tab.run_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(tab.search_button, Qt.MouseButton.LeftButton)
    assert finished.args[0] == "finished"
    rows = {tab.search_table.item(r, 1).text(): tab.search_table.item(r, 3).text()
            for r in range(tab.search_table.rowCount())}
    assert rows == {"0.001": "complete", "1e+05": "diverged"}
    complete = next(r for r in range(tab.search_table.rowCount()) if tab.search_table.item(r, 3).text() == "complete")
    assert tab.search_table.item(complete, 7).text().endswith("%")


def test_the_trainer_runs_as_a_subcommand_of_the_same_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a venv: this Python; from an installed bundle: the bundle itself (its console twin on Windows)."""
    import sys

    from reid_desktop.ui.trainer_process import trainer_command

    assert trainer_command("train", "--epochs", "1") == (sys.executable,
                                                        ["-m", "reid_desktop", "trainer", "train", "--epochs", "1"])
    bundle = tmp_path / "reid-desktop"
    bundle.mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle / "reid-desktop"))
    assert trainer_command("dataset", "x") == (str(bundle / "reid-desktop"), ["trainer", "dataset", "x"])
    (bundle / "reid-desktop-cli.exe").touch()  # the Windows bundle's console program
    monkeypatch.setattr(sys, "executable", str(bundle / "reid-desktop.exe"))
    assert trainer_command("dataset", "x") == (str(bundle / "reid-desktop-cli.exe"), ["trainer", "dataset", "x"])
