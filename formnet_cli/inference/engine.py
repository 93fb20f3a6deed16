"""Torch inference: restore one image tensor with a model, exactly as one untiled pass would.

:func:`restore_tensor` is a pure function of a model and a ``(C, H, W)`` tensor in [0, 1];
it does no file I/O. The tiling (padding, exact windows, blending, self-ensemble, retries on
running out of memory) is :mod:`formnet_cli.inference.tiling`'s, shared with the ONNX runtimes;
this module adds what is torch's: the device, the precision, the memory format and the probe
that sizes ``tile="auto"``. The whole image stays in host memory; only one batch of tiles is on
the device at a time, and the result is accumulated on the host in float32.

Precision
---------
Reduced precision runs under :func:`torch.autocast`: the caller's model keeps its float32
weights (it is never converted or copied for precision), convolutions run in half precision and
the residual sums in float32. A tile whose output contains NaN or infinity is run again in
float32. ``auto`` picks float16 on CUDA for models with ``supports_half``: its 10-bit mantissa
keeps errors well below one 8-bit grey level, where bfloat16's 7 bits do not; float16's only
weakness, overflow, is exactly what the float32 retry catches (measured on an H100 with the
default model: fp16 differs from fp32 by at most 7.7e-4, bf16 by 6.4e-3). CPU and MPS use
float32; on a CPU with bf16 arithmetic (AVX-512, AMX) ``bf16`` is about twice as fast at a cost of
~0.01 dB (``benchmarks/precision.py``), and a half precision the CPU would only emulate is
refused. On CUDA, PyTorch's default TF32 convolutions make even fp32 tiles agree only to ~3e-4.

Memory
------
``tile="auto"`` sizes windows from free device memory (``torch.cuda.mem_get_info`` on CUDA,
available host memory on CPU and MPS) and the activation size measured on a small probe tile.

The output is not clamped to [0, 1]: the caller quantises (and clamps) when it converts.

>>> from formnet_cli.config import ModelConfig, NetworkConfig
>>> from formnet_cli.models import FormResNet
>>> model = FormResNet(ModelConfig(residual=NetworkConfig(widths=(8, 16), blocks_per_level=1)))
>>> image = torch.rand(1, 77, 131)
>>> tiled = restore_tensor(model, image, 25 / 255, tile=72, tile_overlap=8)
>>> untiled = restore_tensor(model, image, 25 / 255, tile=None)
>>> tiled.shape, bool((tiled - untiled).abs().max() < 1e-4)
(torch.Size([1, 77, 131]), True)
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Literal

import numpy as np
import psutil
import torch
from torch import nn

from formnet_cli.errors import InvalidOptionError
from formnet_cli.inference import tiling
from formnet_cli.inference.tiling import (  # noqa: F401  (re-exported: the engine's tiling names)
    DEFAULT_TILE_OVERLAP, ENSEMBLE_SIZES, ENSEMBLE_VIEWS, AxisSpan, ProgressCallback, TileGeometry,
    TileSpec, dihedral, pass_progress, plan_axis, undo_dihedral)

Precision = Literal["auto", "fp32", "fp16", "bf16"]

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

_PROBE_SIDE = 64
_OUT_OF_MEMORY_MARKERS = ("out of memory", "can't allocate memory")


# -- options ---------------------------------------------------------------------------------
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


def resolve_precision(spec: str, device: torch.device, model: nn.Module) -> torch.dtype:
    """The compute dtype for ``auto``, ``fp32``, ``fp16`` or ``bf16`` on ``device``.

    ``auto`` is float16 on CUDA when the model ``supports_half``, float32 otherwise.
    Asking for half precision on a model that does not support it is an error, and so is one
    the device does not compute in (:func:`check_precision`).
    """
    dtype = check_precision(spec, device)
    text = str(spec).strip().lower()
    supports_half = bool(getattr(model, "supports_half", False))
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


# -- restoration -----------------------------------------------------------------------------
def restore_tensor(
    model: nn.Module,
    image: torch.Tensor,
    level: float | torch.Tensor | np.ndarray,
    *,
    tile: TileSpec = "auto",
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    ensemble: int = 1,
) -> torch.Tensor:
    """Restore ``image`` with ``model(x, level)``, tile by tile (:func:`tiling.restore_array`).

    Args:
        model: a restorer ``model(x, level)`` with ``size_multiple``, ``receptive_radius`` and
            ``supports_half`` (a :class:`~formnet_cli.models.FormResNet`). A model that is not
            already on ``device`` is copied there for this call; the caller's model is left as
            it was (dtype, device and train/eval mode).
        image: ``(C, H, W)`` float32 in [0, 1], on the CPU; any size, including 1 x 1.
        level: the normalised level, a number or a scalar tensor, or a per-pixel ``(1, H, W)``
            map (tensor or array), which is padded and tiled exactly like the image.
        tile: window side in pixels as seen by the model (context margin included), rounded
            down to ``size_multiple`` and raised to the smallest size that can be exact;
            ``None`` for one untiled pass; ``"auto"`` to size it from free memory.
        tile_overlap: pixels over which neighbouring tiles are blended
            (default :data:`DEFAULT_TILE_OVERLAP`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`resolve_device`).
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (see :func:`resolve_precision`).
        batch_size: tiles per forward pass.
        progress: called as ``progress(done_tiles, total_tiles)`` after each batch; after an
            out-of-memory retry the count starts again with the new total.
        ensemble: geometric self-ensemble, one of :data:`ENSEMBLE_SIZES`: the mean of the
            restorations of that many flipped/rotated copies of the image (and level map),
            each turned back (``ensemble`` times the time; 1: one plain pass).

    Returns:
        ``(C, H, W)`` float32 on the CPU, not clamped, without autograd history.
    """
    image = _check_image(image)
    device = resolve_device(device)
    dtype = resolve_precision(precision, device, model)
    with _network_on(model, device) as network, torch.inference_mode():
        restored = tiling.restore_array(
            TorchNetwork(model, network, device, dtype), image.numpy(), _level_array(level),
            tile=tile, tile_overlap=tile_overlap, batch_size=batch_size, progress=progress,
            ensemble=ensemble)
    return torch.from_numpy(restored)


class TorchNetwork:
    """A torch model as the tiling's :class:`~formnet_cli.inference.tiling.TileNetwork`:
    ``network`` (the caller's ``model``, or its copy on ``device``) run at ``dtype``."""

    def __init__(self, model: nn.Module, network: nn.Module, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.model, self.network, self.device, self.dtype = model, network, device, dtype
        self.size_multiple = int(getattr(model, "size_multiple", 1))
        self.receptive_radius = int(getattr(model, "receptive_radius", 0))

    @classmethod
    def for_cpu(cls, model: nn.Module) -> TorchNetwork:
        """``model`` itself, on the CPU in float32 (where it already is)."""
        return cls(model, model, torch.device("cpu"), torch.float32)

    def run(self, inputs: np.ndarray, levels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return _forward(self.network, torch.from_numpy(inputs), torch.from_numpy(levels),
                            self.device, self.dtype).numpy()

    def bytes_per_pixel(self, channels: int) -> float:
        """Activation bytes per input pixel of one run (measured once per model)."""
        geometry = tiling.TileGeometry.for_model(self.model, 0)
        with torch.inference_mode():
            return _activation_bytes_per_pixel(self.model, self.network, channels, geometry,
                                               self.device, self.dtype)

    def window_side(self, channels: int, batch_size: int) -> int:
        return tiling.auto_window_side(self.bytes_per_pixel(channels),
                                       _free_memory_bytes(self.device), batch_size)

    def free_host_memory(self) -> int:
        return _free_memory_bytes(torch.device("cpu"))

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, RuntimeError) and _is_out_of_memory(error)

    def release_memory(self) -> None:
        _release_cached_memory(self.device)

    def out_of_memory_message(self, window: int, batch_size: int) -> str:
        return _out_of_memory_message(self.device, window, batch_size)


def _forward(network: nn.Module, inputs: torch.Tensor, levels: torch.Tensor,
             device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One batch through the network at ``dtype``; non-finite tiles again in float32."""
    inputs = inputs.to(device).contiguous(memory_format=_memory_format(device))
    levels = levels.to(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        outputs = network(inputs, levels).float()
    if dtype != torch.float32:
        failed = ~torch.isfinite(outputs).flatten(1).all(dim=1)
        if bool(failed.any()):
            outputs[failed] = network(inputs[failed], levels[failed]).float()
    return outputs.cpu()


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or min(image.shape) < 1:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a non-empty (C, H, W) tensor, got {shape}")
    return image.detach().to(device="cpu", dtype=torch.float32)


def _level_array(level: float | torch.Tensor | np.ndarray) -> float | np.ndarray:
    """A level as the tiling takes it: a number, or a float32 array (a map)."""
    if isinstance(level, torch.Tensor):
        level = level.detach().to(device="cpu", dtype=torch.float32).numpy()
    if isinstance(level, np.ndarray):
        return level.astype(np.float32, copy=False)
    return float(level)


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


def _memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last (NHWC) where convolutions run faster in it: on the CPU (oneDNN; block
    ``memory-format`` of docs/benchmarks.md, ``benchmarks/memory_format.py``) and on CUDA."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


@contextmanager
def _network_on(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
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
        network.to(memory_format=_memory_format(device))
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)
        if network is model and previous_format != _memory_format(device):
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
    return model.to(memory_format=_memory_format(device))


_ProbeKey = tuple[int, str, torch.dtype]
_BYTES_PER_PIXEL: weakref.WeakKeyDictionary[nn.Module, dict[_ProbeKey, float]] = (
    weakref.WeakKeyDictionary())
"""Measured activation bytes per pixel, per caller's model: the architecture sets it, not the
weights, so it is measured once per model, channel count, device type and dtype."""


def _activation_bytes_per_pixel(model: nn.Module, network: nn.Module, channels: int,
                                geometry: TileGeometry, device: torch.device,
                                dtype: torch.dtype) -> float:
    """Bytes per input pixel one forward pass needs, from a probe tile (cached per model).

    Every leaf module's output is counted as if all were alive at once, plus the input and the
    float32 output: an overestimate of the peak, which is the safe direction.
    """
    key = (channels, device.type, dtype)
    cached = _BYTES_PER_PIXEL.setdefault(model, {})
    if key not in cached:
        side = tiling.round_up(max(_PROBE_SIDE, geometry.size_multiple), geometry.size_multiple)
        activation_bytes = 0

        def count(_module: nn.Module, _inputs: object, output: object) -> None:
            nonlocal activation_bytes
            if isinstance(output, torch.Tensor):
                activation_bytes += output.numel() * output.element_size()

        leaves = [module for module in network.modules() if not any(module.children())]
        hooks = [module.register_forward_hook(count) for module in leaves]
        try:
            _forward(network, torch.full((1, channels, side, side), 0.5), torch.zeros(1),
                     device, dtype)
        finally:
            for hook in hooks:
                hook.remove()
        cached[key] = activation_bytes / side**2 + 8 * channels
    return cached[key]


def _free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    return int(psutil.virtual_memory().available)


def _is_out_of_memory(error: RuntimeError) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    message = str(error).lower()
    return any(marker in message for marker in _OUT_OF_MEMORY_MARKERS)


def _out_of_memory_message(device: torch.device, window: int, batch_size: int) -> str:
    hints = ["a smaller --batch-size"] if batch_size > 1 else []
    if device.type != "cpu":
        hints.append("--device cpu")
    advice = f"; try {' or '.join(hints)}" if hints else "; free some memory and try again"
    return f"out of memory on {device} even with {window}-pixel tiles{advice}"


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
