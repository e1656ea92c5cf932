"""Hyper-parameter search with Optuna: the study's learning-rate x batch-size grid, or TPE (Bayesian).

Every trial is a normal training run (its own run folder). Evaluations are reported to Optuna so
hopeless trials are pruned early; a diverged trial is recorded as such, not as a crash. Studies
live in an Optuna storage: a SQLite file by default, or any database URL (e.g. PostgreSQL) so
several machines can work on one study at the same time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.events import Evaluated, Event, EventSink, SearchDone, TrialEnded, TrialStarted
from trainer.train import DivergenceError, train

log = logging.getLogger(__name__)

STUDY_LRS = (0.01, 0.03, 0.06, 0.09, 0.12, 0.2)  # the learning rates the study compared
STUDY_BATCH_SIZES = (8, 16, 32, 64)


@dataclass(frozen=True)
class SearchSettings:
    sampler: str = "grid"  # grid | tpe
    lrs: tuple[float, ...] = STUDY_LRS  # grid values; TPE searches log-uniformly between min and max
    batch_sizes: tuple[int, ...] = STUDY_BATCH_SIZES
    trials: int = 0  # 0: the whole grid (grid) / 20 (tpe)
    storage: str = ""  # Optuna storage URL; empty: SQLite in the study folder
    study: str = "reid-search"
    prune: bool = True
    seed: int = 0


def _row(number: int, params: dict[str, Any], attrs: dict[str, Any], status: str) -> TrialEnded:
    """A line of the results table from what a trial recorded (its parameters and user attributes)."""
    return TrialEnded(number=number, lr=float(params.get("lr", math.nan)), batch_size=int(params.get("batch_size", 0)),
                      status=status, rank1=attrs.get("rank1"), rank5=attrs.get("rank5"), rank10=attrs.get("rank10"),
                      mAP=attrs.get("mAP"), train_seconds=attrs.get("train_seconds"), run_dir=attrs.get("run_dir", ""))


def _rows(study: Any) -> list[TrialEnded]:
    import optuna

    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
              optuna.trial.TrialState.RUNNING: "running"}
    return [_row(t.number, t.params, t.user_attrs, t.user_attrs.get("status") or states.get(t.state, "failed"))
            for t in study.get_trials(deepcopy=False)]


def format_table(rows: Sequence[TrialEnded]) -> str:
    """The study's table: learning rate, batch size, Rank-1/5/10, mAP, training time."""
    def pct(value: float | None) -> str:
        return "" if value is None else f"{value:.1%}"

    lines = [f"{'trial':>5} {'lr':>8} {'batch':>5} {'status':>9} {'Rank-1':>7} {'Rank-5':>7} {'Rank-10':>7} "
             f"{'mAP':>7} {'time':>8}"]
    for r in sorted(rows, key=lambda row: (-(row.mAP or -1.0), row.number)):
        minutes = "" if r.train_seconds is None else f"{r.train_seconds / 60:.1f} min"
        lines.append(f"{r.number:>5} {r.lr:>8.4g} {r.batch_size:>5} {r.status:>9} {pct(r.rank1):>7} "
                     f"{pct(r.rank5):>7} {pct(r.rank10):>7} {pct(r.mAP):>7} {minutes:>8}")
    return "\n".join(lines)


def run_search(base: TrainConfig, settings: SearchSettings, folder: Path, events: EventSink | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[TrialEnded]:
    """Run (or join) a study; returns every trial of it, also those run by other machines."""
    import optuna

    emit = events or (lambda event: None)
    folder.mkdir(parents=True, exist_ok=True)
    storage = settings.storage or f"sqlite:///{folder / 'optuna.sqlite'}"
    batch_sizes = [b for b in settings.batch_sizes if b % base.instances_per_identity == 0 or not base.triplet_weight]
    if not batch_sizes:
        raise ValueError(f"no batch size is a multiple of instances_per_identity {base.instances_per_identity}")
    if settings.sampler == "grid":
        sampler: Any = optuna.samplers.GridSampler({"lr": list(settings.lrs), "batch_size": batch_sizes},
                                                   seed=settings.seed)
        trials = settings.trials or len(settings.lrs) * len(batch_sizes)
    elif settings.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=settings.seed)
        trials = settings.trials or 20
    else:
        raise ValueError(f"sampler must be grid or tpe, got {settings.sampler!r}")
    pruner: Any = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if settings.prune
                   else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=settings.study, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        if settings.sampler == "grid":
            lr = trial.suggest_categorical("lr", list(settings.lrs))
            batch_size = trial.suggest_categorical("batch_size", batch_sizes)
        else:
            lr = trial.suggest_float("lr", min(settings.lrs), max(settings.lrs), log=True)
            batch_size = trial.suggest_categorical("batch_size", batch_sizes)
        run_dir = folder / f"trial-{trial.number:03d}"
        cfg = dataclasses.replace(base, lr=float(lr), batch_size=int(batch_size), output=str(run_dir))
        trial.set_user_attr("run_dir", str(run_dir))
        emit(TrialStarted(number=trial.number, lr=float(lr), batch_size=int(batch_size)))

        def relay(event: Event) -> None:
            emit(dataclasses.replace(event, trial=trial.number))
            if isinstance(event, Evaluated):
                trial.report(event.mAP, event.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"mAP {event.mAP:.1%} at epoch {event.epoch} is below the median")

        try:
            result = train(cfg, relay, should_stop)
        except DivergenceError as exc:
            trial.set_user_attr("status", "diverged")
            trial.set_user_attr("error", str(exc))
            emit(_row(trial.number, trial.params, trial.user_attrs, "diverged"))
            return float("nan")  # Optuna records it as failed; the table says why
        except optuna.TrialPruned:
            emit(_row(trial.number, trial.params, trial.user_attrs, "pruned"))
            raise
        best = result.best
        for key in ("rank1", "rank5", "rank10", "mAP"):
            trial.set_user_attr(key, float(best.get(key, 0.0)))
        trial.set_user_attr("train_seconds", float(sum(r["seconds"] for r in result.history)))
        if result.status != "finished":
            study.stop()
        emit(_row(trial.number, trial.params, trial.user_attrs, "complete"))
        return float(best.get("mAP", 0.0))

    study.optimize(objective, n_trials=trials, catch=())
    rows = _rows(study)
    emit(SearchDone(trials=[dataclasses.asdict(r) for r in rows]))
    return rows
