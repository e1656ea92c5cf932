"""The faster detector prepared in the background on first use: a real child process exporting a real ONNX Runtime
model beside running cameras, and the switch to it between two frames without losing tracks."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import DetectorConfig, PipelineConfig, apply
from reid_desktop.core.engine.runner import PipelineControl, run
from reid_desktop.core.store.locking import WriterLock
from reid_desktop.core.types import FrameResult, PipelineInfo
from reid_desktop.core.vision import detector_runtimes as runtimes
from reid_desktop.core.vision.detection import bundled_detector_path
from reid_desktop.core.vision.detector_preparation import SWITCH_VARIABLE, DetectorPreparation, start_if_needed
from reid_desktop.core.vision.detector_runtimes import REFERENCE, CheckRecord, DetectorCache, Variant
from tests.conftest import shared_path
from tests.core.test_storage_cli import cli

ORT_FP32 = Variant("onnxruntime", "fp32")
SWITCH_WAIT_S = 300  # export and check at low priority beside the cameras: about a minute here


def _record(cache: DetectorCache, variant: Variant, machine: str | None = None, fps: float = 10.0) -> None:
    """A check record as a preparation leaves it (and the model file it vouches for)."""
    folder = cache.folder / variant.key
    folder.mkdir(parents=True, exist_ok=True)
    if variant.runtime != "pytorch":
        cache.model_path(variant).write_bytes(b"model")
    record = CheckRecord(variant.runtime, variant.precision, 1.0, fps, 3.0, machine or runtimes.machine_signature(),
                         time.time())
    (folder / "check.json").write_text(json.dumps(asdict(record)), encoding="utf-8")


def test_the_likeliest_fastest_variant_is_prepared_first() -> None:
    variants = [REFERENCE, Variant("onnxruntime", "fp32"), Variant("onnxruntime", "int8"), Variant("openvino", "fp32"),
                Variant("openvino", "int8"), Variant("openvino", "fp16"), Variant("tensorrt", "fp16")]
    assert [v.key for v in runtimes.fastest_first(variants)] == [
        "tensorrt-fp16", "openvino-fp16", "openvino-int8", "openvino-fp32", "onnxruntime-int8", "onnxruntime-fp32",
        "pytorch-fp32"]


def test_what_is_left_to_prepare_is_what_this_machine_has_not_checked(tmp_path: Path) -> None:
    cache = DetectorCache(bundled_detector_path(), 640, root=tmp_path)
    every = runtimes.candidates()
    assert cache.unprepared() == every  # nothing prepared yet
    _record(cache, ORT_FP32)
    _record(cache, REFERENCE)
    assert ORT_FP32 not in cache.unprepared() and REFERENCE not in cache.unprepared()
    _record(cache, ORT_FP32, machine="another machine")  # a copied data folder: its speeds do not hold here
    assert ORT_FP32 in cache.unprepared()
    _record(cache, ORT_FP32)
    cache.model_path(ORT_FP32).unlink()  # a record whose model went missing: prepared again
    assert ORT_FP32 in cache.unprepared()


def test_nothing_starts_when_it_is_off_named_or_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SWITCH_VARIABLE, "1")
    monkeypatch.setattr(runtimes, "candidates", lambda: [REFERENCE])
    config = DetectorConfig(imgsz=640)
    assert start_if_needed(DetectorConfig(imgsz=640, prepare_in_background=False), object()) is None
    assert start_if_needed(DetectorConfig(imgsz=640, runtime="pytorch"), object()) is None
    _record(DetectorCache(bundled_detector_path(), 640), REFERENCE)  # every variant checked here: nothing to do
    assert start_if_needed(config, object()) is None
    monkeypatch.setenv(SWITCH_VARIABLE, "0")
    assert start_if_needed(DetectorConfig(imgsz=320), object()) is None


def test_cli_resumes_with_the_missing_variants_and_refuses_a_second_preparer() -> None:
    cache = DetectorCache(bundled_detector_path(), 320)
    for variant in runtimes.candidates():
        _record(cache, variant)
    done = cli("models", "prepare-detector", "--imgsz", "320", "--missing")
    assert done.returncode == 0, done.stderr
    assert "exporting" not in done.stdout and "<- auto" in done.stdout  # nothing redone: the table as it is
    (cache.folder / "onnxruntime-fp32" / "check.json").unlink()
    with WriterLock(cache.folder / "preparation"):
        busy = cli("models", "prepare-detector", "--imgsz", "320", "--missing")
    assert busy.returncode == 7
    assert busy.stderr.strip().splitlines() == [
        "error: another process is preparing the runtimes of yolo11n-pose.pt at 320 px; they are used when it is done"]


@pytest.mark.skipif(sys.platform == "win32", reason="reads the child's POSIX niceness")
def test_cameras_switch_to_the_prepared_detector_without_losing_tracks(monkeypatch: pytest.MonkeyPatch) -> None:
    """First start: PyTorch runs while a low-priority child exports and checks ONNX Runtime; the run loop then swaps
    the detector between two frames and the people in view keep their track numbers. The next start needs nothing."""
    monkeypatch.setenv(SWITCH_VARIABLE, "1")
    monkeypatch.setattr(runtimes, "candidates", lambda: [ORT_FP32])  # one variant: the others take minutes more
    config = apply(PipelineConfig(), {"sources.analysis_fps": 3.0})
    clip = str(shared_path("data/vtest.avi"))  # 80 s: the switch falls inside it, not at a loop's restart
    spec = SourceSpec(clip, "cam", loop=True, realtime=True)
    control = PipelineControl()
    before: list[tuple[float | None, set[int]]] = []  # (media time, track ids) of analysed frames before the switch
    after: list[tuple[float | None, set[int]]] = []
    progress: list[DetectorPreparation] = []
    infos: list[PipelineInfo] = []
    niceness: list[int] = []
    children: list[int] = []
    started = time.monotonic()
    for event in run([spec], config, control=control, stay_open=True):
        if isinstance(event, PipelineInfo):
            infos.append(event)
        elif isinstance(event, DetectorPreparation):
            progress.append(event)
        elif isinstance(event, FrameResult) and event.persons:
            (after if len(infos) > 1 else before).append((event.media_time, {p.track_id for p in event.persons}))
        if not niceness and (pid := _child_pid()) is not None:
            niceness.append(os.getpriority(os.PRIO_PROCESS, pid))
            children.append(pid)
        if len(after) >= 5 or time.monotonic() - started > SWITCH_WAIT_S:
            control.cancel()
    assert [info.detector for info in infos] == ["yolo11n-pose (PyTorch FP32)", "yolo11n-pose (ONNX Runtime FP32)"]
    assert niceness and niceness[0] >= 10, niceness  # below the cameras
    assert progress[0].text == "Preparing the faster detector (1/1): starting with ONNX Runtime FP32"
    assert any("exporting the detector for ONNX Runtime FP32 at 1280 px" in p.doing for p in progress), progress
    assert before and len(after) >= 5
    assert before[-1][1] & after[0][1], (before[-3:], after[:3])  # the same people keep their tracks
    assert not Path(f"/proc/{children[0]}").exists() or _state(children[0]) == "Z"  # no child left running

    again: list[object] = list(run([SourceSpec(clip, "cam")], config, max_frames=2))
    assert [e.detector for e in again if isinstance(e, PipelineInfo)] == ["yolo11n-pose (ONNX Runtime FP32)"]
    assert not [e for e in again if isinstance(e, DetectorPreparation)]  # prepared once per detector, size, machine


def _child_pid() -> int | None:
    """The preparation child of this process, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"prepare-detector" in cmdline:
            return int(entry.name)
    return None


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
    except OSError:
        return "gone"
