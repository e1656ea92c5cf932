"""ONNX Runtime calls for our models: numpy on the CPU, pictures uploaded as bytes on an NVIDIA GPU.

On the CPU a model gets the float tensor its preprocessing made (``runner(batch)``). On a GPU that is the
wrong way round: a float picture is four times the bytes of the picture, and ``session.run`` copies it from
pageable memory. There :meth:`OrtRunner.run_images` takes the resized 8-bit pictures, puts them in a
page-locked buffer, copies that to the GPU by DMA, converts and normalises them there (channel order, mean,
scale) and runs the model on the result through IO binding, into an output buffer kept on the GPU; the
caller's postprocessing (the detector's NMS) can run there too. Measured on an H200 (bench/RESULTS.md): a
page-locked copy of the *float* tensor is slower than ``session.run`` (the extra host copy costs more than
the DMA saves), so only the bytes travel.

Buffers are kept per picture shape, grow by doubling the batch they hold, and at most :data:`MAX_SHAPES`
shapes keep theirs (least recently used goes): memory stays bounded whatever cameras come and go.
The buffers are PyTorch's (its CUDA build is a dependency anyway and shares the process's CUDA context).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# Sessions on these providers are fed 8-bit pictures normalised by torch on their device (run_images).
IMAGE_UPLOAD_PROVIDERS: tuple[str, ...] = GPU_PROVIDERS
MAX_SHAPES = 8  # picture shapes whose buffers are kept
# cuDNN's exhaustive search benchmarks every convolution again for each new input shape (each batch size,
# each motion-gate crop): seconds per shape for ResNet-50. The heuristic choice costs nothing and is as fast
# once running (onnxruntime issues #709, #19838; PaddleX #5057 measured 326x faster shape changes).
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

log = logging.getLogger(__name__)


_PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            found = ctypes.util.find_library(name.removeprefix("lib").split(".so")[0])
            if found:
                try:
                    ctypes.CDLL(found)
                    return True
                except OSError:
                    pass
    return False


def _provider_library_present(provider: str) -> bool:
    """Whether ONNX Runtime's shared library for ``provider`` is installed.

    ``get_available_providers()`` lists what the package was compiled with; the CPU build of the
    desktop bundle leaves the CUDA and TensorRT provider libraries out, so look for the file too.
    """
    import onnxruntime as ort

    stems = {"CUDAExecutionProvider": "providers_cuda", "TensorrtExecutionProvider": "providers_tensorrt"}
    if provider not in stems:
        return True
    capi = Path(ort.__file__).parent / "capi"
    return any(capi.glob(f"*onnxruntime_{stems[provider]}.*"))


def preload_gpu_libraries() -> None:
    """Load the CUDA/cuDNN libraries that ONNX Runtime's CUDA provider needs from the nvidia packages.

    torch loads them when it is imported first; a session built before that (``models list``, or a
    frozen bundle, whose libraries sit in ``_internal/nvidia``) would otherwise not find them.
    """
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # no nvidia packages: the provider then reports what it misses itself
        log.debug("ONNX Runtime could not preload CUDA libraries: %s", exc)


def candidate_providers(preference: str = "auto") -> list[str]:
    """Providers to try, best first, limited to those whose libraries are actually loadable.

    ``onnxruntime-gpu`` lists CUDA and TensorRT even on machines without a driver; trying them there
    only produces alarming logs, so the driver and TensorRT libraries are checked first.
    """
    import onnxruntime as ort

    available = {name for name in ort.get_available_providers() if _provider_library_present(name)}
    has_driver = _loadable("libcuda.so.1", "nvcuda.dll")
    wanted: list[str]
    if preference == "auto":
        wanted = []
        if has_driver and _loadable("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer.dll", "nvinfer_10.dll"):
            wanted.append(_PROVIDER_NAMES["tensorrt"])
        if has_driver:
            wanted.append(_PROVIDER_NAMES["cuda"])
    elif preference in ("tensorrt", "cuda"):
        wanted = [_PROVIDER_NAMES[preference]]
        if preference == "tensorrt":
            wanted.append(_PROVIDER_NAMES["cuda"])
    else:
        wanted = []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def provider_options(providers: Sequence[str], half: bool = False) -> list[Any]:
    """``providers`` with the options we run them with (TensorRT in half precision when ``half``)."""
    chosen: list[Any] = []
    for name in providers:
        if name == "CUDAExecutionProvider":
            chosen.append((name, dict(CUDA_OPTIONS)))
        elif name == "TensorrtExecutionProvider" and half:
            chosen.append((name, {"trt_fp16_enable": True}))
        else:
            chosen.append(name)
    return chosen


@dataclass
class _Buffers:
    """Buffers for one picture shape, ``capacity`` pictures deep (torch tensors)."""

    capacity: int
    pictures: Any  # 8-bit N x H x W x C, page-locked on a GPU
    output: Any = None  # on the device; allocated once the output's shape is known (after the first call)


class OrtRunner:
    """One session's inference call; thread-safe (one call at a time uses the buffers)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        first_input, first_output = session.get_inputs()[0], session.get_outputs()[0]
        self._input, self._output = first_input.name, first_output.name
        self._input_type = _NUMPY_TYPES.get(first_input.type, np.float32)
        self._output_type = _NUMPY_TYPES.get(first_output.type, np.float32)
        self.provider = session.get_providers()[0]
        self.on_gpu = self.provider in GPU_PROVIDERS
        self.device = "cuda" if self.on_gpu else "cpu"
        self.uploads_images = self.provider in IMAGE_UPLOAD_PROVIDERS
        self._buffers: OrderedDict[tuple[int, ...], _Buffers] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def shapes_held(self) -> int:
        """Picture shapes whose buffers are kept (at most :data:`MAX_SHAPES`)."""
        return len(self._buffers)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The first output for a preprocessed N x C x H x W batch, numpy in and out."""
        return self.session.run([self._output], {self._input: np.ascontiguousarray(batch, dtype=self._input_type)})[0]

    def run_images(self, pictures: np.ndarray, mean: Sequence[float], std: Sequence[float], rgb: bool) -> Any:
        """The first output, a torch tensor on the runner's device, for N x H x W x 3 8-bit BGR ``pictures``
        that the model takes as N x 3 x H x W ``(picture - mean) / std`` (RGB if ``rgb``)."""
        import torch

        with self._lock:
            buffers = self._buffers_for(pictures.shape, torch)
            count = len(pictures)
            staged = buffers.pictures[:count]
            staged.numpy()[...] = pictures
            device = staged.to(self.device, non_blocking=True)
            if rgb:
                device = device.flip(-1)
            mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device)
            std_t = torch.tensor(std, dtype=torch.float32, device=self.device)
            batch = ((device.to(torch.float32) - mean_t) / std_t).permute(0, 3, 1, 2).contiguous()
            if self._input_type is np.float16:
                batch = batch.half()
            if self.on_gpu:
                torch.cuda.current_stream().synchronize()  # ONNX Runtime computes on its own stream
            return self._bound_run(batch, buffers, torch)

    def _bound_run(self, batch: Any, buffers: _Buffers, torch: Any) -> Any:
        binding = self.session.io_binding()
        binding.bind_input(self._input, self.device, 0, self._input_type, list(batch.shape), batch.data_ptr())
        if buffers.output is None:  # the output's shape is learnt from the first call
            binding.bind_output(self._output, self.device, 0)
            self.session.run_with_iobinding(binding)
            first = torch.from_numpy(binding.copy_outputs_to_cpu()[0]).to(self.device)
            buffers.output = torch.empty((buffers.capacity, *first.shape[1:]), dtype=first.dtype, device=self.device)
            return first
        output = buffers.output[:len(batch)]
        binding.bind_output(self._output, self.device, 0, self._output_type, list(output.shape), output.data_ptr())
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return output.clone()  # the buffer is the next call's

    def _buffers_for(self, shape: tuple[int, ...], torch: Any) -> _Buffers:
        """This picture shape's buffers, deep enough for the batch; the least recently used shape goes first."""
        key = tuple(shape[1:])
        buffers = self._buffers.pop(key, None)
        if buffers is None or buffers.capacity < shape[0]:
            capacity = max(shape[0], 2 * buffers.capacity if buffers else 1)
            buffers = _Buffers(capacity, torch.empty((capacity, *key), dtype=torch.uint8, pin_memory=self.on_gpu))
        self._buffers[key] = buffers
        while len(self._buffers) > MAX_SHAPES:
            self._buffers.popitem(last=False)
        return buffers


def save_half_precision(source: Path, target: Path) -> None:
    """``source`` with half-precision weights and arithmetic; input and output stay full precision, so the
    callers' arrays and the embeddings' space do not change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))
