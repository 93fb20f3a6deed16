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
float32. ``auto`` picks float16 on CUDA for models whose descriptor ``supports_half``
(:func:`~formnet_cli.inference.device.resolve_precision`): its 10-bit mantissa
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

import weakref

import numpy as np
import torch
from torch import nn

from formnet_cli.inference import tiling
from formnet_cli.inference.device import (
    Precision,
    free_memory_bytes,
    is_out_of_memory,
    network_on,
    release_cached_memory,
    resolve_device,
    resolve_precision,
    to_device,
)
from formnet_cli.inference.tiling import (  # noqa: F401  (re-exported: the engine's tiling names)
    DEFAULT_TILE_OVERLAP, ENSEMBLE_SIZES, ENSEMBLE_VIEWS, AxisSpan, ProgressCallback, TileGeometry,
    TileSpec, dihedral, pass_progress, plan_axis, undo_dihedral)
from formnet_cli.models.descriptor import ModelDescriptor, describe

_PROBE_SIDE = 64


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
        model: a restorer ``model(x, level)`` with a ``descriptor``
            (:class:`~formnet_cli.models.ModelDescriptor`; a
            :class:`~formnet_cli.models.FormResNet` has one); a model without one is refused
            (``TypeError``). A model that is not already on ``device`` is copied there for this
            call; the caller's model is left as it was (dtype, device and train/eval mode).
        image: ``(C, H, W)`` float32 in [0, 1], on the CPU, with the model's channels; any size, including 1 x 1.
        level: the normalised level, a number or a scalar tensor, or a per-pixel ``(1, H, W)``
            map (tensor or array), which is padded and tiled exactly like the image.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`~formnet_cli.inference.device.resolve_device`).
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (see :func:`~formnet_cli.inference.device.resolve_precision`).
        tile, tile_overlap, batch_size, progress, ensemble: as
            :func:`~formnet_cli.inference.tiling.restore_array` takes them (``tile="auto"``
            sizes windows from ``device``'s free memory; ``batch_size`` tiles per forward pass).

    Returns:
        ``(C, H, W)`` float32 on the CPU, not clamped, without autograd history.
    """
    image = _check_image(image)
    return torch.from_numpy(restore_numpy(
        model, image.numpy(), _level_array(level), tile=tile, tile_overlap=tile_overlap,
        device=device, precision=precision, batch_size=batch_size, progress=progress,
        ensemble=ensemble))


def restore_numpy(model: nn.Module, image: np.ndarray, level: float | np.ndarray, *,
                  tile: TileSpec = "auto", tile_overlap: int | None = None,
                  device: str | torch.device = "cpu", precision: Precision = "auto",
                  batch_size: int = 1, progress: ProgressCallback | None = None,
                  ensemble: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`restore_tensor` on a ``(C, H, W)`` numpy array of any strides, float in [0, 1]
    or 8- or 16-bit (read window by window), into ``out`` where given: as
    :func:`tiling.restore_array` takes them."""
    descriptor = describe(model)
    device = resolve_device(device)
    dtype = resolve_precision(precision, device, descriptor.supports_half)
    with network_on(model, device) as network, torch.inference_mode():
        return tiling.restore_array(
            TorchNetwork(model, network, device, dtype), image, level, tile=tile,
            tile_overlap=tile_overlap, batch_size=batch_size, progress=progress,
            ensemble=ensemble, out=out)


class TorchNetwork:
    """A torch model as the tiling's :class:`~formnet_cli.inference.tiling.TileNetwork`:
    ``network`` (the caller's ``model``, or its copy on ``device``) run at ``dtype``."""

    def __init__(self, model: nn.Module, network: nn.Module, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.model, self.network, self.device, self.dtype = model, network, device, dtype
        self.descriptor: ModelDescriptor = describe(model)

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
        geometry = tiling.TileGeometry.for_descriptor(self.descriptor, 0)
        with torch.inference_mode():
            return _activation_bytes_per_pixel(self.model, self.network, channels, geometry,
                                               self.device, self.dtype)

    def window_side(self, channels: int, batch_size: int) -> int:
        return tiling.auto_window_side(self.bytes_per_pixel(channels),
                                       free_memory_bytes(self.device), batch_size,
                                       host=self.device.type == "cpu")

    def free_host_memory(self) -> int:
        return free_memory_bytes(torch.device("cpu"))

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, RuntimeError) and is_out_of_memory(error)

    def release_memory(self) -> None:
        release_cached_memory(self.device)

    def out_of_memory_message(self, window: int, batch_size: int) -> str:
        return _out_of_memory_message(self.device, window, batch_size)


def _forward(network: nn.Module, inputs: torch.Tensor, levels: torch.Tensor,
             device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One batch through the network at ``dtype``; non-finite tiles again in float32."""
    inputs = to_device(inputs, device)
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


def _out_of_memory_message(device: torch.device, window: int, batch_size: int) -> str:
    hints = ["a smaller --batch-size"] if batch_size > 1 else []
    if device.type != "cpu":
        hints.append("--device cpu")
    advice = f"; try {' or '.join(hints)}" if hints else "; free some memory and try again"
    return f"out of memory on {device} even with {window}-pixel tiles{advice}"
