"""ONNX export of re-id networks, with the metadata the app reads and a parity check."""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid_desktop.core.model_info import ReidModelInfo

log = logging.getLogger(__name__)


def export_onnx(model: nn.Module, info: ReidModelInfo, output: Path, opset: int = 17) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis and ``info`` in its metadata."""
    import onnx

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
    proto = onnx.load(str(tmp))
    if not info.created:
        info = replace(info, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    tmp.replace(output)  # never leave a half-written model where the app looks for one
    return output


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
