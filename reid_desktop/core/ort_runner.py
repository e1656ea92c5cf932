"""One ONNX Runtime model's inference call; on an NVIDIA GPU with IO binding and page-locked transfers.

``session.run`` with numpy arrays copies every input to the GPU from pageable memory (the driver stages
it through its own page-locked buffer first) and allocates every output anew. On a GPU the runner keeps,
per input shape, a page-locked host buffer and a device buffer for the input and the output, binds them to
the session (IO binding), and moves the data by DMA. Buffers grow by doubling the batch they hold and at
most :data:`MAX_SHAPES` input shapes keep theirs (least recently used goes), so memory stays bounded however
many cameras or batch sizes come by. The buffers are PyTorch's (the CUDA build is a dependency anyway and
shares the process's CUDA context with ONNX Runtime). On the CPU it is plain ``session.run``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
MAX_SHAPES = 8  # input shapes (batch aside) whose transfer buffers are kept
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass
class _Buffers:
    """Transfer buffers for one input shape, ``capacity`` pictures deep (torch tensors)."""

    capacity: int
    host_in: Any
    device_in: Any
    host_out: Any = None  # allocated once the output's shape is known (after the first call)
    device_out: Any = None


class OrtRunner:
    """``runner(batch) -> first output``; thread-safe (one call at a time uses the buffers)."""

    def __init__(self, session: Any, pinned: bool = True) -> None:
        self._session = session
        first_input, first_output = session.get_inputs()[0], session.get_outputs()[0]
        self._input, self._output = first_input.name, first_output.name
        self._input_type = _NUMPY_TYPES.get(first_input.type, np.float32)
        self._output_type = _NUMPY_TYPES.get(first_output.type, np.float32)
        self.provider = session.get_providers()[0]
        self.on_gpu = self.provider in GPU_PROVIDERS
        self.device = "cuda:0" if self.on_gpu else "cpu"
        self.pinned = pinned and self.on_gpu
        self._buffers: OrderedDict[tuple[int, ...], _Buffers] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def shapes_held(self) -> int:
        """Input shapes whose buffers are kept (at most :data:`MAX_SHAPES`)."""
        return len(self._buffers)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self._input_type)
        if not self.pinned:
            return self._session.run([self._output], {self._input: batch})[0]
        with self._lock:
            return self._run_bound(batch)

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        import torch

        count = len(batch)
        buffers = self._buffers_for(batch.shape, torch)
        buffers.host_in[:count].numpy()[...] = batch
        device_in = buffers.device_in[:count]
        device_in.copy_(buffers.host_in[:count], non_blocking=True)
        torch.cuda.current_stream().synchronize()  # ONNX Runtime computes on its own stream
        binding = self._session.io_binding()
        binding.bind_input(self._input, "cuda", 0, self._input_type, list(device_in.shape), device_in.data_ptr())
        if buffers.device_out is None:  # the output's shape is learnt from the first call
            binding.bind_output(self._output, "cuda", 0)
            self._session.run_with_iobinding(binding)
            result = binding.copy_outputs_to_cpu()[0]
            tail = result.shape[1:]
            dtype = _torch_dtype(self._output_type, torch)
            buffers.device_out = torch.empty((buffers.capacity, *tail), dtype=dtype, device="cuda")
            buffers.host_out = torch.empty((buffers.capacity, *tail), dtype=dtype, pin_memory=True)
            return result
        device_out = buffers.device_out[:count]
        binding.bind_output(self._output, "cuda", 0, self._output_type, list(device_out.shape), device_out.data_ptr())
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        host_out = buffers.host_out[:count]
        host_out.copy_(device_out, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return host_out.numpy().copy()  # the buffer is reused by the next call

    def _buffers_for(self, shape: tuple[int, ...], torch: Any) -> _Buffers:
        """This input shape's buffers, deep enough for the batch; the least recently used shape goes first."""
        key = tuple(shape[1:])
        buffers = self._buffers.pop(key, None)
        if buffers is None or buffers.capacity < shape[0]:
            capacity = max(shape[0], 2 * buffers.capacity if buffers else 1)
            dtype = _torch_dtype(self._input_type, torch)
            buffers = _Buffers(capacity, torch.empty((capacity, *key), dtype=dtype, pin_memory=True),
                               torch.empty((capacity, *key), dtype=dtype, device="cuda"))
        self._buffers[key] = buffers
        while len(self._buffers) > MAX_SHAPES:
            self._buffers.popitem(last=False)
        return buffers


def _torch_dtype(numpy_type: type, torch: Any) -> Any:
    return torch.float16 if numpy_type is np.float16 else torch.float32


def save_half_precision(source: Path, target: Path) -> None:
    """``source`` with half-precision weights and arithmetic; input and output stay full precision, so the
    callers' arrays and the embeddings' space do not change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))
