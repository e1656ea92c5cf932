"""Half-precision re-id and the GPU route (8-bit pictures uploaded, normalised by torch, IO binding).

Both run on the CPU here: ONNX Runtime computes half-precision graphs there too, and the GPU route's code is
the same on torch's CPU tensors (the ``upload_route`` fixture sends CPU sessions down it). What needs an
NVIDIA GPU with ONNX Runtime's CUDA provider is skipped, with that reason, everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from reid_desktop.core.errors import ModelError
from reid_desktop.core.vision import embedding, ort_runner
from reid_desktop.core.vision.embedding import HALF_COPIES_KEPT, OnnxEmbedder, half_precision_copy
from reid_desktop.core.vision.ort_runner import MAX_SHAPES, OrtRunner


def _cuda_session_available() -> bool:
    import onnxruntime as ort
    import torch

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


gpu = pytest.mark.skipif(not _cuda_session_available(), reason="needs an NVIDIA GPU and ONNX Runtime's CUDA provider")


def _crops(demo_frames: list[np.ndarray]) -> list[np.ndarray]:
    return [frame[100:400, x:x + 120] for frame in demo_frames[::20] for x in (80, 300, 520)]


def _fragile_model(path: Path, dim: int = 8) -> Path:
    """A re-id-shaped model whose output is the small difference of two large, nearly equal products:
    exact in full precision, rounded away in half precision (where 1 + 1e-4 is 1)."""
    rng = np.random.default_rng(0)
    w1 = (1.0 + rng.uniform(-3e-4, 3e-4, (3, dim))).astype(np.float32)
    w2 = np.ones((3, dim), np.float32)
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w1"], ["a"]), helper.make_node("MatMul", ["m", "w2"], ["b"]),
             helper.make_node("Sub", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "fragile", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                ["n", 3, 64, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", dim])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_half_precision_reid_matches_full_precision_and_is_made_once(osnet_path: Path, demo_frames,
                                                                      _isolated_data_dir: Path) -> None:
    full = OnnxEmbedder(osnet_path, "cpu", precision="fp32")
    half = OnnxEmbedder(osnet_path, "cpu", precision="fp16")
    assert (full.precision, half.precision) == ("fp32", "fp16")
    assert half.key == full.key, "both precisions embed into one space: the stored vectors stay comparable"
    crops = _crops(demo_frames)
    similarity = np.sum(full.embed(crops) * half.embed(crops), axis=1)
    assert similarity.min() >= 0.99
    copies = list((_isolated_data_dir / "models" / "reid-fp16").glob("*.onnx"))
    assert len(copies) == 1
    made = copies[0].stat().st_ino
    OnnxEmbedder(osnet_path, "cpu", precision="fp16")
    assert copies[0].stat().st_ino == made, "the half-precision copy is reused, not converted again"


def test_auto_keeps_full_precision_on_the_cpu(osnet_path: Path, _isolated_data_dir: Path) -> None:
    embedder = OnnxEmbedder(osnet_path, "cpu")
    assert embedder.precision == "fp32"
    assert not (_isolated_data_dir / "models" / "reid-fp16").exists()


def test_a_model_that_half_precision_breaks_is_refused_or_kept_in_full(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    fragile = _fragile_model(tmp_path / "fragile.onnx")
    with pytest.raises(ModelError, match="agree with full precision only"):
        OnnxEmbedder(fragile, "cpu", precision="fp16")
    kept = OnnxEmbedder(fragile, "cpu", precision="fp32")
    kept._use_half_precision("fragile", insist=False)  # what auto does on a GPU
    assert kept.precision == "fp32"
    assert "runs in full precision" in caplog.text


def test_half_precision_copies_are_bounded(tmp_path: Path, _isolated_data_dir: Path) -> None:
    for n in range(HALF_COPIES_KEPT + 3):
        model = _fragile_model(tmp_path / f"model{n}.onnx", dim=4 + n)
        half_precision_copy(model, f"digest{n}")
    kept = sorted(p.name for p in (_isolated_data_dir / "models" / "reid-fp16").glob("*.onnx"))
    assert len(kept) == HALF_COPIES_KEPT
    assert f"model{HALF_COPIES_KEPT + 2}-digest{HALF_COPIES_KEPT + 2}.onnx" in kept  # the newest stay


def test_without_the_demo_clip_auto_runs_full_precision_and_fp16_says_why(osnet_path: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "demo_clip", lambda: tmp_path / "missing.mp4")
    with pytest.raises(ModelError, match="no demo clip"):
        OnnxEmbedder(osnet_path, "cpu", precision="fp16")


# -- pictures uploaded and normalised by torch (the GPU route), run here on the CPU --------------------------


@pytest.fixture
def upload_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions on the CPU take the route that GPU sessions take: 8-bit pictures, torch normalisation, IO binding."""
    monkeypatch.setattr(ort_runner, "IMAGE_UPLOAD_PROVIDERS", (*ort_runner.GPU_PROVIDERS, "CPUExecutionProvider"))


def _any_size_model(path: Path) -> Path:
    """[N,3,H,W] -> [N,3,H,W]: a 3x3 convolution, so every picture shape is accepted."""
    weights = np.random.default_rng(1).normal(size=(3, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_uploaded_pictures_give_what_numpy_gives_for_every_batch_and_shape(tmp_path: Path, upload_route) -> None:
    import onnxruntime as ort

    runner = OrtRunner(ort.InferenceSession(str(_any_size_model(tmp_path / "conv.onnx")),
                                            providers=["CPUExecutionProvider"]))
    assert runner.uploads_images
    mean, std = (10.0, 20.0, 30.0), (50.0, 60.0, 70.0)
    rng = np.random.default_rng(2)
    for count, height, width in [(1, 32, 32), (3, 32, 32), (8, 32, 32), (5, 32, 32), (2, 64, 48), (9, 32, 32)]:
        pictures = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
        rgb = pictures[..., ::-1].astype(np.float32)
        expected = runner(((rgb - mean) / std).transpose(0, 3, 1, 2))
        for _ in range(2):  # the first call per shape learns the output's shape, the second uses its buffer
            np.testing.assert_allclose(runner.run_images(pictures, mean, std, rgb=True).numpy(), expected,
                                       rtol=1e-5, atol=1e-4)
    for extra in range(MAX_SHAPES + 4):
        runner.run_images(rng.integers(0, 256, (2, 16, 16 + extra, 3), dtype=np.uint8), mean, std, rgb=False)
    assert runner.shapes_held == MAX_SHAPES


def test_reid_on_the_upload_route_embeds_as_on_the_cpu(osnet_path: Path, demo_frames, upload_route,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    crops = _crops(demo_frames)
    uploaded = OnnxEmbedder(osnet_path, "cpu", precision="fp32")
    monkeypatch.setattr(ort_runner, "IMAGE_UPLOAD_PROVIDERS", ort_runner.GPU_PROVIDERS)
    plain = OnnxEmbedder(osnet_path, "cpu", precision="fp32")
    assert uploaded._run.uploads_images and not plain._run.uploads_images
    np.testing.assert_allclose(uploaded.embed(crops), plain.embed(crops), atol=1e-4)


# -- on an NVIDIA GPU ----------------------------------------------------------------------------------


@gpu
def test_auto_runs_reid_in_half_precision_on_the_gpu(osnet_path: Path, demo_frames) -> None:
    on_gpu = OnnxEmbedder(osnet_path, "cuda")
    on_cpu = OnnxEmbedder(osnet_path, "cpu", precision="fp32")
    assert (on_gpu.provider, on_gpu.precision, on_gpu._run.uploads_images) == ("CUDAExecutionProvider", "fp16", True)
    crops = _crops(demo_frames)
    assert np.sum(on_gpu.embed(crops) * on_cpu.embed(crops), axis=1).min() >= 0.99
