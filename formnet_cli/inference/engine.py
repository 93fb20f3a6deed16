"""Tiled inference: restore one image tensor with a model, exactly as one untiled pass would.

:func:`restore_tensor` is a pure function of a model and a ``(C, H, W)`` tensor in [0, 1];
it does no file I/O. The whole image stays in host memory; only one batch of tiles is on the
device at a time, and the result is accumulated on the host in float32.

How the tiles are made exact
----------------------------
A model's descriptor (:class:`~formnet_cli.models.ModelDescriptor`, checked when the model
enters :func:`restore_tensor`) gives ``size_multiple`` (its pixel-unshuffle and stride-2
convolutions need sizes that are multiples of it) and ``receptive_radius`` (how far, in pixels,
an input pixel can influence an output pixel). The engine

1. pads the whole image once, at the bottom and right, to a multiple of ``size_multiple``
   (reflect; replicate where the image is too small to reflect) - the padding an untiled run
   uses, so an untiled run is simply the one-tile case;
2. cuts the padded image into equal windows whose origins and sizes are multiples of
   ``size_multiple``, so every tile sees the same pixel grid as the whole image; along each
   axis the windows are the smallest that need no more of them than the tile size asked for
   (less context computed twice);
3. discards a context margin of ``receptive_radius`` (rounded up to ``size_multiple``) on each
   side of a window that lies inside the image: what is left depends only on real pixels, so it
   equals the untiled output. At the image border a window stops at the padded edge, exactly
   like the untiled run, and nothing is discarded there;
4. blends neighbouring tiles over ``tile_overlap`` pixels with linear (feathered) weights that
   lie wholly inside the exact parts, normalising by the summed weights. For the CNN models the
   blend therefore changes nothing beyond float rounding (tiled equals untiled to ~1e-6); it
   hides seams where a model is not exactly local (the BM3D formatter) or where reduced
   precision differs from tile to tile.

Self-ensemble
-------------
``ensemble=N`` (1, 2, 4 or 8) restores N flipped/rotated copies of the image (the views of
:func:`dihedral`) and averages the results, each turned back: the model's errors that depend on
orientation partly cancel (measured +0.06 to +0.12 dB for N = 2 to 4 with the bundled models)
for N times the time. A model card may recommend an N, which ``ensemble="auto"`` in
:mod:`formnet_cli.api` uses.

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
Running out of memory (at any tile size, including an untiled run) halves the window and
starts the image again, down to the smallest window that can still be exact; then a
:class:`~formnet_cli.errors.FormnetError` says what to do.

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

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from formnet_cli.errors import FormnetError, InvalidOptionError
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
from formnet_cli.models.descriptor import ModelDescriptor, describe

TileSpec = int | None | Literal["auto"]
ProgressCallback = Callable[[int, int], None]

DEFAULT_TILE_OVERLAP = 16
"""Pixels over which neighbouring tiles are blended when ``tile_overlap`` is not given."""

ENSEMBLE_VIEWS: dict[int, tuple[int, ...]] = {
    1: (0,),
    2: (0, 7),           # as is, and mirrored about the anti-diagonal
    4: (0, 3, 5, 6),     # the four rotations
    8: tuple(range(8)),  # every flip and rotation
}
"""Self-ensemble size -> the :func:`dihedral` views it averages."""
ENSEMBLE_SIZES = tuple(ENSEMBLE_VIEWS)

_MEMORY_FRACTION = 0.5
"""Share of the free memory that ``tile="auto"`` plans to use for one batch of tiles."""
_MAX_AUTO_WINDOW = 2048
"""Largest window ``tile="auto"`` picks: bounds the probe's extrapolation, keeps progress live."""
_PROBE_SIDE = 64


# -- geometry --------------------------------------------------------------------------------
def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


@dataclass(frozen=True)
class TileGeometry:
    """What the tiling needs to know: the model's grid, its context margin and the blend."""

    size_multiple: int
    context: int
    overlap: int

    @classmethod
    def for_descriptor(cls, descriptor: ModelDescriptor, overlap: int) -> TileGeometry:
        multiple = descriptor.size_multiple
        return cls(multiple, _round_up(descriptor.receptive_radius, multiple), overlap)

    @property
    def tightest_window(self) -> int:
        """The smallest window whose exact part still advances by one ``size_multiple``: slow
        (see :attr:`min_window`), the last resort when memory allows nothing larger."""
        return _round_up(2 * self.context + self.overlap + self.size_multiple, self.size_multiple)

    @property
    def min_window(self) -> int:
        """The smallest window worth running: one whose exact part (how far the next window
        advances) is at least the ``2 * context`` it discards, so that no pixel is computed more
        than about twice along an axis. (A window that advanced by one ``size_multiple`` would
        compute each pixel up to ``2 * context / size_multiple`` times: 30-60x slower.)"""
        advance = _round_up(max(2 * self.context, self.size_multiple), self.size_multiple)
        return _round_up(advance + 2 * self.context + self.overlap, self.size_multiple)

    def window(self, side: int) -> int:
        """``side`` as a window size: a multiple of the grid, at least :attr:`min_window`."""
        return max(self.min_window, _round_down(side, self.size_multiple))


@dataclass(frozen=True)
class AxisSpan:
    """One tile along one axis: the window given to the model and the part kept from it."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int
    weights: torch.Tensor
    """Blend weights over ``keep_start:keep_stop`` (float32, all positive)."""

    @property
    def window(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def kept(self) -> slice:
        return slice(self.keep_start, self.keep_stop)

    @property
    def kept_in_window(self) -> slice:
        return slice(self.keep_start - self.start, self.keep_stop - self.start)


def plan_axis(length: int, window: int, geometry: TileGeometry) -> list[AxisSpan]:
    """Split ``0:length`` (a multiple of the grid) into windows of one size and their kept parts.

    The size is the smallest grid multiple, at most ``window``, that needs no more windows than
    ``window`` itself would: 4000 pixels in windows of at most 2048 become three windows of
    about 1600, not three of 2048 that overlap by far more than needed. Windows start on
    multiples of ``size_multiple`` and advance by ``size - 2 * context - overlap`` (rounded down
    to the grid); the last one is moved back to end at ``length``. A window keeps everything but
    ``context`` pixels on each side that lies inside the image, so consecutive kept parts
    overlap by at least ``overlap`` pixels.
    """
    if length <= window:
        return [AxisSpan(0, length, 0, length, torch.ones(length))]
    count = len(_window_starts(length, window, geometry))
    while (window - geometry.size_multiple >= geometry.min_window
           and len(_window_starts(length, window - geometry.size_multiple, geometry)) == count):
        window -= geometry.size_multiple
    spans = []
    for start in _window_starts(length, window, geometry):
        stop = start + window
        keep_start = start + geometry.context if start > 0 else 0
        keep_stop = stop - geometry.context if stop < length else length
        weights = _feather(keep_stop - keep_start, geometry.overlap,
                           rise=start > 0, fall=stop < length)
        spans.append(AxisSpan(start, stop, keep_start, keep_stop, weights))
    return spans


def _window_starts(length: int, window: int, geometry: TileGeometry) -> list[int]:
    """Where windows of ``window`` pixels start along an axis of ``length > window`` pixels."""
    stride = _round_down(window - 2 * geometry.context - geometry.overlap, geometry.size_multiple)
    if stride < geometry.size_multiple:
        raise ValueError(f"window {window} is below the minimum {geometry.min_window}")
    return list(range(0, length - window, stride)) + [length - window]


def _feather(size: int, overlap: int, *, rise: bool, fall: bool) -> torch.Tensor:
    """Weights that ramp linearly from ~0 to 1 over ``overlap`` pixels at the inner edges."""
    weights = torch.ones(size)
    if overlap > 0:
        ramp = torch.clamp(torch.arange(1, size + 1, dtype=torch.float32) / (overlap + 1), max=1)
        if rise:
            weights = weights * ramp
        if fall:
            weights = weights * ramp.flip(0)
    return weights


def pad_to_multiple(tensor: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(C, H, W)`` at the bottom and right to multiples of ``multiple``.

    Reflect padding, or replicate where the image is too small to reflect (e.g. 1 x 1).
    """
    height, width = tensor.shape[-2:]
    pad_bottom = _round_up(height, multiple) - height
    pad_right = _round_up(width, multiple) - width
    if pad_bottom == 0 and pad_right == 0:
        return tensor
    mode = "reflect" if pad_bottom < height and pad_right < width else "replicate"
    return F.pad(tensor[None], (0, pad_right, 0, pad_bottom), mode=mode)[0]


# -- restoration -----------------------------------------------------------------------------
def restore_tensor(
    model: nn.Module,
    image: torch.Tensor,
    level: float | torch.Tensor,
    *,
    tile: TileSpec = "auto",
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    ensemble: int = 1,
) -> torch.Tensor:
    """Restore ``image`` with ``model(x, level)``, tile by tile; see the module docstring.

    Args:
        model: a restorer ``model(x, level)`` with a ``descriptor``
            (:class:`~formnet_cli.models.ModelDescriptor`; a
            :class:`~formnet_cli.models.FormResNet` has one); a model without one is refused
            (``TypeError``). A model that is not already on ``device`` is copied there for this
            call; the caller's model is left as it was (dtype, device and train/eval mode).
        image: ``(C, H, W)`` float32 in [0, 1], on the CPU, with the model's channels; any
            size, including 1 x 1.
        level: the normalised level, a number or a scalar tensor, or a per-pixel ``(1, H, W)``
            map, which is padded and tiled exactly like the image.
        tile: window side in pixels as seen by the model (context margin included), rounded
            down to ``size_multiple`` and raised to the smallest size that can be exact;
            ``None`` for one untiled pass; ``"auto"`` to size it from free memory.
        tile_overlap: pixels over which neighbouring tiles are blended
            (default :data:`DEFAULT_TILE_OVERLAP`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (see :func:`~formnet_cli.inference.device.resolve_device`).
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``
            (see :func:`~formnet_cli.inference.device.resolve_precision`).
        batch_size: tiles per forward pass.
        progress: called as ``progress(done_tiles, total_tiles)`` after each batch; after an
            out-of-memory retry the count starts again with the new total.
        ensemble: geometric self-ensemble, one of :data:`ENSEMBLE_SIZES`: the mean of the
            restorations of that many flipped/rotated copies of the image (and level map),
            each turned back (``ensemble`` times the time; 1: one plain pass).

    Returns:
        ``(C, H, W)`` float32 on the CPU, not clamped; made under :func:`torch.inference_mode`
        (no autograd history; ``clone()`` it outside that mode before changing it in place).
    """
    if ensemble not in ENSEMBLE_VIEWS:
        raise InvalidOptionError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, "
                                 f"got {ensemble!r}")
    if not (tile is None or tile == "auto"
            or (isinstance(tile, int) and not isinstance(tile, bool) and tile > 0)):
        raise InvalidOptionError(f"tile must be a positive number of pixels, 'auto' or None, "
                                 f"got {tile!r}")  # a spelling ("256") is read by formnet_cli.options
    views = ENSEMBLE_VIEWS[ensemble]
    descriptor = describe(model)
    image = _check_image(image)
    if image.shape[0] != descriptor.channels:
        raise ValueError(f"a {descriptor.channels}-channel model cannot restore a "
                         f"{image.shape[0]}-channel image")
    _check_host_memory(image, passes=len(views))
    total: torch.Tensor | None = None
    for index, view in enumerate(views):
        view_level = dihedral(level, view) if isinstance(level, torch.Tensor) and level.ndim == 3 else level
        restored = _restore_view(model, descriptor, dihedral(image, view), view_level, tile=tile,
                                 tile_overlap=tile_overlap, device=device, precision=precision,
                                 batch_size=batch_size,
                                 progress=pass_progress(progress, index, len(views)))
        with torch.inference_mode():  # summed in place: a whole-image buffer less at the peak
            restored = undo_dihedral(restored, view)
            if total is None:
                total = restored.contiguous()
            else:
                total += restored
        del restored
    assert total is not None
    with torch.inference_mode():
        return total.div_(len(views)) if len(views) > 1 else total


def pass_progress(progress: ProgressCallback | None, index: int, passes: int
                  ) -> ProgressCallback | None:
    """``progress`` for pass ``index`` of ``passes`` equal passes, counted as one run."""
    if progress is None or passes == 1:
        return progress
    return lambda done, total: progress(index * total + done, passes * total)


def dihedral(tensor: torch.Tensor, view: int) -> torch.Tensor:
    """View ``0..7`` of the square's symmetries on the last two axes: bit 2 transposes, then
    bit 0 flips the columns and bit 1 the rows. :func:`undo_dihedral` turns it back."""
    if view & 4:
        tensor = tensor.transpose(-2, -1)
    flips = [axis for bit, axis in ((1, -1), (2, -2)) if view & bit]
    return tensor.flip(flips) if flips else tensor


def undo_dihedral(tensor: torch.Tensor, view: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`."""
    flips = [axis for bit, axis in ((1, -1), (2, -2)) if view & bit]
    if flips:
        tensor = tensor.flip(flips)
    return tensor.transpose(-2, -1) if view & 4 else tensor


def _restore_view(model: nn.Module, descriptor: ModelDescriptor, image: torch.Tensor,
                  level: float | torch.Tensor, *, tile: TileSpec, tile_overlap: int | None,
                  device: str | torch.device, precision: Precision, batch_size: int,
                  progress: ProgressCallback | None) -> torch.Tensor:
    """One tiled pass of :func:`restore_tensor` (no ensemble)."""
    device = resolve_device(device)
    dtype = resolve_precision(precision, device, descriptor.supports_half)
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else int(tile_overlap)
    if overlap < 0:
        raise InvalidOptionError(f"tile overlap must be >= 0, got {tile_overlap}")
    if batch_size < 1:
        raise InvalidOptionError(f"batch size must be >= 1, got {batch_size}")
    image = _check_image(image)
    height, width = image.shape[-2:]
    geometry = TileGeometry.for_descriptor(descriptor, overlap)
    padded_image = pad_to_multiple(image, geometry.size_multiple)
    padded_level = _prepare_level(level, height, width, geometry.size_multiple)
    whole = max(padded_image.shape[-2:])

    with network_on(model, device) as network, torch.inference_mode():
        if tile is None:
            window = geometry.window(whole)
        elif tile == "auto":
            side = _auto_window_side(model, network, image.shape[0], geometry, device, dtype,
                                     batch_size)
            window = geometry.window(min(side, whole))
        else:
            window = geometry.window(min(tile, whole))
        while True:
            try:
                restored = _restore_padded(network, padded_image, padded_level, window, geometry,
                                           device, dtype, batch_size, progress)
                break
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                if window <= geometry.tightest_window and batch_size == 1:
                    raise FormnetError(_out_of_memory_message(device, window, batch_size)) from None
            release_cached_memory(device)
            # Smaller windows down to the efficient floor, then fewer tiles at once, then
            # (slow, but better than failing) windows below that floor.
            if window > geometry.min_window:
                window = geometry.window(window // 2)
            elif batch_size > 1:
                batch_size //= 2
            else:
                window = max(geometry.tightest_window, _round_down(window // 2, geometry.size_multiple))
    return restored[:, :height, :width]  # a view: restore_tensor makes the one copy it needs


def _restore_padded(network: nn.Module, image: torch.Tensor, level: float | torch.Tensor,
                    window: int, geometry: TileGeometry, device: torch.device, dtype: torch.dtype,
                    batch_size: int, progress: ProgressCallback | None) -> torch.Tensor:
    """Run every tile of the padded image and blend them into a padded ``(C', Hp, Wp)`` result."""
    height, width = image.shape[-2:]
    tiles = [(rows, cols) for rows in plan_axis(height, window, geometry)
             for cols in plan_axis(width, window, geometry)]
    weighted_sum: torch.Tensor | None = None
    weight_sum = torch.zeros(1, height, width)
    for first in range(0, len(tiles), batch_size):
        batch = tiles[first:first + batch_size]
        inputs = torch.stack([image[:, rows.window, cols.window] for rows, cols in batch])
        if isinstance(level, torch.Tensor):
            levels = torch.stack([level[:, rows.window, cols.window] for rows, cols in batch])
        else:
            levels = torch.full((len(batch),), level)
        outputs = _forward(network, inputs, levels, device, dtype)
        if weighted_sum is None:
            weighted_sum = torch.zeros(outputs.shape[1], height, width)
        for (rows, cols), output in zip(batch, outputs):
            weight = rows.weights[:, None] * cols.weights[None, :]
            kept = output[:, rows.kept_in_window, cols.kept_in_window]
            weighted_sum[:, rows.kept, cols.kept] += kept * weight
            weight_sum[:, rows.kept, cols.kept] += weight
        if progress is not None:
            progress(first + len(batch), len(tiles))
    assert weighted_sum is not None
    return weighted_sum.div_(weight_sum)


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
    return image.to(device="cpu", dtype=torch.float32)


def _prepare_level(level: float | torch.Tensor, height: int, width: int,
                   multiple: int) -> float | torch.Tensor:
    """A scalar level as a float, or a ``(1, H, W)`` map padded like the image."""
    if not isinstance(level, torch.Tensor):
        return float(level)
    if level.numel() == 1:
        return float(level.item())
    if tuple(level.shape) != (1, height, width):
        raise ValueError(f"a level map must have shape (1, {height}, {width}), "
                         f"got {tuple(level.shape)}")
    return pad_to_multiple(level.to(device="cpu", dtype=torch.float32), multiple)


def _auto_window_side(model: nn.Module, network: nn.Module, channels: int,
                      geometry: TileGeometry, device: torch.device, dtype: torch.dtype,
                      batch_size: int) -> int:
    """Window side that fits a batch in about half the free memory."""
    bytes_per_pixel = _activation_bytes_per_pixel(model, network, channels, geometry, device, dtype)
    budget = free_memory_bytes(device) * _MEMORY_FRACTION / batch_size
    return min(_MAX_AUTO_WINDOW, int(math.sqrt(budget / bytes_per_pixel)))


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
        side = _round_up(max(_PROBE_SIDE, geometry.size_multiple), geometry.size_multiple)
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


def host_memory_needed(pixels: int, channels: int, passes: int) -> int:
    """Bytes of host memory a restore of a ``pixels``-pixel, ``channels``-channel float32 image
    in ``passes`` passes takes at its peak: beside the image a pass holds its padded copy and
    the blend's sums (the result), a second pass its turned copy and the running total; with
    the caller's own copies (the API's float32 image and its result), 4 or 5 times the image
    (measured 4.4 through the CLI on a 25 MP colour image). Files are checked against it from
    their headers, before they are decoded (:mod:`formnet_cli.io.header`)."""
    return pixels * channels * 4 * (4 if passes == 1 else 5)


class PageSize(Protocol):
    """A page's size, as :class:`formnet_cli.io.DeclaredPage` gives it from a file's header."""

    @property
    def pixels(self) -> int: ...
    channels: int
    alpha: bool


def restore_memory_needed(pages: Sequence[PageSize], *, scale: int = 1, passes: int = 1) -> int:
    """Bytes of host memory restoring ``pages`` (enlarged ``scale`` times) takes beside the
    decoded pages: :func:`host_memory_needed` for the largest, less its float page (counted by
    the caller), and every restored page, held until the file is written."""
    def restored(page: PageSize) -> int:
        return page.pixels * scale**2 * (page.channels + page.alpha) * 4

    largest = max(pages, key=lambda page: page.pixels)
    return (host_memory_needed(largest.pixels * scale**2, largest.channels + largest.alpha, passes)
            - restored(largest) + sum(map(restored, pages)))


def _check_host_memory(image: torch.Tensor, passes: int) -> None:
    """Refuse, in one line, an image whose whole-image buffers (:func:`host_memory_needed`)
    would not fit in the free host memory (the system would kill the process, and a batch
    with it)."""
    height, width = image.shape[-2:]
    needed = host_memory_needed(height * width, image.shape[0], passes)
    free = free_memory_bytes(torch.device("cpu"))
    if needed > free:
        fewer = ", use --ensemble 1" if passes > 1 else ""
        raise FormnetError(f"a {width} x {height} image needs about {needed / 2**30:.1f} GiB of "
                           f"memory to restore ({passes} pass{'es' if passes > 1 else ''}), "
                           f"{free / 2**30:.1f} GiB free: close other programs{fewer}, or "
                           "restore it on a machine with more memory")


def _out_of_memory_message(device: torch.device, window: int, batch_size: int) -> str:
    hints = ["a smaller --batch-size"] if batch_size > 1 else []
    if device.type != "cpu":
        hints.append("--device cpu")
    advice = f"; try {' or '.join(hints)}" if hints else "; free some memory and try again"
    return f"out of memory on {device} even with {window}-pixel tiles{advice}"
