"""Where and how inference runs: devices, compute precision, CPU threads, memory formats and
free memory. No tiling here (:mod:`formnet_cli.inference.engine`); nothing here knows models
beyond their weights' layout.

``auto`` precision is float16 on CUDA for models that support half precision, float32
elsewhere; a half precision the CPU would only emulate is refused (see
:func:`check_precision`). Convolutions run channels-last (NHWC) on the CPU and CUDA, where
they are faster (:func:`fast_memory_format`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Literal

import psutil
import torch
from torch import nn

from formnet_cli.errors import InvalidOptionError

__all__ = ["PRECISIONS", "Precision", "check_precision", "cpu_has_fast", "cpu_threads",
           "fast_memory_format", "free_memory_bytes", "is_out_of_memory", "memory_format_of",
           "network_on", "prepare_for_inference", "release_cached_memory", "resolve_device",
           "resolve_precision", "to_device"]

Precision = Literal["auto", "fp32", "fp16", "bf16"]

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

_OUT_OF_MEMORY_MARKERS = ("out of memory", "can't allocate memory")


def resolve_device(spec: str | torch.device, cpu_hint: str = "--device cpu") -> torch.device:
    """The torch device for ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    ``auto`` is CUDA if available, else MPS if available, else the CPU. An unknown or
    unavailable device raises :class:`InvalidOptionError`, whose message suggests ``cpu_hint``.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return resolve_device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InvalidOptionError(
            f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidOptionError(f"device {spec!r} is not available: this machine has no "
                                     f"usable CUDA GPU (use {cpu_hint})")
        index = torch.cuda.current_device() if device.index is None else device.index
        count = torch.cuda.device_count()
        if index >= count:
            raise InvalidOptionError(f"device {spec!r} is not available: this machine has "
                                     f"{count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise InvalidOptionError(f"device {spec!r} is not available on this machine "
                                     f"(use {cpu_hint})")
        return torch.device("mps")
    raise InvalidOptionError(f"unsupported device {spec!r}: use auto, cpu, cuda, cuda:N or mps")


def resolve_precision(spec: str, device: torch.device, supports_half: bool) -> torch.dtype:
    """The compute dtype for ``auto``, ``fp32``, ``fp16`` or ``bf16`` on ``device``, for a model
    that ``supports_half`` precision or not (its :class:`~formnet_cli.models.ModelDescriptor` says).

    ``auto`` is float16 on CUDA when the model supports half precision, float32 otherwise.
    Asking for half precision on a model that does not support it is an error, and so is one
    the device does not compute in (:func:`check_precision`).
    """
    dtype = check_precision(spec, device)
    text = str(spec).strip().lower()
    if dtype is None:
        return torch.float16 if device.type == "cuda" and supports_half else torch.float32
    if dtype != torch.float32 and not supports_half:
        raise InvalidOptionError(f"this model does not support {text}; use --precision fp32")
    return dtype


def check_precision(spec: str, device: torch.device) -> torch.dtype | None:
    """The dtype ``spec`` names (``None`` for ``auto``); :class:`InvalidOptionError` for an
    unknown name, bf16 on a GPU without it, or a half precision the CPU would only emulate."""
    text = str(spec).strip().lower()
    if text == "auto":
        return None
    if text not in PRECISIONS:
        raise InvalidOptionError(
            f"unknown precision {spec!r}: use auto, {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[text]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidOptionError("this GPU does not support bf16; use --precision fp16")
    if device.type == "cpu" and dtype != torch.float32 and not cpu_has_fast(dtype):
        other = "bf16 or fp32" if dtype == torch.float16 and cpu_has_fast(torch.bfloat16) else "fp32"
        raise InvalidOptionError(f"this CPU has no {text} arithmetic (emulated, it would be far "
                                 f"slower than fp32); use --precision {other}")
    return dtype


def cpu_has_fast(dtype: torch.dtype) -> bool:
    """Whether oneDNN computes in ``dtype`` on this CPU (bf16: AVX-512 or AMX; fp16: AVX512-FP16
    or AMX-FP16); elsewhere PyTorch emulates it, measured 13x slower than fp32 for fp16."""
    checks = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
    try:
        return bool(getattr(torch.ops.mkldnn, checks[dtype])())
    except (AttributeError, RuntimeError):  # a build without oneDNN: cannot tell, let it run
        return True


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (``None``: torch's own), then restore them."""
    if count is not None and count < 1:
        raise InvalidOptionError(f"threads must be >= 1, got {count}")
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fast_memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last (NHWC) where convolutions run faster in it: on the CPU (oneDNN; block
    ``memory-format`` of docs/benchmarks.md, ``benchmarks/memory_format.py``) and on CUDA."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A ``(B, C, H, W)`` batch on ``device``, in the device's fastest memory format."""
    return batch.to(device).contiguous(memory_format=fast_memory_format(device))


@contextmanager
def network_on(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model on ``device`` in eval mode and in the device's fastest memory format (a copy
    if it lives elsewhere), then as it was."""
    first = next(chain(model.parameters(), model.buffers()), None)
    on_device = first is None or (first.device.type == device.type
                                  and (first.device.index or 0) == (device.index or 0))
    network = model if on_device else copy.deepcopy(model).to(device)
    previous_format = memory_format_of(network)
    # In place (the weights keep their values), outside any inference mode of the caller's, so
    # that the caller's model stays trainable.
    with torch.inference_mode(False):
        network.to(memory_format=fast_memory_format(device))
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)
        if network is model and previous_format != fast_memory_format(device):
            with torch.inference_mode(False):
                network.to(memory_format=previous_format)


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """Channels-last if the model's convolution weights are stored so, else contiguous."""
    for weight in model.parameters():  # the first whose layout tells (a 1 x 1 kernel's does not)
        if weight.ndim == 4 and weight.is_contiguous() != weight.is_contiguous(memory_format=torch.channels_last):
            return torch.contiguous_format if weight.is_contiguous() else torch.channels_last
    return torch.contiguous_format


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Store the model's weights in ``device``'s fastest memory format once, so that runs on it
    need not convert them (and back) each time; their values are unchanged."""
    return model.to(memory_format=fast_memory_format(device))


def free_memory_bytes(device: torch.device) -> int:
    """Bytes free for a run on ``device``: free plus cached-but-unused GPU memory on CUDA,
    available host memory elsewhere."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    return int(psutil.virtual_memory().available)


def is_out_of_memory(error: RuntimeError) -> bool:
    """Whether ``error`` is the device (or the host) running out of memory."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    message = str(error).lower()
    return any(marker in message for marker in _OUT_OF_MEMORY_MARKERS)


def release_cached_memory(device: torch.device) -> None:
    """Give back what the device's caching allocator holds (CUDA, MPS), before a smaller retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
