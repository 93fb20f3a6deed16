"""The measurement protocol of ``BENCHMARK.md``: what a method is given and how it is scored.

``formnet eval`` (:mod:`formnet_cli.evaluation.evaluate`) and the training's validation
(:mod:`formnet_cli.training.trainer`) both measure through this module, so that a validation
PSNR is a benchmark PSNR:

1. :func:`degrade` makes the method's input: ``noisy = clean / 255 + N(0, sigma / 255)`` with a
   fresh ``RandomState(0)`` per image, not clipped; the decoded Pillow JPEG at quality ``q``;
   or, for super-resolution, the HR image cropped to a multiple of the scale and shrunk with
   MATLAB's antialiased bicubic ``imresize`` (float, not quantised).
2. The method's output is clipped and rounded to 8 bits (:func:`to_uint8`) and scored against
   the clean 8-bit image (:func:`score`, :func:`psnr_of`): PSNR and SSIM over all pixels and
   channels for denoising and JPEG, on the MATLAB ``rgb2ycbcr`` luma with ``scale`` border
   pixels cropped for super-resolution (:mod:`formnet_cli.imaging.metrics`).

Pure numpy: no torch, no file I/O.

>>> setting = Setting("denoise", 25)
>>> setting.label, setting.slug
('sigma 25', 'sigma25')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from formnet_cli.config import LEVEL_NAMES, QUALITY_RANGE, SR_SCALES, TASKS
from formnet_cli.errors import InvalidOptionError
from formnet_cli.imaging import degradations, metrics

__all__ = ["EVAL_SIGMA_MAX", "Sample", "Setting", "degrade", "psnr_of", "score", "to_uint8"]

EVAL_SIGMA_MAX = 255.0
"""Largest sigma an evaluation degrades with: above a model's range (75), for BM3D and DnCNN."""


@dataclass(frozen=True)
class Setting:
    """One degradation: a task and its level (sigma on 0-255, JPEG quality, or SR scale)."""

    task: str
    level: float

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidOptionError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        level = float(self.level)
        low, high = QUALITY_RANGE
        if self.task == "denoise" and not 0 <= level <= EVAL_SIGMA_MAX:
            raise InvalidOptionError(f"sigma must be in [0, {EVAL_SIGMA_MAX:g}], got {level:g}")
        if self.task == "jpeg" and not (level.is_integer() and low <= level <= high):
            raise InvalidOptionError(f"JPEG quality must be an integer in {low}..{high}, got {level:g}")
        if self.task == "sr" and level not in SR_SCALES:
            raise InvalidOptionError(f"scale must be one of {', '.join(map(str, SR_SCALES))}, got {level:g}")
        object.__setattr__(self, "level", level)

    @property
    def value(self) -> int | float:
        return int(self.level) if float(self.level).is_integer() else self.level

    @property
    def label(self) -> str:
        if self.task == "denoise":
            return f"sigma {self.value:g}"
        if self.task == "jpeg":
            return f"q {self.value}"
        return f"x{self.value}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, LEVEL_NAMES[self.task]: self.value}


@dataclass
class Sample:
    """One image under one setting: the clean reference and the method's input.

    ``clean`` is uint8 ``H x W x C`` (cropped to a multiple of the scale for SR);
    ``degraded`` is float32 ``h x w x C`` with ``C`` equal to the clean image's.
    """

    name: str
    setting: Setting
    clean: np.ndarray
    degraded: np.ndarray

    @property
    def input_megapixels(self) -> float:
        return self.degraded.shape[0] * self.degraded.shape[1] / 1e6


def degrade(name: str, clean: np.ndarray, setting: Setting) -> Sample:
    """The protocol's degraded input for one clean uint8 ``H x W x C`` image."""
    clean = np.asarray(clean)
    if clean.dtype != np.uint8 or clean.ndim != 3:
        raise ValueError(f"expected uint8 H x W x C, got {clean.dtype} {clean.shape}")
    if setting.task == "denoise":
        noisy = degradations.add_gaussian_noise(clean.astype(np.float64) / 255.0, setting.level, seed=0)
        return Sample(name, setting, clean, noisy)
    if setting.task == "jpeg":
        decoded = degradations.jpeg_compress(clean, int(setting.level))
        return Sample(name, setting, clean, decoded.astype(np.float32) / np.float32(255))
    scale = int(setting.level)
    high = degradations.modcrop(clean, scale)
    low = degradations.imresize(high.astype(np.float64) / 255.0, scale=1.0 / scale)
    return Sample(name, setting, np.ascontiguousarray(high), low.astype(np.float32))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``round(clip(x, 0, 1) * 255)`` as uint8 (the protocol's quantisation)."""
    return np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def psnr_of(sample: Sample, restored: np.ndarray) -> float:
    """PSNR of a restored float image against the sample's clean image, as :func:`score`
    gives it (the training's validation uses it)."""
    return _psnr(sample, _quantised(sample, restored))


def _psnr(sample: Sample, output: np.ndarray) -> float:
    if sample.setting.task == "sr":
        return metrics.sr_psnr(sample.clean, output, int(sample.setting.level))
    return metrics.psnr(sample.clean, output)


def _quantised(sample: Sample, restored: np.ndarray) -> np.ndarray:
    output = to_uint8(restored)
    if output.ndim == 2:
        output = output[:, :, None]
    if output.shape != sample.clean.shape:
        raise ValueError(f"{sample.name}: restored shape {output.shape} differs from the clean "
                         f"image's {sample.clean.shape}")
    return output


def score(sample: Sample, restored: np.ndarray) -> tuple[float, float]:
    """``(PSNR, SSIM)`` of a restored float image against the sample's clean image."""
    output = _quantised(sample, restored)
    try:
        if sample.setting.task == "sr":
            return _psnr(sample, output), metrics.sr_ssim(sample.clean, output, int(sample.setting.level))
        return _psnr(sample, output), metrics.ssim(sample.clean, output)
    except ValueError as error:  # an image too small for SSIM's window
        raise InvalidOptionError(f"image {sample.name!r} cannot be scored: {error}") from None
