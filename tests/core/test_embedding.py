"""Re-id embeddings on real cross-camera crops; model loading and its failure modes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from reid_desktop.core.config import ReidConfig
from reid_desktop.core.errors import ModelError
from reid_desktop.core.vision.embedding import ColorTextureEmbedder, OnnxEmbedder
from reid_desktop.core.vision.model_catalogue import RECOMMENDED
from reid_desktop.core.vision.models import default_reid_model_path, load_embedder
from reid_desktop.core.vision.ort_runner import candidate_providers
from tests.conftest import shared_path
from trainer.default_model import build_default_reid_model, default_embedder
from trainer.model import WeightsUnavailable


def market_gallery() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    folder = shared_path("data/reid/market_4ids/gallery")
    files = sorted(folder.glob("*.jpg"))
    ids = np.array([f.name.split("_")[0] for f in files])
    cams = np.array([f.name.split("_")[1][:2] for f in files])
    return [cv2.imread(str(f)) for f in files], ids, cams


def cross_camera_stats(embeddings: np.ndarray, ids: np.ndarray, cams: np.ndarray) -> tuple[float, float, float]:
    """Mean same-person cross-camera similarity, mean different-person similarity, cross-camera rank-1."""
    sims = embeddings @ embeddings.T
    same = (ids[:, None] == ids[None, :]) & (cams[:, None] != cams[None, :])
    different = ids[:, None] != ids[None, :]
    other_cam = np.where(cams[None, :] != cams[:, None], sims, -np.inf)
    rank1 = float(np.mean(ids[np.argmax(other_cam, axis=1)] == ids))
    return float(sims[same].mean()), float(sims[different].mean()), rank1


def test_onnx_reid_model_separates_people_across_cameras(osnet_path: Path) -> None:
    crops, ids, cams = market_gallery()
    embedder = OnnxEmbedder(osnet_path)
    assert embedder.provider == "CPUExecutionProvider"  # no GPU on this machine: reported as such
    assert (embedder.info.input_height, embedder.info.input_width, embedder.dim) == (256, 128, 512)
    emb = embedder.embed(crops)
    assert emb.shape == (len(crops), 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    same, different, rank1 = cross_camera_stats(emb, ids, cams)
    assert same > different + 0.15
    assert rank1 >= 0.9


def test_queries_find_their_person_in_the_gallery(osnet_path: Path) -> None:
    gallery_dir = shared_path("data/reid/market_4ids/gallery")
    query_files = sorted(shared_path("data/reid/market_4ids/query").glob("*.jpg"))
    gallery_files = sorted(gallery_dir.glob("*.jpg"))
    embedder = OnnxEmbedder(osnet_path)
    g = embedder.embed([cv2.imread(str(f)) for f in gallery_files])
    hits = 0
    scored = 0
    for qf in query_files:
        pid, cam = qf.name.split("_")[0], qf.name.split("_")[1][:2]
        if pid not in {f.name.split("_")[0] for f in gallery_files}:
            continue
        q = embedder.embed([cv2.imread(str(qf))])[0]
        # standard protocol: the query's own file and same-camera shots of the same person do not count
        keep = [i for i, f in enumerate(gallery_files)
                if f.name != qf.name and not (f.name.startswith(pid) and f.name.split("_")[1][:2] == cam)]
        best = keep[int(np.argmax(g[keep] @ q))]
        hits += gallery_files[best].name.startswith(pid)
        scored += 1
    assert scored >= 3 and hits == scored


def test_colour_fallback_still_separates_people_on_average() -> None:
    crops, ids, cams = market_gallery()
    embedder = ColorTextureEmbedder()
    emb = embedder.embed(crops)
    assert emb.shape == (len(crops), embedder.dim)
    same, different, rank1 = cross_camera_stats(emb, ids, cams)
    assert same > embedder.match_threshold > different
    assert rank1 >= 0.8


def test_batched_and_single_embeddings_agree(osnet_path: Path, demo_frames) -> None:
    embedder = OnnxEmbedder(osnet_path, batch_size=4)
    crops = [demo_frames[0][140:230, 480:525], demo_frames[0][250:360, 610:655], demo_frames[0][180:270, 215:255]]
    together = embedder.embed(crops)
    alone = np.vstack([embedder.embed([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_not_onnx_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("definitely not protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        OnnxEmbedder(fake)
    with pytest.raises(ModelError, match="not found"):
        OnnxEmbedder(tmp_path / "missing.onnx")


def _tiny_onnx(path: Path, in_shape: list, out_shape: list) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    node = helper.make_node("Identity", ["x"], ["y"])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_wrong_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"expected \[N,3,H,W\]"):
        OnnxEmbedder(_tiny_onnx(tmp_path / "flat.onnx", ["n", 10], ["n", 10]))
    with pytest.raises(ModelError, match=r"expected \[N,D\]"):
        OnnxEmbedder(_tiny_onnx(tmp_path / "map.onnx", ["n", 3, 8, 4], ["n", 3, 8, 4]))


def test_provider_choice_falls_back_to_cpu_without_a_driver() -> None:
    assert candidate_providers("auto")[-1] == "CPUExecutionProvider"
    assert candidate_providers("cpu") == ["CPUExecutionProvider"]


def test_gpu_providers_are_offered_only_when_their_library_is_installed(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU desktop bundle leaves ONNX Runtime's CUDA provider library out; don't offer CUDA there."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    assert candidate_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    bundle_like = tmp_path / "onnxruntime"
    (bundle_like / "capi").mkdir(parents=True)
    (bundle_like / "capi" / "libonnxruntime_providers_shared.so").touch()
    monkeypatch.setattr(ort, "__file__", str(bundle_like / "__init__.py"))
    assert candidate_providers("cuda") == ["CPUExecutionProvider"]
    assert candidate_providers("tensorrt") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("allow_download", [False, True])
def test_without_a_model_the_default_falls_back_loudly_and_never_fetches_imagenet(allow_download: bool) -> None:
    """No random weights, and no ImageNet network quietly downloaded: the warning says how to get a re-id model."""
    embedder, warnings = default_embedder(ReidConfig(allow_download=allow_download))
    assert isinstance(embedder, ColorTextureEmbedder) and embedder.is_fallback
    assert len(warnings) == 1 and "NO NEURAL RE-ID MODEL" in warnings[0]
    assert f"reid-desktop models download {RECOMMENDED}" in warnings[0]
    _, core_only = load_embedder(ReidConfig(allow_download=False))  # the core alone never builds it
    assert "no re-id model is installed" in core_only[0]
    assert not default_reid_model_path().exists()


@pytest.mark.slow
def test_default_resnet50_built_from_a_pth_file(tmp_path: Path) -> None:
    import torchvision

    weights = tmp_path / "resnet50_imagenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)  # stands in for ImageNet's
    embedder, warnings = default_embedder(ReidConfig(weights=str(weights), allow_download=False))
    assert warnings == []
    assert isinstance(embedder, OnnxEmbedder) and not embedder.is_fallback
    info = embedder.info
    assert (info.input_height, info.input_width, info.embedding_dim) == (256, 128, 2048)
    assert info.architecture == "resnet50-gap" and info.weights == "imagenet (resnet50_imagenet.pth)"
    assert embedder.path == default_reid_model_path()
    # the second start reuses the exported file
    again, _ = load_embedder(ReidConfig(allow_download=False))
    assert isinstance(again, OnnxEmbedder) and again.key == embedder.key


def test_broken_pth_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(ModelError, match="does not fit ResNet-50"):
        default_embedder(ReidConfig(weights=str(bad), allow_download=False))
    bad.write_text("nope")
    with pytest.raises(WeightsUnavailable, match="cannot read weights"):
        build_default_reid_model(str(bad), allow_download=False)
