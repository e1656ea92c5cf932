"""ONNX export of re-id networks, with the metadata the app reads and a parity check."""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reid_desktop.core.vision.model_info import GENERIC_MATCH_THRESHOLD, PREFIX, ReidModelInfo
from trainer.config import TrainConfig
from trainer.evaluate_onnx import evaluate_onnx
from trainer.train import load_trained

log = logging.getLogger(__name__)


def export_onnx(model: nn.Module, info: ReidModelInfo, output: Path, opset: int = 17) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis and ``info`` in its metadata."""

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.zeros(2, 3, info.input_height, info.input_width)
    tmp = output.with_suffix(".onnx.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["embeddings"],
                          dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    if not info.created:
        info = replace(info, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    write_metadata(tmp, info)
    tmp.replace(output)  # never leave a half-written model where the app looks for one
    return output


def write_metadata(path: Path, info: ReidModelInfo) -> None:
    """Put ``info`` into the ONNX file's metadata, in place of what our keys said before."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def parity(model: nn.Module, onnx_path: Path, batch: int = 4, seed: int = 0) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on random input."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    h, w = int(shape[2]), int(shape[3])
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        expected = model.eval().cpu()(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(expected - got).max())


@dataclass(frozen=True)
class ExportedModel:
    path: Path
    variant: str  # fp32 | fp16 | int8
    max_abs_diff: float  # against PyTorch on random input (fp32) or against the fp32 ONNX (others)
    size_mb: float
    metrics: dict[str, float]  # Rank-k/mAP measured through the app's own ONNX embedder; empty if not evaluated


def info_for_checkpoint(checkpoint: dict[str, Any], metrics: dict[str, Any]) -> ReidModelInfo:
    """The metadata the app reads: geometry, normalisation, provenance, metrics, hyper-parameters."""
    cfg = TrainConfig.from_dict(checkpoint["config"])
    headline: dict[str, float] = {k: float(metrics[k]) for k in ("rank1", "rank5", "rank10", "mAP") if k in metrics}
    threshold = float(metrics.get("match_threshold") or GENERIC_MATCH_THRESHOLD)
    keys = ("epochs", "batch_size", "lr", "optimizer", "schedule", "milestones", "gamma", "weight_decay",
            "embedding_dim", "last_stride", "bnneck", "ce_weight", "label_smoothing", "triplet_weight",
            "arcface_weight", "freeze_stages", "freeze_epochs", "seed")
    return ReidModelInfo(
        input_height=cfg.height, input_width=cfg.width, embedding_dim=cfg.embedding_dim,
        architecture="resnet50-bnneck", weights=f"{checkpoint['weights_source']}, trained on {checkpoint['dataset']}",
        match_threshold=threshold, dataset=str(checkpoint["dataset"]), metrics=headline,
        hyperparameters={k: getattr(cfg, k) for k in keys} | {"epochs_done": checkpoint["epoch"]})


def export_checkpoint(checkpoint_path: Path, output: Path, *, fp16: bool = False, int8: bool = False,
                      dataset: Any = None) -> list[ExportedModel]:
    """Export a training checkpoint to ONNX (plus optional FP16/INT8 variants), check parity and, given a
    data set, measure each variant's accuracy the way the app will run it."""
    model, checkpoint = load_trained(Path(checkpoint_path))
    best = checkpoint.get("best") or {}
    info = info_for_checkpoint(checkpoint, best)
    output = Path(output)
    export_onnx(model, info, output)
    results = [ExportedModel(output, "fp32", parity(model, output), output.stat().st_size / 1e6,
                             _variant_metrics(output, dataset))]
    reference = output
    if fp16:
        path = output.with_name(output.stem + "-fp16.onnx")
        _to_fp16(reference, path)
        results.append(ExportedModel(path, "fp16", onnx_parity(reference, path), path.stat().st_size / 1e6,
                                     _variant_metrics(path, dataset)))
    if int8:
        path = output.with_name(output.stem + "-int8.onnx")
        _to_int8(reference, path)
        results.append(ExportedModel(path, "int8", onnx_parity(reference, path), path.stat().st_size / 1e6,
                                     _variant_metrics(path, dataset)))
    return results


def _to_fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(source))
    converted = convert_float_to_float16(proto, keep_io_types=True)  # float32 in and out: the app is unchanged
    onnx.save(converted, str(target))


def _to_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    import onnx

    proto, reference = onnx.load(str(target)), onnx.load(str(source))
    del proto.metadata_props[:]
    proto.metadata_props.extend(reference.metadata_props)  # quantisation drops our metadata: put it back
    onnx.save(proto, str(target))


def onnx_parity(reference: Path, candidate: Path, batch: int = 4, seed: int = 0) -> float:
    """Largest absolute difference between two ONNX models' outputs on the same random input."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, candidate)]
    shape = sessions[0].get_inputs()[0].shape
    x = np.random.default_rng(seed).standard_normal((batch, 3, int(shape[2]), int(shape[3]))).astype(np.float32)
    a, b = (s.run(None, {s.get_inputs()[0].name: x})[0] for s in sessions)
    return float(np.abs(a - b).max())


def _variant_metrics(path: Path, dataset: Any) -> dict[str, float]:
    if dataset is None:
        return {}
    return evaluate_onnx(path, dataset).to_dict()
