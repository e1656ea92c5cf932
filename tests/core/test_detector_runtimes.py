"""The detector's faster runtimes: real exports of the bundled YOLO11n-pose, checked against the checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import DetectorConfig
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.engine.runner import run
from reid_desktop.core.errors import ModelError
from reid_desktop.core.types import Detections, FrameResult, PreparedPicture
from reid_desktop.core.vision import detector_runtimes as runtimes
from reid_desktop.core.vision import letterbox as letterboxing
from reid_desktop.core.vision import ort_runner
from reid_desktop.core.vision.detection import PreparingDetector, YoloDetector
from reid_desktop.core.vision.detector_runtimes import DetectorCache, Variant
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_detection_tracking import EYE_COUNTED, _covered
from tests.core.test_pipeline import fast_config

ORT_INT8 = Variant("onnxruntime", "int8")
ORT_FP32 = Variant("onnxruntime", "fp32")


def _dets(*rows: tuple[float, float, float, float, float]) -> Detections:
    return Detections(np.array([[*r, 0.0] for r in rows], dtype=np.float32).reshape(-1, 6))


def test_agreement_counts_people_found_both_ways() -> None:
    a = _dets((0, 0, 10, 20, 0.9), (50, 0, 60, 20, 0.8))
    assert runtimes.agreement([a], [a]) == 1.0
    missing_one = _dets((0, 0, 10, 20, 0.9))
    assert runtimes.agreement([a], [missing_one]) == 0.5
    assert runtimes.agreement([missing_one], [a]) == 0.5  # an extra confident person counts as much as a missed one
    assert runtimes.agreement([_dets()], [_dets((0, 0, 10, 20, 0.2))]) == 1.0  # nobody confident: nothing to miss
    # a person whose score moved below the confident line but is still there is found, not missed
    weaker = _dets((1, 1, 10, 21, 0.9), (50, 0, 60, 20, 0.08))
    assert runtimes.agreement([a], [weaker]) == 1.0
    shifted = _dets((6, 10, 16, 30, 0.9), (50, 0, 60, 20, 0.8))  # IoU 0.2 with the first person: not the same box
    assert runtimes.agreement([a], [shifted]) == 0.5


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> DetectorCache:
    checkpoint = runtimes.checkpoint_of(DetectorConfig())
    assert checkpoint is not None
    return DetectorCache(checkpoint, 1280, root=tmp_path_factory.mktemp("detectors"))


@pytest.mark.slow
def test_int8_export_finds_the_people_the_checkpoint_finds(shared_cache: DetectorCache,
                                                                    demo_frames) -> None:
    lines: list[str] = []
    config = DetectorConfig(imgsz=1280, device="cpu")
    record = shared_cache.prepare(ORT_INT8, config, lines.append)
    assert any("calibrating INT8" in line for line in lines), lines
    assert record.passed and record.agreement >= runtimes.MIN_AGREEMENT, record
    assert record.frames_per_s > 0 and record.machine == runtimes.machine_signature()
    detector = runtimes.load_variant(ORT_INT8, config, shared_cache)
    assert detector.name == "yolo11n-pose (ONNX Runtime INT8)"
    batch = detector.detect([demo_frames[0], demo_frames[40]])  # one call for several cameras
    for index, dets in zip((0, 40), batch, strict=True):
        assert dets.keypoints is not None and dets.keypoints.shape == (len(dets), 17, 3)
        found = sum(_covered(dets.boxes[dets.boxes[:, 4] >= 0.2], p) for p in EYE_COUNTED[index])
        assert found >= len(EYE_COUNTED[index]) - 1, dets.boxes.round()
        assert np.all(dets.boxes[:, 5] == 0)
    # the keypoints land on the people, in image coordinates (not the letterboxed input's)
    kpts = batch[0].keypoints
    assert kpts is not None
    visible = kpts[kpts[..., 2] > 0.5]
    assert visible[:, 0].max() < demo_frames[0].shape[1] and visible[:, 1].max() < demo_frames[0].shape[0]


def test_named_runtime_is_exported_once_then_taken_from_the_cache(_isolated_data_dir: Path, demo_frames) -> None:
    config = DetectorConfig(imgsz=640, device="cpu", runtime="onnxruntime", precision="fp32")
    first = runtimes.make_detector(config)
    assert first.name == "yolo11n-pose (ONNX Runtime FP32)"
    exported = next((_isolated_data_dir / "models" / "detectors").rglob("model.onnx"))
    stamp = exported.stat().st_mtime_ns
    second = runtimes.make_detector(config)
    assert exported.stat().st_mtime_ns == stamp
    reference = YoloDetector(dataclasses.replace(config, runtime="pytorch"))
    frames = demo_frames[::60][:4]
    assert runtimes.agreement(reference.detect(frames), second.detect(frames)) >= runtimes.MIN_AGREEMENT


def test_auto_takes_the_fastest_export_checked_on_this_machine(_isolated_data_dir: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    config = DetectorConfig(imgsz=640, device="cpu")
    assert isinstance(runtimes.make_detector(config), YoloDetector)  # nothing prepared: the checkpoint
    cache = DetectorCache(runtimes.checkpoint_of(config), 640)  # type: ignore[arg-type]
    cache.prepare(ORT_FP32, config)

    def fake_record(variant: Variant, **changes: object) -> None:
        """Edit the check's record as a faster or failed run, or one measured elsewhere, would have left it."""
        path = cache.folder / variant.key / "check.json"
        record = json.loads((cache.folder / ORT_FP32.key / "check.json").read_text())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**record, "runtime": variant.runtime, "precision": variant.precision, **changes}))
        shutil.copy(cache.model_path(ORT_FP32), cache.model_path(variant))

    assert runtimes.make_detector(config).name == "yolo11n-pose (ONNX Runtime FP32)"
    fake_record(Variant("onnxruntime", "int8"), frames_per_s=1e6, machine="another machine")
    assert runtimes.make_detector(config).name == "yolo11n-pose (ONNX Runtime FP32)"
    fake_record(Variant("onnxruntime", "int8"), frames_per_s=1e6, agreement=0.5)
    assert runtimes.make_detector(config).name == "yolo11n-pose (ONNX Runtime FP32)"
    with pytest.raises(ModelError, match=r"ONNX Runtime INT8 detector export finds only 50% of the people"):
        runtimes.make_detector(dataclasses.replace(config, runtime="onnxruntime", precision="int8"))

    # a damaged export: named, it is one clear error; under auto the cameras go on with the checkpoint
    cache.model_path(ORT_FP32).write_bytes(b"\x08\x07broken" * 10)
    with pytest.raises(ModelError, match=r"cannot load detector export .*model\.onnx"):
        runtimes.make_detector(dataclasses.replace(config, runtime="onnxruntime", precision="fp32"))
    with caplog.at_level(logging.WARNING):
        assert isinstance(runtimes.make_detector(config), YoloDetector)
    assert "running the detector in PyTorch" in caplog.text


def test_half_precision_pytorch_is_checked_without_an_export(_isolated_data_dir: Path) -> None:
    """On a GPU ``PyTorch FP16`` is a candidate: it runs the checkpoint itself (once it went down the OpenVINO
    export branch). Ultralytics computes in full precision on the CPU, so the check runs here too."""
    config = DetectorConfig(imgsz=320, device="cpu")
    cache = DetectorCache(runtimes.checkpoint_of(config), 320)  # type: ignore[arg-type]
    record = cache.prepare(Variant("pytorch", "fp16"), config)
    assert record.passed
    assert sorted(p.name for p in (cache.folder / "pytorch-fp16").iterdir()) == ["check.json"]


def test_a_runtime_this_machine_lacks_is_one_clear_error() -> None:
    if "tensorrt" in {v.runtime for v in runtimes.candidates()}:
        pytest.skip("this machine has TensorRT")
    with pytest.raises(ModelError, match=r"cannot run as TensorRT FP16 on this machine .* can run as: PyTorch FP32"):
        runtimes.make_detector(DetectorConfig(imgsz=640, runtime="tensorrt", precision="fp16"))


def test_an_export_is_refused_for_an_onnx_detector(demo_frames) -> None:
    from tests.conftest import shared_path

    config = DetectorConfig(model=str(shared_path("models/yolov8n_int8.onnx")), imgsz=640, runtime="openvino")
    assert runtimes.checkpoint_of(config) is None
    assert runtimes.make_detector(config).name == "yolov8n_int8 (ONNX Runtime)"  # run as it is


def test_check_and_calibration_frames_differ() -> None:
    check, calibration = runtimes.sample_frames()
    assert len(check) == runtimes.CHECK_FRAMES and len(calibration) == runtimes.CALIBRATION_FRAMES
    assert not any(np.array_equal(c, k) for c in check for k in calibration)


def test_one_inference_call_per_input_shape_for_all_cameras(shared_cache: DetectorCache, demo_frames) -> None:
    """The GPU path's batching, checked on the CPU: cameras of one resolution share one call."""
    config = DetectorConfig(imgsz=1280, device="cpu", runtime="onnxruntime", precision="fp32")
    if shared_cache.record(ORT_FP32) is None:
        shared_cache.prepare(ORT_FP32, config)
    detector = runtimes.load_variant(ORT_FP32, config, shared_cache)
    assert isinstance(detector, runtimes.ExportedDetector)
    calls: list[tuple[int, ...]] = []
    infer = detector._infer
    detector._infer = lambda batch: calls.append(batch.shape) or infer(batch)  # type: ignore[method-assign]
    same = detector.detect([demo_frames[0], demo_frames[40], demo_frames[20]])
    assert calls == [(3, 3, 960, 1280)]
    alone = [detector.detect([frame])[0] for frame in (demo_frames[0], demo_frames[40], demo_frames[20])]
    for batched, single in zip(same, alone, strict=True):  # batching changes nothing
        assert np.allclose(batched.boxes, single.boxes, atol=1e-2)
    calls.clear()
    small = demo_frames[0][::2, ::2].copy()  # another camera resolution, and a changed region's size
    mixed = detector.detect_sized([demo_frames[0], small, demo_frames[40]], [1280, 1280, 640])
    assert sorted(calls) == sorted([(2, 3, 960, 1280), (1, 3, 480, 640)])
    assert len(mixed) == 3 and np.allclose(mixed[0].boxes, same[0].boxes, atol=1e-2)


def test_the_gpu_route_finds_what_the_cpu_route_finds(shared_cache: DetectorCache, demo_frames,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the 8-bit pictures travel, torch converts them and NMS runs on the output where it lies:
    the same code on torch's CPU tensors must find exactly what the numpy route finds."""
    config = DetectorConfig(imgsz=1280, device="cpu", runtime="onnxruntime", precision="fp32")
    if shared_cache.record(ORT_FP32) is None:
        shared_cache.prepare(ORT_FP32, config)
    plain = runtimes.load_variant(ORT_FP32, config, shared_cache)
    monkeypatch.setattr(ort_runner, "IMAGE_UPLOAD_PROVIDERS", (*ort_runner.GPU_PROVIDERS, "CPUExecutionProvider"))
    uploaded = runtimes.load_variant(ORT_FP32, config, shared_cache)
    assert isinstance(uploaded, runtimes.ExportedDetector) and uploaded._runner and uploaded._runner.uploads_images
    frames = [demo_frames[0], demo_frames[40], demo_frames[20]]
    prepared = [uploaded.prepare(frames[0]), None, uploaded.prepare(frames[2])]  # as the readers hand them over
    for routed in (uploaded.detect(frames), uploaded.detect_prepared(frames, prepared)):
        for expected, got in zip(plain.detect(frames), routed, strict=True):
            assert len(expected) > 3 and expected.boxes.shape == got.boxes.shape
            assert np.allclose(expected.boxes, got.boxes, atol=1e-2)
            assert expected.keypoints is not None and got.keypoints is not None
            assert np.allclose(expected.keypoints, got.keypoints, atol=1e-2)


@given(height=st.integers(1, 1500), width=st.integers(1, 1500), size=st.sampled_from([320, 640, 1280]),
       seed=st.integers(0, 2**16))
@settings(max_examples=60)
def test_letterbox_batches_are_ultralytics_letterbox_byte_for_byte(height: int, width: int, size: int,
                                                                     seed: int) -> None:
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    other = np.random.default_rng(seed + 1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    batches = letterboxing.letterbox_batches([image, other], [size, size])
    assert [positions for positions, _ in batches] == [[0, 1]]  # one shape: one batch
    expected = LetterBox(new_shape=(size, size), auto=True, stride=32)(image=image)
    assert np.array_equal(batches[0][1][0], expected)
    assert np.array_equal(letterboxing.letterbox_bytes(other, size), batches[0][1][1])


@given(height=st.integers(1, 900), width=st.integers(1, 900), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_a_prepared_picture_is_taken_as_it_is_and_one_of_another_size_is_made_again(height: int, width: int,
                                                                                       seed: int) -> None:
    rng = np.random.default_rng(seed)
    first, second, third = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(3))
    expected = letterboxing.letterbox_batches([first, second, third], [640, 640, 640])
    ready = PreparedPicture(640, letterboxing.letterbox_bytes(first, 640))
    stale = PreparedPicture(320, letterboxing.letterbox_bytes(third, 320))  # made before the size changed
    got = letterboxing.letterbox_batches([first, second, third], [640, 640, 640], [ready, None, stale])
    assert [positions for positions, _ in got] == [[0, 1, 2]]
    assert np.array_equal(got[0][1], expected[0][1])
    ((positions, alone),) = letterboxing.letterbox_batches([first], [640], [ready])
    assert positions == [0] and np.shares_memory(alone, ready.picture)  # alone in its batch: not even copied


def test_the_readers_prepare_the_exported_detectors_input_and_the_engine_takes_it(shared_cache: DetectorCache,
                                                                                 demo_clip: Path,
                                                                                 demo_frames) -> None:
    """Letterboxing is per camera work: it runs beside decoding on the readers' threads (which grow with the
    cores), not on the one engine thread, and finds exactly what letterboxing on the engine thread finds."""
    config = DetectorConfig(imgsz=1280, device="cpu", runtime="onnxruntime", precision="fp32")
    if shared_cache.record(ORT_FP32) is None:
        shared_cache.prepare(ORT_FP32, config)
    detector = runtimes.load_variant(ORT_FP32, config, shared_cache)
    assert isinstance(detector, PreparingDetector)
    pictures = [demo_frames[0], demo_frames[40]]
    prepared = [detector.prepare(picture) for picture in pictures]
    for plain, ahead in zip(detector.detect(pictures), detector.detect_prepared(pictures, prepared), strict=True):
        assert len(plain) > 3 and np.array_equal(plain.boxes, ahead.boxes)

    letterboxed_on: list[str] = []
    place = letterboxing._place

    def recording_place(*args: object) -> None:
        letterboxed_on.append(threading.current_thread().name)
        place(*args)  # type: ignore[arg-type]

    cfg = fast_config(**{"detector.imgsz": 1280})
    pipeline = Pipeline(cfg, detector=detector, embedder=ColorTextureEmbedder())
    with mock.patch.object(letterboxing, "_place", recording_place):
        results = [e for e in run([SourceSpec(str(demo_clip), "cam")], cfg, pipeline=pipeline, max_frames=6)
                   if isinstance(e, FrameResult)]
    assert len(results) == 6 and any(r.persons for r in results)
    assert len(letterboxed_on) >= 6 and threading.current_thread().name not in letterboxed_on


def test_the_checkpoint_is_exported_to_onnx_once_for_every_variant_or_shipped(_isolated_data_dir: Path,
                                                                              tmp_path: Path) -> None:
    """Every variant starts from the same ONNX export of the checkpoint: the first preparation makes it and keeps
    it, the next ones start from the kept file (one Ultralytics export per checkpoint and size, not one per variant).
    A packaged build ships that export (the same on every machine): a first start then makes none at all."""
    config = DetectorConfig(imgsz=320, device="cpu")
    cache = DetectorCache(runtimes.checkpoint_of(config), 320)  # type: ignore[arg-type]
    first: list[str] = []
    assert cache.prepare(ORT_FP32, config, first.append).passed
    assert "exporting yolo11n-pose.pt to ONNX at 320 px" in first
    kept = cache.folder / "source.onnx"
    assert kept.read_bytes() == cache.model_path(ORT_FP32).read_bytes()
    second: list[str] = []
    assert cache.prepare(Variant("openvino", "fp32"), config, second.append).passed
    assert not any("to ONNX" in line for line in second), second

    bundle = cache.folder.parents[1]  # what packaging/ ships is laid out as this cache: here, made already
    assert runtimes.export_for_shipping(bundle, 320) == kept
    another_machine = DetectorCache(cache.checkpoint, 320, root=tmp_path / "user", shipped=bundle)
    third: list[str] = []
    assert another_machine.prepare(ORT_FP32, config, third.append).passed
    assert "taking the ONNX export of yolo11n-pose.pt shipped with this build" in third
    assert not any("to ONNX" in line for line in third), third
