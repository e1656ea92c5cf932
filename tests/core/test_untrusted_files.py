"""Files from elsewhere (detector weights, trainer checkpoints, re-id models) are checked before use: a pickle
that would run code is refused unrun, malformed model metadata gets one clear line, never a crash later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.vision.detection import YoloDetector
from reid_desktop.core.vision.embedding import OnnxEmbedder
from reid_desktop.core.vision.model_info import PREFIX, ReidModelInfo
from tests.conftest import ROOT


class _RunsCode:
    """Unpickling this creates ``marker``: the proof that loading a file ran code from it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def hostile_checkpoint(path: Path, marker: Path, **extra: object) -> Path:
    torch.save({"model": _RunsCode(marker), **extra}, path)
    return path


def test_a_detector_pickle_that_runs_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    weights = hostile_checkpoint(tmp_path / "yolo-custom.pt", marker, train_args={})
    with pytest.raises(ModelError, match=r"refusing detector yolo-custom\.pt: it holds Python objects outside"):
        YoloDetector(DetectorConfig(model=str(weights), device="cpu"))
    assert not marker.exists()


def test_a_trainer_checkpoint_that_runs_code_is_refused_unrun(tmp_path: Path) -> None:
    from trainer.train import CheckpointError, load_checkpoint

    marker = tmp_path / "ran"
    checkpoint = hostile_checkpoint(tmp_path / "best.pt", marker, config={}, num_classes=2)
    with pytest.raises(CheckpointError, match=r"refusing best\.pt: it holds Python objects other than tensors"):
        load_checkpoint(checkpoint)
    assert not marker.exists()
    cli = subprocess.run([sys.executable, "-m", "trainer.cli", "export", str(checkpoint), "--output",
                          str(tmp_path / "x.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=os.environ.copy())
    assert cli.returncode == 2 and not marker.exists()
    assert cli.stderr.strip().splitlines() == [cli.stderr.strip().splitlines()[-1]]  # one line, no traceback
    assert cli.stderr.startswith("error: refusing best.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a reid-trainer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("match_threshold", "NaN", r"match_threshold must be a cosine similarity in \(0, 1\], not nan"),
    ("match_threshold", "-0.5", r"match_threshold must be a cosine similarity in \(0, 1\], not -0.5"),
    ("match_threshold", '"high"', "match_threshold must be a cosine similarity"),
    ("input_height", "100000", "input_height must be a whole number of pixels from 8 to 1024, not 100000"),
    ("input_width", "12.5", "input_width must be a whole number of pixels"),
    ("embedding_dim", "[512]", "embedding_dim must be a whole number"),
    ("mean", "[0.5, 0.5]", "mean must be three finite numbers"),
    ("std", "[0.2, 0, 0.2]", "std must be positive"),
    ("std", '{"r": 1}', "std must be three finite numbers"),
    ("channel_order", "yuv", "channel_order must be 'rgb' or 'bgr'"),
    ("metrics", '{"rank1": "best"}', "metrics must map names to finite numbers"),
    ("mean", "not json", "metadata reid.mean is not valid JSON"),
])
def test_malformed_model_metadata_is_one_clear_error(tmp_path: Path, osnet_path: Path, key: str, value: str,
                                                     message: str) -> None:
    model = onnx.load(str(osnet_path))
    sizes = {PREFIX + "input_height": "256", PREFIX + "input_width": "128"} if key.startswith("input_") else {}
    onnx.helper.set_model_props(model, {**sizes, PREFIX + key: value})
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=message) as caught:
        OnnxEmbedder(path)
    assert str(caught.value).startswith("re-id model tampered.onnx: ") and "\n" not in str(caught.value)


METADATA_VALUES = st.one_of(st.text(max_size=20), st.from_regex(r"\A-?[0-9]{1,7}(\.[0-9]{1,3})?\Z"),
                            st.sampled_from(["NaN", "Infinity", "-1e999", "null", "true", "[]", "{}", "[1,2,3]",
                                             "[0.4,0.4,0.4]", '"rgb"', "0.7", "256"]))


@given(st.dictionaries(st.sampled_from([PREFIX + f for f in ReidModelInfo.__dataclass_fields__]), METADATA_VALUES),
       st.none() | st.tuples(st.integers(-5, 5000), st.integers(-5, 5000)), st.none() | st.integers(-5, 100000))
def test_any_metadata_gives_a_sound_model_description_or_a_value_error(
        props: dict[str, str], input_hw: tuple[int, int] | None, output_dim: int | None) -> None:
    try:
        info = ReidModelInfo.from_metadata(props, input_hw, output_dim)
    except ValueError:
        return
    assert 8 <= info.input_height <= 1024 and 8 <= info.input_width <= 1024
    assert 0 < info.match_threshold <= 1 and all(s > 0 for s in info.std) and len(info.mean) == 3
    assert info.channel_order in ("rgb", "bgr")
