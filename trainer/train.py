"""The training loop: data, model, losses, schedule, evaluation, checkpoints, divergence guard.

:func:`train` reports through an ``events`` callback of typed events (:mod:`trainer.events`; the
CLI prints them as JSON lines for the GUI) and checks ``should_stop`` between steps. A checkpoint
is written after every epoch (``last.pt``) and whenever mAP improves (``best.pt``), so a crashed
or stopped run resumes where it left off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reid_desktop.core.paths import data_dir
from trainer.config import TrainConfig
from trainer.datasets import ImageDataset, ReidDataset, ReidImage, load_dataset
from trainer.evaluate import Metrics, evaluate_rank, pairwise_distance, pool_tracklets
from trainer.events import EpochEnded, Evaluated, EventSink, Finished, Started, Step, Warned
from trainer.losses import LossWeights, ReidLoss
from trainer.model import ReidNet, build_model, untrained_backbone_like

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """The loss exploded or became NaN; the message names the likely cause."""


@dataclass(frozen=True)
class Evaluation:
    metrics: Metrics
    tracklet_metrics: Metrics | None
    match_threshold: float  # cosine similarity separating same from different people on the test split

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.metrics.to_dict(), "match_threshold": self.match_threshold}
        if self.tracklet_metrics is not None:
            out["tracklet"] = self.tracklet_metrics.to_dict()
        return out


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # finished | stopped
    epochs_done: int
    best: dict[str, Any] = field(default_factory=dict)  # metrics of the best epoch by mAP
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def transforms(cfg: TrainConfig, train: bool) -> Callable[[Any], torch.Tensor]:
    from torchvision import transforms as T

    steps: list[Any] = [T.Resize((cfg.height, cfg.width), interpolation=T.InterpolationMode.BICUBIC)]
    if train:
        if cfg.flip:
            steps.append(T.RandomHorizontalFlip())
        pad = max(1, cfg.height // 25)
        steps += [T.Pad(pad), T.RandomCrop((cfg.height, cfg.width))]
        if cfg.color_jitter:
            steps.append(T.ColorJitter(0.2, 0.15, 0.1, 0.0))
        if cfg.grayscale:
            steps.append(T.RandomGrayscale(0.1))
        if cfg.posterize:
            steps.append(T.RandomPosterize(bits=4, p=0.2))
        if cfg.equalize:
            steps.append(T.RandomEqualize(p=0.2))
    steps += [T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    if train and cfg.random_erasing:
        steps.append(T.RandomErasing(p=0.5, value=(0.4914, 0.4822, 0.4465)))
    composed: Callable[[Any], torch.Tensor] = T.Compose(steps)
    return composed


def _as_torch(dataset: ImageDataset) -> torch.utils.data.Dataset[Any]:
    """ImageDataset is map-style without importing torch itself (the data set checker stays light)."""
    return typing.cast(torch.utils.data.Dataset[Any], dataset)


def _train_loader(dataset: ImageDataset, cfg: TrainConfig, identity_batches: bool,
                  dist: Distributed) -> torch.utils.data.DataLoader[Any]:
    """``cfg.batch_size`` is the global batch; with DDP each of the ``world_size`` processes takes its share."""
    batch = cfg.batch_size // dist.world_size
    common: dict[str, Any] = {"batch_size": batch, "num_workers": cfg.workers, "drop_last": True,
                              "pin_memory": torch.cuda.is_available(), "persistent_workers": cfg.workers > 0}
    if identity_batches:
        from pytorch_metric_learning.samplers import MPerClassSampler

        # every process draws its own P x K batches (seeded per rank by seed_everything)
        sampler: Any = MPerClassSampler(dataset.labels, m=cfg.instances_per_identity, batch_size=batch,
                                        length_before_new_iter=max(len(dataset) // dist.world_size, batch))
    elif dist.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(_as_torch(dataset), dist.world_size, dist.rank, seed=cfg.seed)
    else:
        sampler = torch.utils.data.RandomSampler(typing.cast(Any, dataset),
                                                 generator=torch.Generator().manual_seed(cfg.seed))
    return torch.utils.data.DataLoader(_as_torch(dataset), sampler=sampler, **common)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """Stepped once per iteration; epochs are counted in fractions so warm restarts are smooth."""
    from torch.optim import lr_scheduler

    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "step":
        milestones = [m * steps_per_epoch for m in cfg.milestone_epochs()]
        main: Any = lr_scheduler.MultiStepLR(optimizer, [max(0, m - warm) for m in milestones], cfg.gamma)
    elif cfg.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, max(1, total - warm), eta_min=cfg.min_lr)
    elif cfg.schedule == "cosine_restarts":
        main = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, cfg.restart_period * steps_per_epoch,
                                                        cfg.restart_mult, eta_min=cfg.min_lr)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warm:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warm)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warm])


def _optimizer(params: Sequence[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


@torch.no_grad()
def extract_features(model: nn.Module, images: Sequence[ReidImage], cfg: TrainConfig,
                     device: torch.device, batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings (N x D float32) of ``images`` in order."""
    model.eval()
    loader = torch.utils.data.DataLoader(_as_torch(ImageDataset(images, transforms(cfg, train=False), relabel=False)),
                                         batch_size=batch_size, num_workers=cfg.workers, shuffle=False)
    out = []
    use_amp = cfg.amp and device.type == "cuda"
    for batch, *_ in loader:
        batch = batch.to(device, non_blocking=True)
        if device.type == "cuda" and cfg.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            features = model(batch)
        out.append(nn.functional.normalize(features.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def calibrate_threshold(query: np.ndarray, gallery: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> float:
    """The cosine similarity that best separates same-person from different-person pairs.

    Maximises balanced accuracy over all query-gallery pairs; the app links a track to an identity
    above it, so the exported model recommends its own threshold instead of a generic one.
    """
    sims = (query @ gallery.T).ravel()
    same = (q_pids[:, None] == g_pids[None, :]).ravel()
    if same.all() or not same.any():
        return 0.6
    candidates = np.unique(np.quantile(sims, np.linspace(0.01, 0.99, 199)))
    tpr = np.array([(sims[same] >= t).mean() for t in candidates])
    tnr = np.array([(sims[~same] < t).mean() for t in candidates])
    return float(candidates[int(np.argmax(tpr + tnr))])


def evaluate_model(model: nn.Module, dataset: ReidDataset, cfg: TrainConfig, device: torch.device) -> Evaluation:
    """Rank-1/5/10 and mAP on the data set's query/gallery split (Market-1501 protocol)."""
    query, gallery = list(dataset.query), list(dataset.gallery)
    if not query or not gallery:
        raise ValueError(f"{dataset.name} has no query/gallery split to evaluate on")
    qf, gf = extract_features(model, query, cfg, device), extract_features(model, gallery, cfg, device)
    if not (np.isfinite(qf).all() and np.isfinite(gf).all()):  # the weights blew up after the loss was last seen
        raise DivergenceError(_diverged("before this evaluation: the network's embeddings are NaN/inf", cfg.lr, cfg))
    q_pids, q_cams = np.array([i.pid for i in query]), np.array([i.camid for i in query])
    g_pids, g_cams = np.array([i.pid for i in gallery]), np.array([i.camid for i in gallery])
    metrics = evaluate_rank(pairwise_distance(qf, gf), q_pids, g_pids, q_cams, g_cams)
    tracklet_metrics = None
    if all(i.tracklet >= 0 for i in (*query, *gallery)):
        qt, qtp, qtc = pool_tracklets(qf, q_pids, q_cams, np.array([i.tracklet for i in query]))
        gt, gtp, gtc = pool_tracklets(gf, g_pids, g_cams, np.array([i.tracklet for i in gallery]))
        tracklet_metrics = evaluate_rank(pairwise_distance(qt, gt), qtp, gtp, qtc, gtc)
    return Evaluation(metrics, tracklet_metrics, calibrate_threshold(qf, gf, q_pids, g_pids))


class _TrainStep(nn.Module):
    """Network and loss as one module, so DDP synchronises ArcFace's class centres too."""

    def __init__(self, model: ReidNet, criterion: ReidLoss) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                           dict[str, float]]:
        logits, features = self.model(images)
        loss, parts = self.criterion(logits, features, labels)
        return loss, logits, parts


@dataclass(frozen=True)
class Distributed:
    """The process's place in a ``torchrun`` job (multi-GPU DDP); a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_environment() -> Distributed:
        """Join the process group ``torchrun`` set up (NCCL on GPUs, Gloo on CPUs)."""
        import os

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Distributed()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return Distributed(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, name: str) -> torch.device:
        device = resolve_device(name)
        if self.world_size > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if self.world_size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash while saving never corrupts the previous checkpoint


def default_run_dir() -> Path:
    """A new folder under the per-user data folder, never inside an installation."""
    return data_dir() / "training" / time.strftime("%Y%m%d-%H%M%S")


def train(cfg: TrainConfig, events: EventSink | None = None, should_stop: Callable[[], bool] | None = None,
          resume: Path | None = None) -> TrainResult:
    """Train (or resume) a re-id model; returns where its checkpoints are and how it went.

    Under ``torchrun`` (several processes, one per GPU) the run is data-parallel (DDP): every process
    trains on its share of each batch, and only rank 0 evaluates, writes checkpoints and reports.
    """
    dist = Distributed.from_environment()
    try:
        run = _Run.prepare(cfg, events if dist.is_main else None, should_stop, resume, dist)
        return run.run()
    finally:
        dist.close()


def _checked(cfg: TrainConfig, dist: Distributed) -> TrainConfig:
    """The options validated, with the run folder fixed (every process of a job must share it)."""
    cfg.validate()
    if dist.world_size > 1:
        share = cfg.batch_size // dist.world_size
        if cfg.batch_size % dist.world_size or (cfg.triplet_weight and share % cfg.instances_per_identity):
            raise ValueError(f"batch_size {cfg.batch_size} must split into {dist.world_size} equal shares of whole "
                             f"P x K batches (multiples of instances_per_identity {cfg.instances_per_identity})")
        if not cfg.output:
            raise ValueError("--output is required with torchrun: every process must write to the same run folder")
    return dataclasses.replace(cfg, output=cfg.output or str(default_run_dir()))


@dataclass
class _EpochStats:
    """Running figures of one epoch: for its ``step`` events and its history record."""

    started: float = field(default_factory=time.monotonic)
    seen: int = 0
    loss_sum: float = 0.0
    wrong: int = 0  # since the last step event
    counted: int = 0

    def add(self, loss: float, wrong: int, batch: int) -> None:
        self.seen += batch
        self.loss_sum += loss * batch
        self.wrong += wrong
        self.counted += batch

    def images_per_s(self, world_size: int) -> float:
        return self.seen * world_size / max(time.monotonic() - self.started, 1e-9)


class _Run:
    """One training run, shaped like torchreid's engine: :meth:`prepare`, then per epoch
    :meth:`train_epoch` (each step :meth:`forward_backward`) and :meth:`end_epoch`."""

    def __init__(self, cfg: TrainConfig, dist: Distributed, emit: EventSink,
                 should_stop: Callable[[], bool] | None) -> None:
        self.cfg, self.dist, self.emit, self.should_stop = cfg, dist, emit, should_stop
        self.run_dir = Path(cfg.output)
        self.device = dist.device(cfg.device)
        self.dataset = load_dataset(cfg.data)
        self.train_set = ImageDataset(self.dataset.train, transforms(cfg, train=True), relabel=True)
        if self.train_set.num_classes < 2:
            raise ValueError(f"{self.dataset.name}: training needs at least 2 identities, "
                             f"found {self.train_set.num_classes}")
        self.model, self.weights_source = build_model(
            self.train_set.num_classes, cfg.weights, embedding_dim=cfg.embedding_dim, last_stride=cfg.last_stride,
            bnneck=cfg.bnneck, allow_download=cfg.allow_download)
        self.criterion = ReidLoss(LossWeights(cfg.ce_weight, cfg.label_smoothing, cfg.triplet_weight,
                                              cfg.triplet_margin, cfg.arcface_weight),
                                  self.train_set.num_classes, cfg.embedding_dim)
        self.model.to(self.device)
        self.criterion.to(self.device)
        self.channels_last = self.device.type == "cuda" and cfg.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loader = _train_loader(self.train_set, cfg, self.criterion.needs_identity_batches, dist)
        self.steps_per_epoch = min(len(self.loader), cfg.max_steps_per_epoch or len(self.loader))
        if self.steps_per_epoch == 0:
            raise ValueError(f"{self.dataset.name}: {len(self.train_set)} training images make no batch of "
                             f"{cfg.batch_size}")
        self.optimizer = _optimizer([*self.model.parameters(), *self.criterion.parameters()], cfg)
        self.scheduler = _scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_epoch = 1
        self.history: list[dict[str, Any]] = []  # one record per epoch, with the evaluation when there was one
        self.best: dict[str, Any] = {}  # the record of the best epoch by mAP
        self.loss_baseline: float | None = None  # the median of the first losses, for the divergence guard
        self._first_losses: list[float] = []
        self._step_module: nn.Module | None = None
        self._frozen_now = -1

    @classmethod
    def prepare(cls, cfg: TrainConfig, events: EventSink | None, should_stop: Callable[[], bool] | None,
                resume: Path | None, dist: Distributed) -> _Run:
        """Data, model, losses, optimiser and schedule; the checkpoint's state when resuming."""
        checkpoint = load_checkpoint(resume) if resume is not None else None
        if checkpoint is not None:
            cfg = TrainConfig.from_dict(checkpoint["config"])
        cfg = _checked(cfg, dist)
        if dist.is_main:
            Path(cfg.output).mkdir(parents=True, exist_ok=True)
            cfg.save(Path(cfg.output) / "config.json")
        seed_everything(cfg.seed + (checkpoint["epoch"] if checkpoint else 0) + 1000 * dist.rank)
        run = cls(cfg, dist, events or (lambda event: None), should_stop)
        if checkpoint is not None:
            run.restore(checkpoint)
        return run

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.criterion.load_state_dict(checkpoint["criterion"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch, self.history, self.best = checkpoint["epoch"] + 1, checkpoint["history"], checkpoint["best"]

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.emit(Started(run_dir=str(self.run_dir), dataset=self.dataset.name,
                          identities=self.train_set.num_classes, images=len(self.train_set), epochs=cfg.epochs,
                          steps_per_epoch=self.steps_per_epoch, device=str(self.device),
                          world_size=self.dist.world_size, weights=self.weights_source,
                          resumed_from=self.start_epoch - 1, config=cfg.to_dict()))
        if self.weights_source.startswith("random"):
            self.emit(Warned(message="training from random initialisation: expect far lower accuracy than from "
                                     "ImageNet weights"))
        status, done = "finished", self.start_epoch - 1
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            stats = self.train_epoch(epoch)
            if stats is None:
                status = "stopped"
                break
            self.end_epoch(epoch, stats)
            done = epoch
        if self.dist.is_main:
            write_summary(self.run_dir, cfg, self.dataset.name, self.history, self.best, status)
        self.emit(Finished(status=status, epochs_done=done, best=self.best, run_dir=str(self.run_dir)))
        return TrainResult(self.run_dir, status, done, self.best, self.history)

    def train_epoch(self, epoch: int) -> _EpochStats | None:
        """One pass over the data (``steps_per_epoch`` steps); ``None`` when stopped on the way."""
        module = self._prepare_epoch(epoch)
        stats = _EpochStats()
        log_every = max(1, self.steps_per_epoch // 100)
        for step, (images, labels, _cams, _idx) in enumerate(self.loader, start=1):
            if step > self.steps_per_epoch:
                break
            if self.should_stop is not None and self.should_stop():
                return None
            loss, wrong, parts = self.forward_backward(module, images, labels, epoch, step)
            stats.add(loss, wrong, len(labels))
            if step % log_every == 0 or step == self.steps_per_epoch:
                self.emit(Step(epoch=epoch, step=step, steps=self.steps_per_epoch, loss=loss, parts=parts,
                               top1_error=stats.wrong / max(stats.counted, 1), lr=self.lr,
                               images_per_s=stats.images_per_s(self.dist.world_size)))
                stats.wrong = stats.counted = 0
        return stats

    def _prepare_epoch(self, epoch: int) -> nn.Module:
        """Freeze or unfreeze stages for this epoch; the step module (DDP-wrapped when distributed)."""
        cfg = self.cfg
        frozen = cfg.freeze_stages if (cfg.freeze_epochs == 0 or epoch <= cfg.freeze_epochs) else 0
        if frozen != self._frozen_now or self._step_module is None:  # DDP must know which parameters train
            self.model.freeze_stages(frozen)
            self._step_module = self.dist.wrap(_TrainStep(self.model, self.criterion), self.device)
            self._frozen_now = frozen
        if isinstance(self.loader.sampler, torch.utils.data.DistributedSampler):
            self.loader.sampler.set_epoch(epoch)
        self.model.train()
        return self._step_module

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def forward_backward(self, module: nn.Module, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                         step: int) -> tuple[float, int, dict[str, float]]:
        """One optimisation step: the loss (checked against divergence), how many images the classifier got
        wrong, and the loss's terms."""
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            loss, logits, parts = module(images, labels)
        value = float(loss.detach())
        if self.loss_baseline is None and math.isfinite(value):
            self._first_losses.append(value)
            if len(self._first_losses) >= min(10, self.steps_per_epoch):
                self.loss_baseline = float(np.median(self._first_losses))
        _guard(value, self.loss_baseline, self.cfg, epoch, step, self.lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value, int((logits.argmax(1) != labels).sum()), parts

    def end_epoch(self, epoch: int, stats: _EpochStats) -> None:
        """Evaluate when due, keep the best and last checkpoints, write the summary, report the epoch."""
        cfg, dist = self.cfg, self.dist
        record: dict[str, Any] = {"epoch": epoch, "loss": stats.loss_sum / max(stats.seen, 1),
                                  "seconds": time.monotonic() - stats.started,
                                  "images_per_s": stats.images_per_s(dist.world_size), "lr": self.lr}
        if dist.is_main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            evaluation = evaluate_model(self.model, self.dataset, cfg, self.device)
            record.update(evaluation.to_dict())
            self.emit(Evaluated(epoch=epoch, **evaluation.to_dict()))
            if not self.best or evaluation.metrics.mAP > self.best["mAP"]:
                self.best = dict(record)
                _save(self.run_dir / "best.pt", self._checkpoint(epoch, [*self.history, record]))
        self.history.append(record)
        if dist.is_main:
            write_summary(self.run_dir, cfg, self.dataset.name, self.history, self.best, "running")
            _save(self.run_dir / "last.pt", self._checkpoint(epoch, self.history))
        dist.barrier()  # the others wait while rank 0 evaluates and saves
        self.emit(EpochEnded(epoch=epoch, loss=record["loss"], seconds=record["seconds"],
                             images_per_s=record["images_per_s"], lr=record["lr"],
                             checkpoint=str(self.run_dir / "last.pt")))

    def _checkpoint(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": epoch, "config": self.cfg.to_dict(),
                "history": history, "best": self.best, "dataset": self.dataset.name,
                "weights_source": self.weights_source, "num_classes": self.train_set.num_classes}


def _guard(loss: float, baseline: float | None, cfg: TrainConfig, epoch: int, step: int, lr: float) -> None:
    """Stop a run that diverged instead of training garbage for hours."""
    exploded = baseline is not None and loss > cfg.divergence_factor * max(baseline, 1e-3)
    if math.isfinite(loss) and not exploded:
        return
    what = "became NaN/inf" if not math.isfinite(loss) else f"jumped to {loss:.3g} (started near {baseline:.3g})"
    raise DivergenceError(_diverged(f"at epoch {epoch}, step {step}: the loss {what}", lr, cfg))


def _diverged(where_what: str, lr: float, cfg: TrainConfig) -> str:
    return (f"training diverged {where_what}. Likely cause: the learning rate {lr:g} is too high for batch size "
            f"{cfg.batch_size} (the study saw lr 0.2 diverge and batch 8 collapse); try a lower --lr, a larger "
            "--batch-size or --warmup-epochs.")


def write_summary(run_dir: Path, cfg: TrainConfig, dataset: str, history: list[dict[str, Any]],
                  best: dict[str, Any], status: str) -> None:
    """``summary.json``: what the runs table shows, readable without loading a checkpoint."""
    payload = {"status": status, "dataset": dataset, "config": cfg.to_dict(), "history": history, "best": best,
               "epochs_done": history[-1]["epoch"] if history else 0,
               "train_seconds": sum(r["seconds"] for r in history)}
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    tmp.replace(run_dir / "summary.json")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, not ours, or holds Python objects that loading would run."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, loaded without running code from the file.

    ``weights_only`` admits tensors and plain data only: a pickle crafted to run code (a file from the
    internet, a shared folder) is refused with the reason instead of being executed.
    """
    import pickle

    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"refusing {Path(path).name}: it holds Python objects other than tensors and plain "
                              f"data, which could run code when loaded ({reason[:160]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{Path(path).name} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:160]})") from None
    if not isinstance(checkpoint, dict) or not {"model", "config", "num_classes"} <= set(checkpoint):
        raise CheckpointError(f"{Path(path).name} is not a reid-trainer checkpoint (no model, config and classes)")
    return checkpoint


def load_trained(checkpoint_path: Path) -> tuple[ReidNet, dict[str, Any]]:
    """The network of a checkpoint, in eval mode on the CPU, and the checkpoint's other contents."""
    checkpoint = load_checkpoint(checkpoint_path)
    cfg = TrainConfig.from_dict(checkpoint["config"])
    model = ReidNet(checkpoint["num_classes"], untrained_backbone_like(checkpoint["model"]),
                    embedding_dim=cfg.embedding_dim, last_stride=cfg.last_stride, bnneck=cfg.bnneck)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint
