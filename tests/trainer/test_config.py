"""Training options: declared once, parsed from flags, written back to flags for the GUI's trainer process."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from reid_desktop.core import options
from trainer.config import TrainConfig, add_arguments, from_arguments


def test_options_survive_the_round_trip_through_command_line_flags() -> None:
    changed = TrainConfig(lr=0.01, batch_size=32, optimizer="adamw", flip=False, milestones="10, 20",
                          label_smoothing=0.2, data="/data/market")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments(parser.parse_args(options.to_flags(changed))) == changed
    assert from_arguments(parser.parse_args([])) == TrainConfig()


@pytest.mark.parametrize(("values", "message"), [
    ({"lr": -1.0}, r"lr: -1.0 is outside the allowed range"),
    ({"optimizer": "adam"}, r"optimizer: 'adam' is not one of sgd, adamw"),
    ({"milestones": "ten"}, r"milestones: milestones must be comma-separated epochs"),
    ({"flip": "sometimes"}, r"flip: expected true or false"),
    ({"batch_size": 18}, r"batch_size 18 must be a multiple of instances_per_identity 4"),
    ({"epochz": 3}, r"unknown option 'epochz' \(did you mean 'epochs'\?\)"),
])
def test_bad_options_name_the_option(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({**dataclasses.asdict(TrainConfig()), **values})


def test_init_names_the_starting_weights_as_weights_does() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments(parser.parse_args(["--init", "market_bot_R50.pth"])).weights == "market_bot_R50.pth"
    assert "--init" in parser.format_help()
