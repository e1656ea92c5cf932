"""The trainer's JSON-lines events: every kind survives the round trip; versions and strangers are handled."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from trainer import events
from trainer.events import FORMAT_VERSION, EventFormatError

SAMPLES: list[events.Event] = [
    events.Started(run_dir="/runs/1", dataset="mini_mars", identities=8, images=640, epochs=4, steps_per_epoch=3,
                   device="cpu", world_size=1, weights="random", resumed_from=0, config={"lr": 0.001}),
    events.Step(epoch=1, step=2, steps=3, loss=4.5, parts={"ce": 3.0, "triplet": 1.5}, top1_error=0.9, lr=1e-3,
                images_per_s=40.0, trial=2),
    events.Evaluated(epoch=1, rank1=0.5, rank5=0.7, rank10=0.8, mAP=0.4, num_query=10, num_valid_query=9,
                     match_threshold=0.6, tracklet={"mAP": 0.5}),
    events.EpochEnded(epoch=1, loss=4.0, seconds=12.0, images_per_s=40.0, lr=1e-3, checkpoint="/runs/1/last.pt"),
    events.Finished(status="stopped", epochs_done=1, best={"mAP": 0.4}, run_dir="/runs/1"),
    events.Warned(message="random initialisation"),
    events.Failed(reason="diverged", message="the loss became NaN"),
    events.TrialStarted(number=0, lr=0.09, batch_size=16),
    events.TrialEnded(number=0, lr=0.09, batch_size=16, status="complete", rank1=0.5, rank5=0.6, rank10=0.7,
                      mAP=0.3, train_seconds=60.0, run_dir="/search/trial-000"),
    events.SearchDone(trials=[{"number": 0, "status": "complete"}]),
]


def test_every_kind_is_sampled_and_survives_the_round_trip() -> None:
    assert {type(e) for e in SAMPLES} == set(events.KINDS.values())
    for event in SAMPLES:
        line = events.encode(event)
        assert json.loads(line)["v"] == FORMAT_VERSION and json.loads(line)["event"] == event.kind
        assert events.decode(line) == event
        assert events.decode(line.encode()) == event  # as read from a process's stdout


def test_nan_travels_as_null_so_every_line_is_strict_json() -> None:
    diverged = events.TrialEnded(number=1, lr=100.0, batch_size=16, status="diverged", rank1=math.nan, rank5=None,
                                 rank10=None, mAP=math.nan, train_seconds=None, run_dir="")
    decoded = events.decode(events.encode(diverged))
    assert isinstance(decoded, events.TrialEnded) and decoded.mAP is None and decoded.rank1 is None


def test_log_lines_and_unknown_kinds_are_not_events_and_new_fields_are_ignored() -> None:
    assert events.decode("epoch 1: 50 %") is None
    assert events.decode("[1, 2]") is None
    assert events.decode(json.dumps({"v": FORMAT_VERSION, "event": "gpu_temperature", "celsius": 70})) is None
    step = dataclasses.asdict(SAMPLES[1])
    newer = json.dumps({"v": FORMAT_VERSION, "event": "step", **step, "grad_norm": 1.5})
    assert events.decode(newer) == SAMPLES[1]


@pytest.mark.parametrize(("payload", "message"), [
    ({"v": FORMAT_VERSION + 1, "event": "step"}, f"format {FORMAT_VERSION + 1}; this version reads format"),
    ({"event": "step", "epoch": 1}, "format None"),
    ({"v": FORMAT_VERSION, "event": "eval", "epoch": 1}, "trainer event 'eval' is incomplete"),
])
def test_a_newer_format_or_an_incomplete_event_is_refused_with_one_clear_line(payload: dict, message: str) -> None:
    with pytest.raises(EventFormatError, match=message):
        events.decode(json.dumps(payload))
