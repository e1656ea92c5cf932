"""Trainer fixtures: a CPU-sized slice of the real MARS crops and a short real training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_path


def mars_slice(source: Path, target: Path, test_frames_per_tracklet: int) -> Path:
    """Every training image, and the first frames of each test tracklet (links, not copies)."""
    for split in ("bbox_train", "bbox_test"):
        for identity in sorted((source / split).iterdir()):
            tracklets: dict[str, list[Path]] = {}
            for image in sorted(identity.glob("*.jpg")):
                tracklets.setdefault(image.name[:11], []).append(image)  # PPPPCcTtttt
            out = target / split / identity.name
            out.mkdir(parents=True, exist_ok=True)
            for frames in tracklets.values():
                for image in frames if split == "bbox_train" else frames[:test_frames_per_tracklet]:
                    (out / image.name).symlink_to(image)
    return target


@pytest.fixture(scope="session")
def mini_mars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mars_slice(shared_path("data/reid/mini_mars"), tmp_path_factory.mktemp("mini_mars"), 8)


def tiny_config(data: Path, output: Path, **changes):
    """Small images and AdamW from random weights: what a CPU learns from in a minute."""
    from trainer.config import TrainConfig

    values = dict(data=str(data), output=str(output), weights="random", height=64, width=32, batch_size=16,
                  optimizer="adamw", lr=1e-3, weight_decay=0.01, schedule="constant", random_erasing=False,
                  workers=0, device="cpu", eval_every=2, epochs=4, allow_download=False)
    values.update(changes)
    return TrainConfig(**values).validate()
