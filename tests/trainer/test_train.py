"""Training for real on MARS crops (CPU): it learns, stops, resumes, guards, exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import ROOT
from tests.trainer.conftest import tiny_config
from trainer.datasets import load_dataset
from trainer.events import FORMAT_VERSION, EpochEnded, Event, Started, Step, TrialEnded
from trainer.export import export_checkpoint
from trainer.model import build_model
from trainer.train import DivergenceError, TrainResult, evaluate_model, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(mini_mars: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four epochs in two sittings: stopped after epoch 2 (as the Stop button does), then resumed."""
    cfg = tiny_config(mini_mars, tmp_path_factory.mktemp("run"))
    dataset = load_dataset(mini_mars)
    torch.manual_seed(cfg.seed)
    untrained, _ = build_model(dataset.num_train_pids, "random")
    baseline = evaluate_model(untrained, dataset, cfg, torch.device("cpu")).metrics
    events: list[Event] = []
    stop_after = {"epoch": 2}

    def sink(event: Event) -> None:
        events.append(event)

    first = train(cfg, sink, should_stop=lambda: any(isinstance(e, EpochEnded) and e.epoch == stop_after["epoch"]
                                                     for e in events))
    resumed_events: list[Event] = []
    second = train(cfg, resumed_events.append, resume=Path(cfg.output) / "last.pt")
    return {"cfg": cfg, "dataset": dataset, "baseline": baseline, "first": first, "second": second,
            "events": events, "resumed_events": resumed_events}


def test_loss_falls_and_accuracy_rises_clearly_above_the_untrained_network(trained: dict) -> None:
    second: TrainResult = trained["second"]
    history = second.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    baseline = trained["baseline"]
    final = history[-1]
    assert final["rank1"] >= baseline.rank1 + 0.10, (baseline, final)
    assert final["mAP"] >= baseline.mAP + 0.10, (baseline, final)
    assert "tracklet" in final and 0 < final["tracklet"]["mAP"] <= 1  # MARS-style per-tracklet evaluation too
    assert 0 < final["match_threshold"] < 1
    steps = [e for e in trained["events"] + trained["resumed_events"] if isinstance(e, Step)]
    assert steps and all(0 <= e.top1_error <= 1 and e.lr > 0 and e.images_per_s > 0 for e in steps)


def test_stop_keeps_the_last_epoch_and_resume_continues_the_same_run(trained: dict) -> None:
    first: TrainResult = trained["first"]
    second: TrainResult = trained["second"]
    assert first.status == "stopped" and first.epochs_done == 2
    assert second.status == "finished" and second.run_dir == first.run_dir
    start = next(e for e in trained["resumed_events"] if isinstance(e, Started))
    assert start.resumed_from == 2
    assert [e.epoch for e in trained["resumed_events"] if isinstance(e, EpochEnded)] == [3, 4]
    assert second.history[:2] == first.history  # the first sitting's epochs are kept as they were
    summary = json.loads((second.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 4
    assert (second.run_dir / "best.pt").exists()


def test_export_with_metadata_parity_and_quantised_variants(trained: dict, tmp_path: Path) -> None:
    from reid_desktop.core.vision.embedding import OnnxEmbedder

    run_dir = trained["second"].run_dir
    results = export_checkpoint(run_dir / "best.pt", tmp_path / "reid.onnx", fp16=True, int8=True,
                                dataset=trained["dataset"])
    fp32, fp16, int8 = results
    assert fp32.max_abs_diff < 1e-4  # PyTorch vs ONNX Runtime
    assert fp16.max_abs_diff < 2e-2 and int8.max_abs_diff < 0.2
    assert int8.size_mb < 0.5 * fp32.size_mb
    best = trained["second"].best
    assert fp32.metrics["mAP"] == pytest.approx(best["mAP"], abs=0.05)  # the app's own preprocessing agrees
    assert all(0 < r.metrics["rank1"] <= 1 for r in results)
    meta = {p.key: p.value for p in onnx.load(str(fp32.path)).metadata_props}
    assert json.loads(meta["reid.input_height"]) == 64 and json.loads(meta["reid.embedding_dim"]) == 2048
    assert json.loads(meta["reid.metrics"])["mAP"] == pytest.approx(best["mAP"])
    assert json.loads(meta["reid.match_threshold"]) == pytest.approx(best["match_threshold"])
    assert json.loads(meta["reid.hyperparameters"])["lr"] == pytest.approx(1e-3)
    assert "mini_mars" in meta["reid.dataset"] and meta["reid.created"]
    for result in results:  # every variant is a model the app can load
        embedder = OnnxEmbedder(result.path)
        vectors = embedder.embed([np.zeros((128, 64, 3), np.uint8)])
        assert vectors.shape == (1, 2048) and embedder.match_threshold == pytest.approx(best["match_threshold"])


def test_an_absurd_learning_rate_trips_the_divergence_guard(mini_mars: Path, tmp_path: Path) -> None:
    cfg = tiny_config(mini_mars, tmp_path / "run", optimizer="sgd", lr=1e5, epochs=1, max_steps_per_epoch=30)
    with pytest.raises(DivergenceError, match=r"learning rate .* too high"):
        train(cfg)


def test_bad_options_are_refused_with_the_option_named(mini_mars: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size 10 must be a multiple"):
        tiny_config(mini_mars, tmp_path, batch_size=10)
    with pytest.raises(ValueError, match="schedule: 'linear' is not one of"):
        tiny_config(mini_mars, tmp_path, schedule="linear")


def test_cli_trains_with_json_events_and_reports_broken_data(mini_mars: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "reid_desktop", "trainer", "train", "--events", "--data", str(mini_mars),
         "--output", str(tmp_path / "run"), "--weights", "random", "--epochs", "1", "--max-steps-per-epoch", "2",
         "--height", "64", "--width", "32", "--workers", "0", "--device", "cpu", "--eval-every", "1",
         "--no-allow-download"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert {e["v"] for e in events} == {FORMAT_VERSION}
    assert kinds[0] == "start" and kinds[-1] == "done" and "eval" in kinds and kinds.count("step") == 2
    assert events[-1]["status"] == "finished"

    (tmp_path / "empty").mkdir()
    broken = subprocess.run([sys.executable, "-m", "trainer.cli", "dataset", str(tmp_path / "empty")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 3 and "error:" in broken.stderr
    ok = subprocess.run([sys.executable, "-m", "trainer.cli", "dataset", str(mini_mars)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "identities" in ok.stdout
    helptext = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120).stdout
    assert "--lr" in helptext and "(default: 0.09)" in helptext and "--batch-size" in helptext


def test_grid_search_tabulates_trials_records_divergence_and_resumes_from_storage(mini_mars: Path,
                                                                                  tmp_path: Path) -> None:
    from trainer.search import SearchSettings, format_table, run_search

    base = tiny_config(mini_mars, tmp_path, epochs=1, eval_every=1, max_steps_per_epoch=3)
    settings = SearchSettings("grid", lrs=(1e-3, 1e5), batch_sizes=(16,), study="unit", prune=False)
    events: list[Event] = []
    rows = run_search(base, settings, tmp_path / "study", events.append)
    by_lr = {r.lr: r for r in rows}
    assert set(by_lr) == {1e-3, 1e5}
    assert by_lr[1e5].status == "diverged" and by_lr[1e5].mAP is None
    good = by_lr[1e-3]
    assert good.status == "complete" and 0 < good.mAP <= 1 and good.train_seconds > 0
    assert Path(good.run_dir, "best.pt").exists()
    assert [e.status for e in events if isinstance(e, TrialEnded)] == [r.status for r in sorted(rows, key=lambda r:
                                                                                                r.number)]
    table = format_table(rows)
    assert "Rank-1" in table and "diverged" in table and table.splitlines()[1].split()[1] == "0.001"
    # another machine (or a later session) joining the same storage sees the finished trials
    again = run_search(base, SearchSettings("grid", lrs=(1e-3, 1e5), batch_sizes=(16,), study="unit", trials=1,
                                            storage=f"sqlite:///{tmp_path / 'study' / 'optuna.sqlite'}"),
                       tmp_path / "study")
    assert len(again) >= 2 and {r.number for r in rows} <= {r.number for r in again}


def test_tpe_search_samples_learning_rates_and_batch_sizes_within_the_ranges(mini_mars: Path, tmp_path: Path) -> None:
    from trainer.search import SearchSettings, run_search

    base = tiny_config(mini_mars, tmp_path, epochs=2, eval_every=1, max_steps_per_epoch=2)
    rows = run_search(base, SearchSettings("tpe", lrs=(1e-4, 3e-3), batch_sizes=(16, 32), trials=4, study="tpe"),
                      tmp_path / "study")
    assert len(rows) == 4
    assert all(1e-4 <= r.lr <= 3e-3 and r.batch_size in (16, 32) for r in rows)
    assert {r.status for r in rows} <= {"complete", "pruned"} and "complete" in {r.status for r in rows}


def test_torchrun_trains_data_parallel_and_its_checkpoint_resumes_in_one_process(mini_mars: Path,
                                                                                  tmp_path: Path) -> None:
    """DDP with two processes on the CPU (Gloo): the same code path as several GPUs with NCCL."""
    import os

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "trainer.cli", "train", "--events",
         "--data", str(mini_mars), "--output", str(out), "--weights", "random", "--height", "64", "--width", "32",
         "--epochs", "1", "--max-steps-per-epoch", "2", "--optimizer", "adamw", "--lr", "0.001", "--workers", "0",
         "--device", "cpu", "--no-allow-download"], cwd=ROOT, capture_output=True, text=True, timeout=400,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events].count("start") == 1  # only rank 0 reports
    assert events[0]["world_size"] == 2 and events[-1]["status"] == "finished"
    resumed = train(tiny_config(mini_mars, out), resume=out / "last.pt")  # the DDP checkpoint loads in one process
    assert resumed.status == "finished" and [r["epoch"] for r in resumed.history] == [1]


def test_the_same_seed_gives_the_same_run(mini_mars: Path, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        events: list[Event] = []
        train(tiny_config(mini_mars, tmp_path / name, epochs=1, max_steps_per_epoch=3, seed=7), events.append)
        losses.append([e.loss for e in events if isinstance(e, Step)])
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-5)
