"""How one step of a restoration runs on float pixels, for :mod:`formnet_cli.api`.

A step is one task at one level: the level the model is conditioned on (given, or estimated:
the noise level function of the image, a JPEG file's quantisation tables, the scale), and
the model's passes through the tiling over the image's planes (a gray model on each colour
channel, or on Y, Cb and Cr for JPEG; super-resolution on the bicubic-upscaled Y), under the
model's backend: torch (imported only here, when it runs) or an ONNX runtime.
Which model runs, and the steps one after the other, are the API's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from formnet_cli.config import ModelConfig, Task, condition_level
from formnet_cli.errors import InvalidOptionError
from formnet_cli.imaging import degradations, estimation, samples
from formnet_cli.inference import backends, tiling
from formnet_cli.io import estimate_jpeg_quality
from formnet_cli.options import Quality, RestoreOptions, Sigma, parse_scale

if TYPE_CHECKING:  # torch is imported where the torch backend runs, not here
    import torch

    from formnet_cli.loading import LoadedModel

Progress = tiling.ProgressCallback


@dataclass(frozen=True, eq=False)
class Step:
    """One step to run: its task and level (as :class:`RestoreOptions` holds them), and for a
    denoising step the noise already measured, if it was."""

    task: Task
    sigma: Sigma | None = None
    quality: Quality | None = None
    scale: int | None = None
    noise: estimation.NoiseLevelFunction | None = None


@dataclass(frozen=True, eq=False)
class Conditioning:
    """What the model is conditioned on: its ``level`` (a number or a per-pixel map), and the
    noise level (denoise) or JPEG quality (jpeg, ``None``: blind) it stands for."""

    level: float | np.ndarray
    estimated: bool = False
    noise: NoiseLevel | None = None
    quality: int | None = None


def conditioning(step: Step, loaded: LoadedModel, pixels: np.ndarray,
                  source_path: str | os.PathLike[str] | bytes | None) -> Conditioning:
    """The level the model runs at: the given or estimated sigma (a map where the noise varies
    with brightness), the given or estimated JPEG quality, or the scale."""
    if step.task == "denoise":
        assert step.sigma is not None
        noise = noise_level(step.sigma, pixels, loaded.config,
                             per_channel=loaded.channels == 1 and pixels.shape[2] == 3,
                             function=step.noise)
        return Conditioning(noise.condition(), noise.estimated, noise=noise)
    if step.task == "jpeg":
        assert step.quality is not None
        level_quality, estimated = quality_level(step.quality, source_path, loaded.config)
        return Conditioning(condition_level("jpeg", quality=level_quality), estimated,
                             quality=level_quality)
    scale = parse_scale(step.scale, loaded.config.scales)
    return Conditioning(condition_level("sr", scale=scale))


def restore_planes(run: Runner, pixels: np.ndarray, task: str, noise: NoiseLevel | None,
                   out: np.ndarray | None = None) -> np.ndarray | None:
    """Denoise or deblock ``pixels`` (``H x W x C``, float in [0, 1], or 8- or 16-bit) with the
    model of ``run``, whatever its channels: as they are; a gray model on each colour channel
    (at each channel's noise level where it is mapped; on Y, Cb and Cr for JPEG, whose
    artefacts live there); a colour model on a gray image as gray RGB, keeping the mean.

    Where the model takes the image as it is, the result goes into ``out`` (a ``(C', H, W)``
    view of the caller's output, see :func:`tiling.restore_array`) and ``None`` is returned;
    otherwise (and without ``out``) the float result is."""
    channels = run.loaded.channels
    if channels == pixels.shape[2]:
        return run([pixels], outs=None if out is None else [out])[0]
    pixels = samples.float_values(pixels)
    if channels == 1 and task == "jpeg":
        ycbcr = degradations.rgb_to_ycbcr(pixels).astype(np.float32)
        planes = run([ycbcr[:, :, [index]] for index in range(3)])
        return degradations.ycbcr_to_rgb(np.concatenate(planes, axis=2))
    if channels == 1:
        levels = [noise.condition(index) for index in range(3)] if noise is not None else None
        return np.concatenate(run([pixels[:, :, [index]] for index in range(3)], levels), axis=2)
    return run([np.repeat(pixels, 3, axis=2)])[0].mean(axis=2, keepdims=True)


class Runner:
    """Runs a model on ``H x W x C`` planes (float32 in [0, 1], or 8- or 16-bit, read window by
    window) through the tiling, under its backend.

    Several passes (e.g. three channels through a gray model) report one combined progress.
    """

    def __init__(self, loaded: LoadedModel, options: RestoreOptions, *,
                 device: torch.device | str, level: float | np.ndarray, ensemble: int,
                 progress: Progress | None) -> None:
        self.loaded, self.level, self.progress = loaded, level, progress
        self.tiling_options = dict(tile=options.tile, tile_overlap=options.tile_overlap,
                                   batch_size=options.batch_size, ensemble=ensemble)
        self.device, self.precision = device, options.precision

    def __call__(self, planes: list[np.ndarray], levels: list[float | np.ndarray] | None = None,
                 outs: list[np.ndarray] | None = None) -> list[np.ndarray | None]:
        """The planes restored, each at its own level from ``levels`` where given: ``H x W x C'``
        float32, or written into its ``(C', H, W)`` view in ``outs`` (then ``None``)."""
        outputs: list[np.ndarray | None] = []
        for index, plane in enumerate(planes):
            level = self.level if levels is None else levels[index]
            progress = tiling.pass_progress(self.progress, index, len(planes))
            out = None if outs is None else outs[index]
            restored = self._restore(plane.transpose(2, 0, 1), level, progress, out)
            outputs.append(None if out is not None else restored.transpose(1, 2, 0))
        return outputs

    def _restore(self, array: np.ndarray, level: float | np.ndarray,
                 progress: Progress | None, out: np.ndarray | None) -> np.ndarray:
        if self.loaded.backend != "torch":
            network = backends.open_network(self.loaded.path, self.loaded.backend)
            return tiling.restore_array(network, array, level, progress=progress, out=out,
                                        **self.tiling_options)
        from formnet_cli.inference import device, engine

        with device.cpu_threads(backends.requested_threads()):
            return engine.restore_numpy(self.loaded.model, array, level, device=self.device,
                                        precision=self.precision, progress=progress, out=out,
                                        **self.tiling_options)


def restore_sr(run: Runner, pixels: np.ndarray, scale: int) -> np.ndarray:
    pixels = samples.float_values(pixels)
    upscaled = degradations.imresize(pixels, scale=scale).astype(np.float32)
    if run.loaded.channels == upscaled.shape[2]:
        return run([upscaled])[0]
    if upscaled.shape[2] == 1:  # a color model on a gray image
        return run([np.repeat(upscaled, 3, axis=2)])[0].mean(axis=2, keepdims=True)
    ycbcr = degradations.rgb_to_ycbcr(upscaled).astype(np.float32)
    ycbcr[:, :, :1] = run([ycbcr[:, :, :1]])[0]
    return degradations.ycbcr_to_rgb(ycbcr)


@dataclass(frozen=True, eq=False)
class NoiseLevel:
    """The noise level to denoise at: one sigma, or a per-pixel ``H x W`` sigma map (and one
    per channel, for a gray model run on each channel of a colour image)."""

    sigma: float
    estimated: bool
    sigma_map: np.ndarray | None = None
    channel_maps: list[np.ndarray] | None = None

    @property
    def map_range(self) -> tuple[float, float] | None:
        if self.sigma_map is None:
            return None
        return float(self.sigma_map.min()), float(self.sigma_map.max())

    def condition(self, channel: int | None = None) -> float | np.ndarray:
        """The model's conditioning level (for one ``channel`` where there is a map per
        channel): a number, or a ``(1, H, W)`` map."""
        if self.sigma_map is None:
            return condition_level("denoise", sigma=self.sigma)
        chosen = self.sigma_map
        if channel is not None and self.channel_maps is not None:
            chosen = self.channel_maps[channel]
        return (chosen[None] / np.float32(255.0)).astype(np.float32)


def noise_level(sigma: Sigma, pixels: np.ndarray, config: ModelConfig,
                 per_channel: bool = False,
                 function: estimation.NoiseLevelFunction | None = None) -> NoiseLevel:
    """``sigma`` as given, or estimated (by ``function`` where it was measured already): a
    sigma map where the noise varies with brightness (``per_channel``: also one map per
    channel)."""
    low, high = config.sigma_range
    if sigma == "auto":
        function = function or estimate_noise(pixels)
        if function.varies:
            values = samples.float_values(pixels)
            sigma_map = np.clip(function.sigma_map(values), low, high)
            channel_maps = None
            if per_channel:
                channel_maps = [np.clip(each, low, high) for each in function.channel_sigma_maps(values)]
            del values
            return NoiseLevel(float(sigma_map.mean()), True, sigma_map, channel_maps)
        return NoiseLevel(float(min(max(function.sigma, low), high)), True)
    assert isinstance(sigma, float)
    check_sigma_in_range(sigma, config)
    return NoiseLevel(sigma, False)


def check_sigma_in_range(sigma: float, config: ModelConfig) -> None:
    low, high = config.sigma_range
    if not low <= sigma <= high:
        raise InvalidOptionError(
            f"sigma must be in [{low:g}, {high:g}] for this model, got {sigma:g}")


ESTIMATION_SIDE = 768
"""Largest side of the sample the noise is measured on (its cost grows with the area)."""

ESTIMATION_BLOCKS = 3
"""Blocks per axis a larger image is sampled with."""


def estimate_noise(pixels: np.ndarray) -> estimation.NoiseLevelFunction:
    """The noise level function (sigma against brightness) of the image, on a sample of it."""
    try:
        return estimation.estimate_noise_level_function(estimation_sample(pixels))
    except estimation.TooSmallToMeasure as error:  # said of the image, not of the sample
        height, width = pixels.shape[:2]
        raise InvalidOptionError(
            f"cannot estimate the noise level (image too small to measure its noise: {width} x "
            f"{height} pixels, about {error.needed} x {error.needed} needed); give sigma") from None


def estimation_sample(pixels: np.ndarray) -> np.ndarray:
    """As float32 in [0, 1] (``pixels`` may be 8- or 16-bit), the image, or where a side exceeds :data:`ESTIMATION_SIDE` a mosaic of blocks spread
    evenly over it (3 x 3 of 256 pixels for a large photo: corners, edges and centre), so that
    the noise is measured over the image's whole range of brightness at a bounded cost."""
    block = ESTIMATION_SIDE // ESTIMATION_BLOCKS
    indices = []
    for length in pixels.shape[:2]:
        if length <= ESTIMATION_SIDE:
            indices.append(np.arange(length))
            continue
        starts = np.linspace(0, length - block, ESTIMATION_BLOCKS).round().astype(int)
        indices.append(np.concatenate([np.arange(start, start + block) for start in starts]))
    return samples.dequantise(pixels[np.ix_(indices[0], indices[1])])


def quality_level(quality: Quality, source_path: str | os.PathLike[str] | bytes | None,
                   config: ModelConfig) -> tuple[int | None, bool]:
    """The quality to condition on (``None`` = blind) and whether it was estimated.

    A quality outside the model's trained range is clamped to it: the model has never seen
    stronger or weaker compression, so the nearest level it knows is the safest.
    """
    low, high = config.quality_range
    if quality == "blind":
        return None, False
    if quality == "auto":
        if source_path is None:
            return None, False
        estimate = estimate_jpeg_quality(source_path)
        if estimate is None:
            return None, False
        return int(min(max(estimate, low), high)), True
    assert isinstance(quality, int)
    return int(min(max(quality, low), high)), False
