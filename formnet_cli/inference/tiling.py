"""Tiled restoration on numpy arrays, whatever runs the network: written once, free of torch.

:func:`restore_array` restores a ``(C, H, W)`` float32 image in [0, 1] with a
:class:`TileNetwork`: the torch engine (:class:`formnet_cli.inference.engine.TorchNetwork`) or
an ONNX runtime (:mod:`formnet_cli.inference.backends`). The padding, the windows, the blend,
the self-ensemble and the retries on running out of memory are all here, so an image restores
the same way under every backend, and a backend other than torch does not import torch.

How the tiles are made exact
----------------------------
A network carries its model's descriptor (:class:`~formnet_cli.models.ModelDescriptor`), which
gives ``size_multiple`` (its pixel-unshuffle and stride-2 convolutions need sizes that are
multiples of it) and ``receptive_radius`` (how far, in pixels, an input pixel can influence an
output pixel). The tiling

1. pads the image at the bottom and right to a multiple of ``size_multiple`` (reflect;
   replicate where the image is too small to reflect) - the padding an untiled run uses, so an
   untiled run is simply the one-tile case. The padding is made window by window, as each
   window is read (converted to float32 there from an 8- or 16-bit image), so neither a padded
   nor a float copy of the whole image is made;
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
``ensemble=N`` (1, 2, 4 or 8) restores N flipped/rotated copies of each window (the views of
:func:`dihedral`) and averages the results, each turned back: the model's errors that depend on
orientation partly cancel (measured +0.06 to +0.12 dB for N = 2 to 4 with the bundled models)
for N times the time. Since a window's kept part depends only on the window, this is the mean
of the N views of the whole image restored and turned back, wherever the image needs no
padding (elsewhere the views differ only within a receptive radius of the bottom and right
edges, in which side the padding lies on); averaging per window needs no whole-image sum.

Memory
------
``tile="auto"`` asks the network for a window side (from its free memory and the activation
size per pixel). Running out of memory (at any tile size, including an untiled run) halves the
window and starts the image again, down to the smallest window that can still be exact, then
runs fewer tiles at once; then a :class:`~formnet_cli.errors.FormnetError` says what to do.
Besides the image (read as it is, 8-bit included) and the result (written as it is wanted,
8-bit included: ``out``), the tiling holds the weighted sums of one row of tiles, whose
finished lines go to the result as each row ends, and the network's activations for one batch.

>>> from formnet_cli.models.descriptor import ModelDescriptor
>>> class Doubler:  # a "network" that doubles its input; any TileNetwork will do
...     descriptor = ModelDescriptor(task="denoise", channels=1, size_multiple=4,
...                                  receptive_radius=8, supports_half=False)
...     def run(self, inputs, levels): return inputs * 2
...     def window_side(self, channels, batch_size): return 64
...     def free_host_memory(self): return 2**30
...     def is_out_of_memory(self, error): return False
...     def release_memory(self): pass
...     def out_of_memory_message(self, window, batch_size): return "out of memory"
>>> image = np.random.default_rng(0).random((1, 77, 131), dtype=np.float32)
>>> restored = restore_array(Doubler(), image, 0.1, tile=40, tile_overlap=4)
>>> restored.shape, bool(np.abs(restored - 2 * image).max() < 1e-6)
((1, 77, 131), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np

from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.imaging.samples import INTEGER_MAXIMUM, dequantise
from formnet_cli.models.descriptor import ModelDescriptor
from formnet_cli.options import ENSEMBLE_SIZES

TileSpec = int | None | Literal["auto"]
ProgressCallback = Callable[[int, int], None]
Level = float | np.ndarray
"""A normalised level: one number, or a per-pixel ``(1, H, W)`` float32 map."""

DEFAULT_TILE_OVERLAP = 16
"""Pixels over which neighbouring tiles are blended when ``tile_overlap`` is not given."""

ENSEMBLE_VIEWS: dict[int, tuple[int, ...]] = {
    1: (0,),
    2: (0, 7),           # as is, and mirrored about the anti-diagonal
    4: (0, 3, 5, 6),     # the four rotations
    8: tuple(range(8)),  # every flip and rotation
}
"""Self-ensemble size -> the :func:`dihedral` views it averages."""
assert tuple(ENSEMBLE_VIEWS) == ENSEMBLE_SIZES

MEMORY_FRACTION = 0.5
"""Share of the free memory that ``tile="auto"`` plans to use for one batch of tiles."""
MAX_AUTO_WINDOW = 2048
"""Largest window ``tile="auto"`` picks on a GPU: bounds the probe's extrapolation, keeps
progress live."""
MAX_AUTO_WINDOW_HOST = 1536
"""Largest window ``tile="auto"`` picks where the network runs in host memory (the CPU): a
50-megapixel colour photo restores in under 2 GiB (``benchmarks/memory.py``), for about 12%
more time than 2048-pixel windows on such an image (each window recomputes its context
margin); images up to 1536 pixels a side run untiled either way."""


class TileNetwork(Protocol):
    """What the tiling needs of a network: its model's descriptor (grid, reach, channels), a
    way to run a batch of tiles, and how it runs out of memory."""

    @property
    def descriptor(self) -> ModelDescriptor: ...

    def run(self, inputs: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """``(B, C, h, w)`` float32 tiles and their levels (``(B,)`` numbers or ``(B, 1, h, w)``
        maps) -> ``(B, C', h, w)`` float32 restored tiles."""

    def window_side(self, channels: int, batch_size: int) -> int:
        """The window side ``tile="auto"`` uses (before it is fitted to the image and grid)."""

    def free_host_memory(self) -> int:
        """Bytes of host memory free for the whole-image buffers."""

    def is_out_of_memory(self, error: BaseException) -> bool: ...

    def release_memory(self) -> None:
        """Called after running out of memory, before trying smaller windows."""

    def out_of_memory_message(self, window: int, batch_size: int) -> str:
        """The one-line error when even the smallest window does not fit."""


# -- geometry --------------------------------------------------------------------------------
def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


@dataclass(frozen=True)
class TileGeometry:
    """What the tiling needs to know: the model's grid, its context margin and the blend."""

    size_multiple: int
    context: int
    overlap: int

    @classmethod
    def for_descriptor(cls, descriptor: ModelDescriptor, overlap: int) -> TileGeometry:
        multiple, radius = descriptor.size_multiple, descriptor.receptive_radius
        return cls(multiple, round_up(radius, multiple), overlap)

    @property
    def tightest_window(self) -> int:
        """The smallest window whose exact part still advances by one ``size_multiple``: slow
        (see :attr:`min_window`), the last resort when memory allows nothing larger."""
        return round_up(2 * self.context + self.overlap + self.size_multiple, self.size_multiple)

    @property
    def min_window(self) -> int:
        """The smallest window worth running: one whose exact part (how far the next window
        advances) is at least the ``2 * context`` it discards, so that no pixel is computed more
        than about twice along an axis. (A window that advanced by one ``size_multiple`` would
        compute each pixel up to ``2 * context / size_multiple`` times: 30-60x slower.)"""
        advance = round_up(max(2 * self.context, self.size_multiple), self.size_multiple)
        return round_up(advance + 2 * self.context + self.overlap, self.size_multiple)

    def window(self, side: int) -> int:
        """``side`` as a window size: a multiple of the grid, at least :attr:`min_window`."""
        return max(self.min_window, round_down(side, self.size_multiple))


@dataclass(frozen=True)
class AxisSpan:
    """One tile along one axis: the window given to the model and the part kept from it."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int
    weights: np.ndarray
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
        return [AxisSpan(0, length, 0, length, np.ones(length, np.float32))]
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
    stride = round_down(window - 2 * geometry.context - geometry.overlap, geometry.size_multiple)
    if stride < geometry.size_multiple:
        raise ValueError(f"window {window} is below the minimum {geometry.min_window}")
    return list(range(0, length - window, stride)) + [length - window]


def _feather(size: int, overlap: int, *, rise: bool, fall: bool) -> np.ndarray:
    """Weights that ramp linearly from ~0 to 1 over ``overlap`` pixels at the inner edges."""
    weights = np.ones(size, np.float32)
    if overlap > 0:
        ramp = np.minimum(np.arange(1, size + 1, dtype=np.float32) / np.float32(overlap + 1),
                          np.float32(1))
        if rise:
            weights = weights * ramp
        if fall:
            weights = weights * ramp[::-1]
    return weights


# -- self-ensemble ---------------------------------------------------------------------------
Array = TypeVar("Array")


def dihedral(array: Array, view: int) -> Array:
    """View ``0..7`` of the square's symmetries on the last two axes of a numpy array or torch
    tensor: bit 2 transposes, then bit 0 flips the columns and bit 1 the rows.
    :func:`undo_dihedral` turns it back."""
    if view & 4:
        array = array.swapaxes(-2, -1)  # type: ignore[attr-defined]
    return _flip(array, [axis for bit, axis in ((1, -1), (2, -2)) if view & bit])


def undo_dihedral(array: Array, view: int) -> Array:
    """The inverse of :func:`dihedral`."""
    array = _flip(array, [axis for bit, axis in ((1, -1), (2, -2)) if view & bit])
    return array.swapaxes(-2, -1) if view & 4 else array  # type: ignore[attr-defined]


def _flip(array: Array, axes: list[int]) -> Array:
    if not axes:
        return array
    if isinstance(array, np.ndarray):
        return np.flip(array, axes)  # type: ignore[return-value]
    return array.flip(axes)  # type: ignore[attr-defined]  # a torch tensor


def pass_progress(progress: ProgressCallback | None, index: int, passes: int
                  ) -> ProgressCallback | None:
    """``progress`` for pass ``index`` of ``passes`` equal passes, counted as one run."""
    if progress is None or passes == 1:
        return progress
    return lambda done, total: progress(index * total + done, passes * total)


# -- restoration -----------------------------------------------------------------------------
def restore_array(network: TileNetwork, image: np.ndarray, level: Level, *,
                  tile: TileSpec = "auto", tile_overlap: int | None = None,
                  batch_size: int = 1, progress: ProgressCallback | None = None,
                  ensemble: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """Restore ``image`` with ``network``, tile by tile; see the module docstring.

    Args:
        network: what runs the tiles (a :class:`TileNetwork`).
        image: ``(C, H, W)``, any size including 1 x 1, any strides (a transposed view of an
            ``H x W x C`` array is read as it is): float in [0, 1], or ``uint8`` / ``uint16``
            read as value / 255 or / 65535 window by window (never converted whole).
        level: the normalised level, a number, or a per-pixel ``(1, H, W)`` map, which is
            padded and tiled exactly like the image.
        tile: window side in pixels as seen by the model (context margin included), rounded
            down to ``size_multiple`` and raised to the smallest size that can be exact;
            ``None`` for one untiled pass; ``"auto"`` to size it from free memory.
        tile_overlap: pixels over which neighbouring tiles are blended
            (default :data:`DEFAULT_TILE_OVERLAP`).
        batch_size: windows per run of the network.
        progress: called as ``progress(done, total)`` after each run, counting windows times
            ensemble views; after an out-of-memory retry the count starts again.
        ensemble: geometric self-ensemble, one of :data:`ENSEMBLE_SIZES`: each window is
            restored in that many flipped/rotated views (and its level map with it), each
            turned back, and their mean kept (``ensemble`` times the time; 1: one plain pass).
        out: where the result goes, ``(C', H, W)`` with any strides (a transposed view of the
            caller's ``H x W x C`` output; one channel is broadcast to three): a float array
            gets the result as it is, a ``uint8`` / ``uint16`` one the result clamped to [0, 1]
            and rounded (:func:`~formnet_cli.imaging.samples.quantise`), written band by band as the tiles finish.
            ``None``: a new float32 array.

    Returns:
        ``out``, or the new ``(C', H, W)`` float32 result, not clamped.
    """
    if ensemble not in ENSEMBLE_VIEWS:
        raise InvalidOptionError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, "
                                 f"got {ensemble!r}")
    if not (tile is None or tile == "auto"
            or (isinstance(tile, int) and not isinstance(tile, bool) and tile > 0)):
        raise InvalidOptionError(f"tile must be a positive number of pixels, 'auto' or None, "
                                 f"got {tile!r}")  # a spelling ("256") is read by formnet_cli.options
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else int(tile_overlap)
    if overlap < 0:
        raise InvalidOptionError(f"tile overlap must be >= 0, got {tile_overlap}")
    if batch_size < 1:
        raise InvalidOptionError(f"batch size must be >= 1, got {batch_size}")
    descriptor = network.descriptor
    image = _check_image(image)
    if image.shape[0] != descriptor.channels:
        raise ValueError(f"a {descriptor.channels}-channel model cannot restore a "
                         f"{image.shape[0]}-channel image")
    level = _check_level(level, image.shape[-2:])
    if out is not None and (out.ndim != 3 or out.shape[-2:] != image.shape[-2:]):
        raise ValueError(f"out must have shape (C, {image.shape[1]}, {image.shape[2]}), "
                         f"got {out.shape}")
    check_host_memory(image, out, network.free_host_memory())
    geometry = TileGeometry.for_descriptor(descriptor, overlap)
    source = _PaddedReader(image, geometry.size_multiple)
    level_source = (_PaddedReader(level, geometry.size_multiple)
                    if isinstance(level, np.ndarray) else level)
    height, width = image.shape[-2:]
    whole = max(source.padded_shape)
    if tile is None:
        window = geometry.window(whole)
    elif tile == "auto":
        window = geometry.window(min(network.window_side(image.shape[0], batch_size), whole))
    else:
        window = geometry.window(min(tile, whole))
    sink = _Sink(out, height, width)
    while True:
        try:
            _restore_padded(network, source, level_source, window, geometry, batch_size,
                            ENSEMBLE_VIEWS[ensemble], progress, sink)
            break
        except Exception as error:  # the network tells which errors are lack of memory
            if not network.is_out_of_memory(error):
                raise
            if window <= geometry.tightest_window and batch_size == 1:
                raise FormnetError(network.out_of_memory_message(window, batch_size)) from None
        network.release_memory()
        # Smaller windows down to the efficient floor, then fewer tiles at once, then
        # (slow, but better than failing) windows below that floor.
        if window > geometry.min_window:
            window = geometry.window(window // 2)
        elif batch_size > 1:
            batch_size //= 2
        else:
            window = max(geometry.tightest_window, round_down(window // 2, geometry.size_multiple))
    assert sink.out is not None
    return sink.out


class _PaddedReader:
    """An image (or level map) as padded at the bottom and right to the grid
    (:func:`pad_to_multiple`), read one float32 window at a time: the padded image, and a
    float copy of an integer one, are never made whole."""

    def __init__(self, array: np.ndarray, multiple: int) -> None:
        self.array = array
        self.height, self.width = array.shape[-2:]
        self.padded_shape = (round_up(self.height, multiple), round_up(self.width, multiple))
        pad_bottom, pad_right = self.padded_shape[0] - self.height, self.padded_shape[1] - self.width
        self.mode = "reflect" if pad_bottom < self.height and pad_right < self.width else "edge"

    def window(self, rows: slice, cols: slice) -> np.ndarray:
        """The padded image's ``[:, rows, cols]`` as float32 (a window ends inside the padding
        only at the bottom or right, and holds every real pixel a reflection needs)."""
        stop_row, stop_col = min(rows.stop, self.height), min(cols.stop, self.width)
        part = dequantise(self.array[:, rows.start:stop_row, cols.start:stop_col])
        pad_bottom, pad_right = rows.stop - stop_row, cols.stop - stop_col
        if pad_bottom or pad_right:
            part = np.pad(part, ((0, 0), (0, pad_bottom), (0, pad_right)), mode=self.mode)
        return part


class _Sink:
    """Where finished rows of the result go: the caller's ``out`` (quantised if it holds
    integers), or a float32 array made when the first rows arrive."""

    def __init__(self, out: np.ndarray | None, height: int, width: int) -> None:
        self.out, self.height, self.width = out, height, width

    def write(self, first_row: int, rows: np.ndarray) -> None:
        """Rows ``first_row...`` of the padded result (``(C', n, Wp)`` float32, used up: an
        integer output is quantised in place), cropped to the image."""
        rows = rows[:, :max(0, self.height - first_row), :self.width]
        if self.out is None:
            self.out = np.empty((rows.shape[0], self.height, self.width), np.float32)
        if self.out.dtype in INTEGER_MAXIMUM:  # as quantise() does, without temporaries
            np.clip(rows, 0.0, 1.0, out=rows)
            rows *= np.float32(INTEGER_MAXIMUM[self.out.dtype])
            np.rint(rows, out=rows)  # whole numbers: the cast below is exact
        self.out[:, first_row:first_row + rows.shape[1]] = rows


def _restore_padded(network: TileNetwork, source: _PaddedReader, level: float | _PaddedReader,
                    window: int, geometry: TileGeometry, batch_size: int,
                    views: tuple[int, ...], progress: ProgressCallback | None,
                    sink: _Sink) -> None:
    """Run every window of the padded image in every view and blend them, one row of tiles
    at a time: a row's finished lines go to ``sink``, so that besides the image and the result
    only one band of tiles is held."""
    height, width = source.padded_shape
    row_spans, col_spans = plan_axis(height, window, geometry), plan_axis(width, window, geometry)
    row_weights, col_weights = _weight_sums(row_spans, height), _weight_sums(col_spans, width)
    total, done = len(row_spans) * len(col_spans) * len(views), 0
    most_lines = max(rows.keep_stop - rows.keep_start for rows in row_spans)
    band: np.ndarray | None = None  # weighted sums over the lines from rows.keep_start on
    for index, rows in enumerate(row_spans):
        lines = rows.keep_stop - rows.keep_start
        for view in views:
            for first in range(0, len(col_spans), batch_size):
                batch = col_spans[first:first + batch_size]
                inputs = np.stack([dihedral(source.window(rows.window, cols.window), view)
                                   for cols in batch])
                if isinstance(level, _PaddedReader):
                    levels = np.stack([dihedral(level.window(rows.window, cols.window), view)
                                       for cols in batch])
                else:
                    levels = np.full((len(batch),), level, np.float32)
                outputs = network.run(inputs, levels)
                if band is None:
                    band = np.zeros((outputs.shape[1], most_lines, width), np.float32)
                for cols, output in zip(batch, outputs):
                    kept = undo_dihedral(output, view)[:, rows.kept_in_window, cols.kept_in_window]
                    band[:, :lines, cols.kept] += kept * (rows.weights[:, None] * cols.weights[None, :])
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        assert band is not None
        finished = (row_spans[index + 1].keep_start if index + 1 < len(row_spans) else height
                    ) - rows.keep_start
        result = band[:, :finished]
        result /= row_weights[rows.keep_start:rows.keep_start + finished, None] * col_weights[None, :]
        if len(views) > 1:
            result /= np.float32(len(views))
        sink.write(rows.keep_start, result)
        carried = lines - finished  # the lines the next row of tiles adds to, moved up
        band[:, :carried] = band[:, finished:lines]
        band[:, carried:] = 0


def _weight_sums(spans: list[AxisSpan], length: int) -> np.ndarray:
    """The blend weights summed along one axis (a tile's weights are the product of its two
    axes', so their sum at a pixel is the product of these)."""
    sums = np.zeros(length, np.float32)
    for span in spans:
        sums[span.kept] += span.weights
    return sums


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or min(image.shape) < 1:
        shape = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be a non-empty (C, H, W) array, got {shape}")
    if image.dtype in INTEGER_MAXIMUM:
        return image
    return image.astype(np.float32, copy=False)


def _check_level(level: Level, shape: tuple[int, ...]) -> Level:
    """A level as a float, or a ``(1, H, W)`` float32 map of the image's size."""
    if not isinstance(level, np.ndarray):
        return float(level)
    if level.size == 1:
        return float(level.reshape(()))
    height, width = shape
    if level.shape != (1, height, width):
        raise ValueError(f"a level map must have shape (1, {height}, {width}), "
                         f"got {tuple(level.shape)}")
    return level.astype(np.float32, copy=False)


def host_memory_needed(pixels: int, channels: int, passes: int = 1) -> int:
    """Bytes of host memory a restore of a ``pixels``-pixel, ``channels``-channel image takes
    at its peak beside the image and its result, whatever its ``passes`` (each window runs
    every view in turn): a row of tiles (at most the image as float32, untiled) and a float
    copy of the image where a step converts it whole (a chain, super-resolution, a gray model
    on each colour channel), 2 float32 copies; the network's activations come on top (what
    ``tile="auto"`` sizes). Files are checked against it from their headers, before they are
    decoded (:mod:`formnet_cli.io.header`)."""
    return pixels * channels * 4 * 2


class PageSize(Protocol):
    """A page's size, as :class:`formnet_cli.io.DeclaredPage` gives it from a file's header."""

    @property
    def pixels(self) -> int: ...
    channels: int
    alpha: bool


def restore_memory_needed(pages: Sequence[PageSize], *, scale: int = 1, passes: int = 1) -> int:
    """Bytes of host memory restoring ``pages`` (enlarged ``scale`` times) takes beside the
    decoded pages: :func:`host_memory_needed` for the largest, and every restored page (as
    float32, the most it takes), held until the file is written."""
    def restored(page: PageSize) -> int:
        return page.pixels * scale**2 * (page.channels + page.alpha) * 4

    largest = max(pages, key=lambda page: page.pixels)
    return (host_memory_needed(largest.pixels * scale**2, largest.channels + largest.alpha, passes)
            + sum(map(restored, pages)))


def check_host_memory(image: np.ndarray, out: np.ndarray | None, free: int) -> None:
    """Refuse, in one line, an image whose buffers would not fit in the ``free`` host memory
    (the system would kill the process, and a batch with it): a float result where no ``out``
    is given, and one row of tiles (at most the image, as float32)."""
    height, width = image.shape[-2:]
    needed = height * width * image.shape[0] * 4 * (1 if out is not None else 2)
    if needed > free:
        raise FormnetError(f"a {width} x {height} image needs about {needed / 2**30:.1f} GiB of "
                           f"memory to restore, {free / 2**30:.1f} GiB free: close other "
                           "programs, or restore it on a machine with more memory")


def auto_window_side(bytes_per_pixel: float, free_bytes: int, batch_size: int, *,
                     host: bool) -> int:
    """Window side at which a batch of tiles fits in :data:`MEMORY_FRACTION` of ``free_bytes``,
    at most :data:`MAX_AUTO_WINDOW` (:data:`MAX_AUTO_WINDOW_HOST` where the network runs in
    ``host`` memory)."""
    budget = free_bytes * MEMORY_FRACTION / batch_size
    largest = MAX_AUTO_WINDOW_HOST if host else MAX_AUTO_WINDOW
    return min(largest, int(math.sqrt(budget / bytes_per_pixel)))
