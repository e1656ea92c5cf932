"""What a training run or search reports, as typed events, and their JSON-lines format.

``reid-trainer train --events`` writes one JSON object per line: ``{"v": 1, "event": "step", ...}``
with the fields of the event's dataclass. The Trainer tab reads them back with :func:`decode`.
The format is versioned: a reader refuses a newer major version with a clear message, ignores
event kinds it does not know and fields it does not know (added within a version), so an older
window keeps working with a newer trainer of the same version.

A run reports ``start``, then ``step`` (about 100 per epoch), ``eval`` (every ``eval_every``
epochs), ``epoch`` after each epoch, and ``done``; ``warning`` and ``error`` when they happen.
A search adds ``trial_start`` and ``trial`` around each run (whose events carry ``trial``), and
``search_done``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

FORMAT_VERSION = 1


class EventFormatError(ValueError):
    """A line that claims to be an event but cannot be read as one; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str]
    trial: int | None = None  # set on the events of a run inside a search


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    kind: ClassVar[str] = "start"
    run_dir: str
    dataset: str
    identities: int
    images: int
    epochs: int
    steps_per_epoch: int
    device: str
    world_size: int
    weights: str  # where the backbone's weights came from
    resumed_from: int  # the last epoch of the checkpoint resumed (0: a new run)
    config: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Step(Event):
    kind: ClassVar[str] = "step"
    epoch: int
    step: int
    steps: int
    loss: float
    parts: dict[str, float]  # the loss's terms (cross-entropy, triplet, ArcFace)
    top1_error: float  # share of the batches since the last step event that the classifier got wrong
    lr: float
    images_per_s: float


@dataclass(frozen=True, kw_only=True)
class Evaluated(Event):
    kind: ClassVar[str] = "eval"
    epoch: int
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    num_query: int
    num_valid_query: int
    match_threshold: float
    tracklet: dict[str, float] | None = None  # per-tracklet figures on MARS-style data


@dataclass(frozen=True, kw_only=True)
class EpochEnded(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int
    loss: float
    seconds: float
    images_per_s: float
    lr: float
    checkpoint: str


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    kind: ClassVar[str] = "done"
    status: str  # finished | stopped
    epochs_done: int
    best: dict[str, Any]  # the history record of the best epoch by mAP
    run_dir: str


@dataclass(frozen=True, kw_only=True)
class Warned(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True, kw_only=True)
class Failed(Event):
    kind: ClassVar[str] = "error"
    reason: str  # diverged | input
    message: str


@dataclass(frozen=True, kw_only=True)
class TrialStarted(Event):
    kind: ClassVar[str] = "trial_start"
    number: int
    lr: float
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class TrialEnded(Event):
    """A trial's outcome, and one line of the search's results table: the setting, its accuracy and its cost."""

    kind: ClassVar[str] = "trial"
    number: int
    lr: float
    batch_size: int
    status: str  # complete | pruned | diverged | failed | running
    rank1: float | None
    rank5: float | None
    rank10: float | None
    mAP: float | None
    train_seconds: float | None
    run_dir: str


@dataclass(frozen=True, kw_only=True)
class SearchDone(Event):
    kind: ClassVar[str] = "search_done"
    trials: list[dict[str, Any]]


EventSink = Callable[[Event], None]
KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (Started, Step, Evaluated, EpochEnded, Finished, Warned,
                                                           Failed, TrialStarted, TrialEnded, SearchDone)}


def _plain(value: Any) -> Any:
    """JSON has no NaN: a diverged trial's NaN figures travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def encode(event: Event) -> str:
    """One JSON line (without the newline)."""
    payload = {"v": FORMAT_VERSION, "event": event.kind, **_plain(dataclasses.asdict(event))}
    return json.dumps(payload, default=str, allow_nan=False)


def decode(line: str | bytes) -> Event | None:
    """The event on ``line``; ``None`` for a line that is no event (log output) or an event kind not known here.

    :class:`EventFormatError` for an event of a newer format version or one that lacks a field.
    """
    try:
        payload = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or "event" not in payload:
        return None
    version = payload.get("v")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EventFormatError(f"the trainer writes events in format {version!r}; this version reads format "
                               f"{FORMAT_VERSION} (install the same version of both)")
    cls = KINDS.get(payload["event"])
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in payload.items() if k in names})
    except TypeError as exc:
        raise EventFormatError(f"trainer event {payload['event']!r} is incomplete: {exc}") from None
