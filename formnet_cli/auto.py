"""``task="auto"`` (the default): what an image needs, decided from the image itself.

Per image:

1. **Is it a JPEG?** A JPEG file gives its quality in its quantisation tables
   (:func:`formnet_cli.io.estimate_jpeg_quality`); an image that was a JPEG before it was saved
   again shows it in its pixels (:func:`formnet_cli.imaging.blockiness.jpeg_blockiness` of
   :data:`BLOCKY` or more: its quality is unknown, the JPEG step runs blind).
2. **Is it noisy?** Its noise level function (sigma against brightness, a per-pixel sigma where
   it varies as camera noise does), measured where compression has not hidden the noise
   (:func:`measure_noise`): noisy above :data:`NOISY` (:data:`NOISY_IN_JPEG` on a JPEG; where
   texture, not noise, fills a JPEG's half-resolution reading, :data:`TEXTURE_RATIO`, the noise
   is read at full resolution instead).
3. **Steps**: a JPEG of quality up to :data:`JPEG_QUALITY_MAX` gets the JPEG step at its quality
   (blind for a decoded one); a noisy image is then denoised at the noise measured again on the
   result (:func:`noise_after_jpeg`), except that a noisy JPEG of quality :data:`FINE_QUALITY` or
   more is only denoised:
   its blocks are far below its noise, and the JPEG model, trained on clean JPEGs, keeps the
   noise as if it were detail (1-2 dB worse than denoising alone, on the made images). Neither:
   nothing to do; the caller says so and keeps the image.

:func:`examine`, :func:`measure_noise` and :func:`noise_after_jpeg` measure (the first also
reads the file's header); :func:`is_noisy`, :func:`jpeg_step` and :func:`explain` only decide,
from what was measured. The thresholds were chosen on seeded images made from scikit-image's
sample photos and crops of the training sets (``benchmarks/auto_calibration.py`` prints what
they rest on), never on the benchmark sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from formnet_cli.imaging import estimation
from formnet_cli.imaging.blockiness import jpeg_blockiness

__all__ = ["BLOCKY", "FINE_QUALITY", "JPEG_QUALITY_MAX", "NOISY", "NOISY_IN_JPEG", "TEXTURE_RATIO",
           "STEPS", "Compression", "NoiseReading", "examine", "explain", "is_noisy", "jpeg_step",
           "measure_noise", "noise_after_jpeg"]

STEPS = ("jpeg", "denoise")
"""The tasks ``auto`` may run on an image, in that order."""

BLOCKY = 1.45
"""Blockiness from which an image that is not a JPEG file is taken for a decoded JPEG. Photos
never compressed score 1.0-1.1 (up to 1.25 with a strong regular texture), drawings up to
1.35; photos compressed at quality 20 score 1.6-4, at quality 40 1.7-3.4 but where fine
texture (grass, gravel) hides the blocks, as it hides them from the eye."""

JPEG_QUALITY_MAX = 95
"""Highest quality of a JPEG file that gets the JPEG step (the default model's range ends
there); above it the artifacts are below what the step changes."""

FINE_QUALITY = 90
"""Quality from which a JPEG keeps its noise at the finest scale: below it, quantisation
removes the fine scales of the noise, and it is measured at half resolution."""

NOISY = 2.0
"""Mean sigma (0-255) above which an image that is not a JPEG is denoised: the weak-texture
method reads 0.1-1.4 on clean photos."""

NOISY_IN_JPEG = 4.0
"""Mean sigma above which a JPEG is noisy. Measured at half resolution, clean photos read 0-4
(their texture, doubled), and more where the texture is strong, which :data:`TEXTURE_RATIO`
tells apart."""

TEXTURE_RATIO = 2.5
"""On a JPEG, the noise reading at half resolution counts only where the reading at a quarter
is less than this many times it; from this ratio on, the half-resolution reading is texture
and the noise is read at full resolution instead. Noise has as much power at every scale (each
reading, scaled back, finds its sigma: ratios 1.0-2.3 on the made images), natural texture has
more at coarser ones (2-15 on textured crops, clean or noisy). At full resolution quantisation
has removed part of the noise (it reads low) but texture reads least there (0-1.1 on clean
JPEGs): denoising at that reading never overshoots, where taking such an image for clean lost
up to 4 dB to the chain at the true sigma on noisy textured crops of the training sets. Below
this ratio the half-resolution reading is kept: on those crops it gained more than the
full-resolution one between ratios 2 and 2.5 (``benchmarks/auto_calibration.py --part
texture``)."""

QUANTISATION_HIDES = 0.6
"""On a JPEG file below :data:`FINE_QUALITY`, the most noise its quantisation can hide from a
reading at full resolution, in mean steps of the file's luminance table (12.7 at quality 89,
46 at 60). A half-resolution reading higher than both this and :data:`FULL_READING_FACTOR`
times the full-resolution reading is texture, however scale-free (foliage, grass): it is capped
there. Chosen on made JPEGs of training crops only (clean and camera noise, gray and colour,
quality 60-89; ``benchmarks/auto_calibration.py --part ceiling --source train --hides
0.4,0.6,0.8``, table in docs/benchmarks.md): noise read at half resolution exceeds twice the
full-resolution reading by up to 0.4-0.8 steps; textured crops read 2-10 times their true noise
there, and denoising at that reading lost up to 10 dB to the JPEG step alone. At 0.6 auto gains
up to +7 dB on such files and loses at most 0.14-0.22 dB on any other; at 0.4 it gains a little
more on average but loses up to 3.4 dB on smooth noisy files, whose noise it caps."""

FULL_READING_FACTOR = 2.0
"""See :data:`QUANTISATION_HIDES`."""

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""JPEG's luminance (ITU-R BT.601), the plane a colour JPEG keeps at full resolution."""

LUMA_NOISE_GAIN = float(np.sqrt((LUMA.astype(np.float64) ** 2).sum()))
"""The sigma of the luminance of noise of sigma 1 drawn independently in R, G and B (0.669)."""


@dataclass(frozen=True)
class Compression:
    """What says whether an image was JPEG-compressed: its file's tables and its pixels."""

    file_quality: int | None
    """The quality a JPEG file's quantisation tables give; ``None``: not a JPEG file."""
    blockiness: float

    @property
    def is_jpeg(self) -> bool:
        return self.file_quality is not None or self.blockiness >= BLOCKY

    @property
    def fine_noise_kept(self) -> bool:
        """Whether the image still holds its noise at the finest scale (see :data:`FINE_QUALITY`)."""
        if not self.is_jpeg:
            return True
        return self.file_quality is not None and self.file_quality >= FINE_QUALITY


@dataclass(frozen=True, eq=False)
class NoiseReading:
    """The noise :func:`measure_noise` found: its level function (one per channel of the
    image) and the mean, lowest and highest sigma (0-255) over the image measured."""

    function: estimation.NoiseLevelFunction
    mean: float
    low: float
    high: float
    how: str
    """How it was measured, in words."""
    texture_ratio: float | None = None
    """On a JPEG read at half resolution: the sigma read at a quarter over the one read
    (``None``: not measured, a fine JPEG or not a JPEG, or too small an image)."""
    ceiling: float | None = None
    """The most noise (per channel, as ``mean``) its JPEG file's quantisation could have hidden
    (:data:`QUANTISATION_HIDES`), where the half-resolution reading was capped there
    (``None``: not capped)."""

    @property
    def is_texture(self) -> bool:
        """Whether the half-resolution reading was texture (:data:`TEXTURE_RATIO`), so that this
        reading was taken at full resolution."""
        return self.texture_ratio is not None and self.texture_ratio >= TEXTURE_RATIO


def examine(pixels: np.ndarray, source: str | os.PathLike[str] | bytes | None) -> Compression:
    """The evidence of JPEG compression: ``source``'s quantisation tables (the file, or its
    bytes, ``pixels`` were read from; ``None``: no file) and the blockiness of ``pixels``
    (``H x W x C`` float in [0, 1])."""
    from formnet_cli.io import estimate_jpeg_quality

    quality = estimate_jpeg_quality(source) if source is not None else None
    return Compression(quality, jpeg_blockiness(pixels))


def jpeg_step(compression: Compression, noisy: bool) -> int | Literal["blind"] | None:
    """The quality to remove JPEG artifacts at (``"blind"`` where the pixels alone show them),
    or ``None``: no JPEG step (see the module: a noisy JPEG of quality :data:`FINE_QUALITY` or
    more is only denoised)."""
    quality = compression.file_quality
    if quality is not None:
        return quality if quality <= JPEG_QUALITY_MAX and not (noisy and quality >= FINE_QUALITY) else None
    return "blind" if compression.blockiness >= BLOCKY else None


def measure_noise(pixels: np.ndarray, compression: Compression, *, past_texture: bool = True,
                  ) -> NoiseReading | None:
    """The noise of ``pixels`` (``H x W x C`` float in [0, 1]), measured so that compression
    does not hide it; ``None`` when the image is too small to measure.

    Not a JPEG: the noise level function of each channel, as ``sigma="auto"`` measures it. A
    JPEG: in colour, of the luminance only (JPEG keeps chroma at half resolution and quantises
    it harder, which hides its noise), each channel's sigma taken as that of noise drawn
    independently in R, G and B (luminance sigma / :data:`LUMA_NOISE_GAIN`); below quality
    :data:`FINE_QUALITY` (or of unknown quality) at half resolution
    (:func:`~formnet_cli.imaging.estimation.estimate_coarse_noise_level_function`), or at full
    resolution where the half-resolution reading is texture (:data:`TEXTURE_RATIO`) unless
    ``past_texture`` is false.
    """
    color = pixels.shape[2] == 3
    luma = compression.is_jpeg and color
    plane = pixels @ LUMA if luma else pixels
    texture_ratio = None
    try:
        if compression.fine_noise_kept:
            function = estimation.estimate_noise_level_function(plane)
        else:
            function = estimation.estimate_coarse_noise_level_function(plane)
    except estimation.TooSmallToMeasure:
        return None
    resolution = "full" if compression.fine_noise_kept else "half"
    if not compression.fine_noise_kept and function.sigma > 0:
        try:
            coarser = estimation.estimate_coarse_noise_level_function(plane, 4).sigma
            texture_ratio = coarser / function.sigma
        except estimation.TooSmallToMeasure:
            pass
        if past_texture and texture_ratio is not None and texture_ratio >= TEXTURE_RATIO:
            function = estimation.estimate_noise_level_function(plane)
            resolution = "full"
    ceiling = None
    if resolution == "half" and compression.file_quality is not None and function.sigma > 0:
        ceiling = _hidden_noise_ceiling(plane, compression.file_quality)
        if function.sigma > ceiling:
            function = function.scaled(ceiling / function.sigma)
        else:
            ceiling = None
    if luma:
        function = _as_channels(function.scaled(1.0 / LUMA_NOISE_GAIN), 3)
        ceiling = ceiling / LUMA_NOISE_GAIN if ceiling is not None else None
    how = ("on the luminance, " if luma else "") + f"at {resolution} resolution"
    if resolution == "full" and texture_ratio is not None:
        how += f", texture at half (ratio {texture_ratio:.1f})"
    if ceiling is not None:
        how += ", capped at what the quantisation hides"
    return _reading(function, pixels, how, texture_ratio, ceiling)


def _reading(function: estimation.NoiseLevelFunction, pixels: np.ndarray, how: str,
             texture_ratio: float | None, ceiling: float | None) -> NoiseReading:
    sigma_map = function.sigma_map(pixels) if function.varies else None
    if sigma_map is None:
        return NoiseReading(function, function.sigma, function.sigma, function.sigma, how,
                            texture_ratio, ceiling)
    return NoiseReading(function, float(sigma_map.mean()), float(sigma_map.min()),
                        float(sigma_map.max()), how, texture_ratio, ceiling)


def _hidden_noise_ceiling(plane: np.ndarray, quality: int) -> float:
    """The highest sigma (of ``plane``) a half-resolution reading of a JPEG file of ``quality``
    is taken for noise at (:data:`QUANTISATION_HIDES`)."""
    from formnet_cli.io.jpeg_quality import luminance_table

    full = estimation.estimate_noise_level_function(plane).sigma
    return max(FULL_READING_FACTOR * full, QUANTISATION_HIDES * float(luminance_table(quality).mean()))


def noise_after_jpeg(before: NoiseReading, pixels: np.ndarray, compression: Compression,
                     ) -> NoiseReading:
    """The noise the JPEG step left in its output ``pixels``, measured again as ``before`` was
    (at half resolution: what the step removed, texture below it, reads at a quarter as noise
    does); but a reading taken at full resolution past texture stands, as the JPEG step smooths
    the finest scale, where it was read. Capped as ``before`` was (:data:`QUANTISATION_HIDES`),
    or lower where the output's own full-resolution reading sets a lower cap (the pipeline
    measured in ``benchmarks/auto_calibration.py --part ceiling``)."""
    if before.is_texture:
        return before
    after = measure_noise(pixels, compression, past_texture=False)
    if after is None:
        return before
    if before.ceiling is not None and after.function.sigma > before.ceiling:
        return _reading(after.function.scaled(before.ceiling / after.function.sigma), pixels,
                        after.how + ", capped as before the step", after.texture_ratio,
                        before.ceiling)
    return after


def is_noisy(reading: NoiseReading | None, compression: Compression) -> bool:
    """Whether the noise read is worth denoising (see :data:`NOISY`, :data:`NOISY_IN_JPEG`)."""
    if reading is None:
        return False
    return reading.mean > (NOISY_IN_JPEG if compression.is_jpeg else NOISY)


def explain(compression: Compression, jpeg: int | Literal["blind"] | None,
            reading: NoiseReading | None, noisy: bool) -> str:
    """Why the steps were chosen, in one phrase: ``"JPEG quality 85 from its tables; noisy"``,
    ``"no JPEG blocks, blockiness 1.03; no noise, sigma 0.6"``."""
    quality = compression.file_quality
    if quality is not None:
        why = f"JPEG quality {quality} from its tables"
        if jpeg is None:
            why += (", its noise hides its blocks" if noisy and quality <= JPEG_QUALITY_MAX
                    else ", no visible artifacts")
    elif jpeg is not None:
        why = f"blocky like a decoded JPEG, blockiness {compression.blockiness:.2f}"
    else:
        why = f"no JPEG blocks, blockiness {compression.blockiness:.2f}"
    if reading is None:
        return f"{why}; noise not measured, the image is too small"
    past_texture = ", read past texture" if reading.is_texture else ""
    if noisy:
        return f"{why}; noisy{past_texture}"
    return f"{why}; no noise, sigma {reading.mean:.1f}{past_texture}"


def _as_channels(function: estimation.NoiseLevelFunction, channels: int,
                 ) -> estimation.NoiseLevelFunction:
    """A one-channel noise level function applied to each of ``channels`` (each at its own
    brightness)."""
    return estimation.NoiseLevelFunction(function.channel_sigmas * channels,
                                         function.brightness * channels,
                                         function.sigmas * channels,
                                         function.variance_fits * channels)
