"""Blind level estimation: the Gaussian noise sigma of an image (its noise level function).

A JPEG's quality is read from its file: :func:`formnet_cli.io.estimate_jpeg_quality`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from formnet_cli.imaging.degradations import check_unit_range

__all__ = [
    "NoiseLevelFunction",
    "estimate_coarse_noise_level_function",
    "estimate_noise_level_function",
    "estimate_noise_sigma",
]


# Standard normal quantile at 1 - 1e-6: the confidence of the weak-texture threshold.
_THRESHOLD_Z = 4.753424308817087


def _gamma_quantile(shape: float) -> float:
    """Quantile at 1 - 1e-6 of Gamma(shape, scale 1), by the Wilson-Hilferty cube-root
    approximation of the chi-square distribution (within 0.5 % for shape >= 20)."""
    dof = 2.0 * shape
    return 0.5 * dof * (1.0 - 2.0 / (9.0 * dof) + _THRESHOLD_Z * math.sqrt(2.0 / (9.0 * dof))) ** 3


def _box_sum(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of every ``height x width`` window of a 2-D array (integral image), 'valid' size."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    integral[1:, 1:] = values.cumsum(axis=0).cumsum(axis=1)
    return (
        integral[height:, width:]
        - integral[:-height, width:]
        - integral[height:, :-width]
        + integral[:-height, :-width]
    )


def _smallest_eigenvalue(patches: np.ndarray) -> float:
    """Smallest eigenvalue of the patch covariance, corrected for its Marchenko-Pastur bias.

    For ``n`` samples of ``d``-dimensional white noise the smallest sample eigenvalue
    concentrates at ``sigma^2 (1 - sqrt(d / n))^2``; dividing by that factor removes the
    downward bias (about 3.5 % of sigma^2 for 150 000 patches of 49 pixels).
    """
    count, dimension = patches.shape
    mean = patches.mean(axis=0, dtype=np.float64)
    gram = (patches.T @ patches).astype(np.float64)
    covariance = (gram - count * np.outer(mean, mean)) / (count - 1)
    smallest = float(np.linalg.eigvalsh(covariance)[0])
    return max(smallest, 0.0) / (1.0 - math.sqrt(dimension / count)) ** 2


def _within_patch_noise(patches: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`_smallest_eigenvalue` in the patch space without its mean (DC) direction, and
    the spectrum it was taken from.

    White noise has the same variance in every direction orthogonal to the patch mean, so
    this reads the noise even for patches picked by their mean brightness.
    """
    count, dimension = patches.shape
    spectrum = _within_patch_spectrum(patches)
    smallest = max(float(spectrum[0]), 0.0)
    return smallest / (1.0 - math.sqrt((dimension - 1) / count)) ** 2, spectrum


def _within_patch_spectrum(patches: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending) of the patch covariance without the mean (DC) direction."""
    count, dimension = patches.shape
    mean = patches.mean(axis=0, dtype=np.float64)
    gram = (patches.T @ patches).astype(np.float64)
    covariance = (gram - count * np.outer(mean, mean)) / (count - 1)
    basis = _within_patch_basis(dimension)
    return np.linalg.eigvalsh(basis.T @ covariance @ basis)


@functools.lru_cache(maxsize=8)
def _within_patch_basis(dimension: int) -> np.ndarray:
    """An orthonormal basis (``dimension x dimension - 1``) of the vectors summing to 0."""
    seed = np.hstack([np.ones((dimension, 1)), np.eye(dimension)[:, :-1]])
    basis, _ = np.linalg.qr(seed)
    return basis[:, 1:]


def estimate_noise_sigma(
    image: np.ndarray, patch_size: int = 7, iterations: int = 3, max_patches: int = 200_000
) -> float:
    """Standard deviation of additive white Gaussian noise, on the 0-255 scale.

    Weak-texture patch method of Liu, Tanaka & Okutomi ("Single-image noise level
    estimation for blind denoising", IEEE TIP 2013). For a patch ``y`` (a vector of
    ``p x p`` pixels) of pure noise, the gradient energy ``t(y) = |D_h y|^2 + |D_v y|^2``
    (central differences ``(y[i+1] - y[i-1]) / 2``) follows approximately
    ``sigma^2 Gamma(r / 2, 2 tr(D^T D) / r)`` with ``r = rank(D^T D)``. Starting from all
    patches, each iteration takes ``sigma^2`` as the smallest eigenvalue of the covariance
    of the current patches (noise is the only variance left in the least-textured
    direction), then keeps the patches with ``t(y) < sigma^2 q``, ``q`` the 1 - 1e-6
    quantile of that Gamma law. The smallest eigenvalue is divided by the Marchenko-Pastur
    factor ``(1 - sqrt(d / n))^2`` (our addition), which removes the method's known
    underestimate at high noise.

    Colour images: each channel is measured on its own and the mean is returned (the
    noise level of one channel, as ``sigma`` means for the denoisers). Measuring the
    channels jointly would read noise that is correlated across channels (a gray photo
    stored as RGB, luminance noise, chroma-subsampled JPEG) as almost none, since the
    least-textured direction is then a noise-free colour difference. Patches holding a
    pixel at exactly 0 or 1 (clipped, so noise-free there) are left out when enough others
    remain. Above ``max_patches`` patch positions a stride is used, so time and memory stay
    bounded for large photos.

    Args:
        image: noisy image in [0, 1] (clipped or not), ``H x W`` or ``H x W x C``.
        patch_size: side ``p`` of the square patches.
        iterations: estimate-and-select rounds (3, as the authors use).
        max_patches: about the largest number of patches used per channel.

    Example: ``estimate_noise_sigma(add_gaussian_noise(clean, 25))`` is about 25.
    """
    array = _checked_planes(image, patch_size)
    sigmas = [_plane_noise_sigma(array[:, :, channel], patch_size, iterations, max_patches)
              for channel in range(array.shape[2])]
    return float(np.mean(sigmas))


VARYING_SPREAD = 1.25
"""A noise level function counts as varying (:attr:`NoiseLevelFunction.varies`) when its
sigma differs by more than this factor (and :data:`VARYING_DIFFERENCE`) between two measured
brightness levels; otherwise the noise is taken as white, one sigma for the whole image."""

VARYING_DIFFERENCE = 2.0
"""The least difference of fitted sigma (0-255 scale) that counts as varying: below it a
per-pixel sigma changes little (nearly clean images often show such small differences)."""

_MIN_VARYING_BINS = 3
"""Brightness bins a channel needs measured before its noise can count as varying."""

_MIN_BRIGHTNESS_SPAN = 0.05
"""Bins spanning less brightness than this get a constant fit: a flat image has no trend."""

_BRIGHTNESS_WINDOW = 7
"""Side of the box over which a pixel's local brightness is averaged for the sigma map."""

_NOISE_SPECTRUM_RATIO = 1.5
"""A brightness bin is measured only when the smallest quarter of the eigenvalues of its
weak-texture patches are within this ratio (see :func:`estimate_noise_level_function`)."""

_CLIP_MARGIN = 2.0
"""Brightness bins closer than this many of their sigmas to 0 or 1 are left out."""


@dataclass(frozen=True, eq=False)
class NoiseLevelFunction:
    """Noise sigma as a function of brightness, per channel.

    Camera noise grows with the signal (photon shot noise), so the shadows and highlights
    of a photo are not equally noisy. Each channel's patches are split into brightness bins
    of equal counts and the weak-texture method measures the noise in each (bins whose
    noise clipping at 0 or 1 would cut are left out). ``brightness[c]`` holds the median
    mean of the patches each bin was measured on (0-1), ``sigmas[c]`` their noise sigmas
    (0-255). A polynomial in brightness (quadratic; lower with fewer bins or little
    brightness between them) is fitted to the variances, weighted by the square root of
    the patches each was measured on: ``variance_fits[c]``, highest power first.
    ``channel_sigmas`` are the white-noise estimates of :func:`estimate_noise_sigma`.
    """

    channel_sigmas: tuple[float, ...]
    brightness: tuple[np.ndarray, ...]
    sigmas: tuple[np.ndarray, ...]
    variance_fits: tuple[np.ndarray, ...]

    @property
    def sigma(self) -> float:
        """The white-noise estimate: :func:`estimate_noise_sigma` of the image."""
        return float(np.mean(self.channel_sigmas))

    def channel_sigma(self, channel: int, brightness: np.ndarray) -> np.ndarray:
        """Fitted sigma (0-255) of ``channel`` at ``brightness`` (0-1), held constant beyond
        the measured brightness and within the measured sigmas."""
        brightness = np.asarray(brightness)
        brightness = brightness.astype(np.result_type(brightness, np.float32), copy=False)
        measured, sigmas = self.brightness[channel], self.sigmas[channel]
        sigma = np.clip(brightness, float(measured.min()), float(measured.max()))
        sigma = np.polyval(self.variance_fits[channel].astype(brightness.dtype), sigma)
        np.sqrt(np.maximum(sigma, 0.0, out=sigma), out=sigma)
        return np.clip(sigma, float(sigmas.min()), float(sigmas.max()), out=sigma)

    @property
    def varies(self) -> bool:
        """Whether the noise depends on brightness enough to restore with a per-pixel sigma.

        True when in some channel with at least three measured brightness bins the fitted
        sigma differs by more than :data:`VARYING_SPREAD` and :data:`VARYING_DIFFERENCE`
        between two of them. Bins where texture would be read as noise are not measured
        (see :func:`estimate_noise_level_function`), so white noise on a detailed image does
        not count as varying.
        """
        for channel, levels in enumerate(self.brightness):
            if len(levels) < _MIN_VARYING_BINS:
                continue
            fitted = self.channel_sigma(channel, levels)
            if (fitted.max() > VARYING_SPREAD * fitted.min()
                    and fitted.max() - fitted.min() > VARYING_DIFFERENCE):
                return True
        return False

    def scaled(self, factor: float) -> NoiseLevelFunction:
        """The same function with every sigma multiplied by ``factor``."""
        return NoiseLevelFunction(tuple(sigma * factor for sigma in self.channel_sigmas),
                                  self.brightness, tuple(sigmas * factor for sigmas in self.sigmas),
                                  tuple(fit * factor ** 2 for fit in self.variance_fits))

    def sigma_map(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel sigma (0-255) for ``image`` in [0, 1] (the image measured, or the whole
        of which a crop was): the :meth:`channel_sigma_maps` averaged, as ``H x W`` float32."""
        maps = self.channel_sigma_maps(image)
        total = np.zeros(maps[0].shape, dtype=np.float32)
        for channel_map in maps:
            total += channel_map
        return total / np.float32(len(maps))

    def channel_sigma_maps(self, image: np.ndarray) -> list[np.ndarray]:
        """Per channel, the fitted sigma (0-255) at each pixel's local brightness in that
        channel, as ``H x W`` float32 maps."""
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[2] != len(self.variance_fits):
            raise ValueError(f"noise level function of {len(self.variance_fits)} channel(s), "
                             f"image of {array.shape[2]}")
        window = (_BRIGHTNESS_WINDOW, _BRIGHTNESS_WINDOW)
        return [self.channel_sigma(channel, cv2.blur(np.ascontiguousarray(array[:, :, channel]), window))
                for channel in range(array.shape[2])]


def estimate_noise_level_function(image: np.ndarray, patch_size: int = 7, iterations: int = 3,
                                  max_patches: int = 200_000, bins: int = 8) -> NoiseLevelFunction:
    """The :class:`NoiseLevelFunction` of ``image`` (``H x W`` or ``H x W x C`` in [0, 1]).

    Same method and arguments as :func:`estimate_noise_sigma`, run on the whole image (for
    ``sigma``) and on each of ``bins`` brightness bins. Within a bin only the variation
    inside the patches is measured: picking patches by their mean narrows the spread of
    the means, which would read as less noise. Left out are bins with fewer than ``4 p^2``
    patches, bins near 0 or 1 (clipping cuts their noise) and bins whose weak-texture
    patches still hold texture: white noise has the same variance in every direction of
    the patch space not taken by the signal, so the smallest quarter of the eigenvalues of
    their covariance (12 of 48) stay within :data:`_NOISE_SPECTRUM_RATIO`; texture in every
    patch (a detailed region under faint noise) spreads them and would read as more noise.
    """
    array = _checked_planes(image, patch_size)
    sigmas, brightness, bin_sigmas, fits = [], [], [], []
    for channel in range(array.shape[2]):
        patches = _PlanePatches.of(array[:, :, channel], patch_size, max_patches)
        sigmas.append(math.sqrt(patches.weak_texture_variance(patches.usable, iterations)))
        levels, variances, counts = _brightness_bins(patches, bins, iterations)
        if not levels.size:  # too few patches of any one brightness: white noise
            levels = np.array([float(np.median(patches.means[patches.usable]))])
            variances, counts = np.array([sigmas[-1] ** 2]), np.ones(1)
        degree = min(2, levels.size - 1) if np.ptp(levels) >= _MIN_BRIGHTNESS_SPAN else 0
        fits.append(np.polyfit(levels, variances, degree, w=np.sqrt(counts)) if degree
                    else np.array([np.average(variances, weights=np.sqrt(counts))]))
        brightness.append(levels)
        bin_sigmas.append(np.sqrt(variances))
    return NoiseLevelFunction(tuple(sigmas), tuple(brightness), tuple(bin_sigmas), tuple(fits))


def estimate_coarse_noise_level_function(image: np.ndarray, factor: int = 2,
                                         ) -> NoiseLevelFunction:
    """The noise level function of pixel noise measured at a coarser scale: on ``image``
    averaged over ``factor x factor`` blocks, every sigma multiplied by ``factor`` (averaging
    ``factor ** 2`` independent noisy pixels divides their noise's sigma by ``factor``).

    For noise whose finest scales were removed after it was added, JPEG compression above all:
    quantisation drops the high frequencies of an 8 x 8 block, so the weak-texture method, which
    reads the noise in the least-textured directions of small patches, finds almost none in a
    noisy photo saved at quality 60-80, though most of the noise is still there at coarser
    scales. The price is a floor of about 3 (0-255) on clean images, whose fine texture reads
    as noise once doubled: :mod:`formnet_cli.auto` uses it only where the image is a JPEG.
    """
    array = _checked_planes(image, 1)
    height, width = (length // factor * factor for length in array.shape[:2])
    blocks = array[:height, :width].reshape(height // factor, factor, width // factor, factor, -1)
    return estimate_noise_level_function(blocks.mean(axis=(1, 3))).scaled(factor)


def _brightness_bins(patches: _PlanePatches, bins: int, iterations: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(brightness, noise variance, patch count)`` of the measurable brightness bins (see
    :func:`estimate_noise_level_function`), darkest first: the median mean and the number of
    the weak-texture patches each bin's noise was measured on."""
    dimension = patches.patches.shape[1]
    means = patches.means[patches.usable]
    edges = np.quantile(means, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    which = np.full(patches.means.shape, -1)
    which[patches.usable] = np.searchsorted(edges, means, side="right")
    measured = []
    for index in range(bins):
        members = which == index
        count = int(np.count_nonzero(members))
        if count < 4 * dimension:
            continue
        variance, spectrum, selected = patches.within_patch_noise(members, iterations)
        if spectrum[max(len(spectrum) // 4, 1) - 1] > _NOISE_SPECTRUM_RATIO * spectrum[0]:
            continue  # no direction of pure noise: texture in every patch of the bin
        level = float(np.median(patches.means[selected]))
        margin = _CLIP_MARGIN * math.sqrt(variance) / 255.0
        if not margin < level < 1.0 - margin:  # noise cut by clipping at 0 or 1 reads low
            continue
        measured.append((level, variance, int(np.count_nonzero(selected))))
    if not measured:
        return np.empty(0), np.empty(0), np.empty(0)
    levels, variances, counts = (np.array(column, dtype=np.float64) for column in zip(*measured))
    return levels, variances, counts


class TooSmallToMeasure(ValueError):
    """An image with too few patches to measure its noise; ``needed`` is the side of the
    smallest square that has enough."""

    def __init__(self, width: int, height: int, needed: int) -> None:
        super().__init__(f"image too small to measure its noise: {width} x {height} pixels "
                         f"(about {needed} x {needed} needed)")
        self.needed = needed


def _checked_planes(image: np.ndarray, patch_size: int) -> np.ndarray:
    """``image`` as float64 ``H x W x C``; ``ValueError`` when too small to measure,
    ``TypeError`` for integer samples (the methods take images in [0, 1])."""
    check_unit_range(image, "noise estimation")
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {np.shape(image)}")
    height, width = array.shape[:2]
    # The covariance of p*p-pixel patches needs at least 2 p^2 patch positions.
    if min(height, width) < patch_size + 2 or (
            (height - patch_size + 1) * (width - patch_size + 1) < 2 * patch_size ** 2):
        raise TooSmallToMeasure(width, height, patch_size - 1 + math.ceil(math.sqrt(2) * patch_size))
    return array


def _plane_noise_sigma(plane: np.ndarray, patch_size: int, iterations: int,
                       max_patches: int) -> float:
    """:func:`estimate_noise_sigma` of one ``H x W`` channel in [0, 1]."""
    patches = _PlanePatches.of(plane, patch_size, max_patches)
    return math.sqrt(patches.weak_texture_variance(patches.usable, iterations))


@dataclass(frozen=True)
class _PlanePatches:
    """The ``p x p`` patches of one channel (strided for large planes), with what the
    weak-texture method needs per patch: texture strength, mean and clipping."""

    patches: np.ndarray
    """One row per patch, on the 0-255 scale, centred on the plane's mean (float32)."""
    texture: np.ndarray
    means: np.ndarray
    """Patch means on the 0-1 scale."""
    usable: np.ndarray
    """Patches without a clipped (exactly 0 or 1) pixel, or all when too few are left."""
    threshold: float
    """Texture threshold per unit of noise variance (the Gamma quantile)."""

    @classmethod
    def of(cls, plane: np.ndarray, patch_size: int, max_patches: int) -> _PlanePatches:
        dimension = patch_size * patch_size
        positions = (plane.shape[0] - patch_size + 1) * (plane.shape[1] - patch_size + 1)
        stride = max(1, math.ceil(math.sqrt(positions / max_patches)))

        # Texture strength of every patch: sums of squared central differences inside it.
        scaled = plane * 255.0
        horizontal = ((scaled[:, 2:] - scaled[:, :-2]) / 2.0) ** 2
        vertical = ((scaled[2:] - scaled[:-2]) / 2.0) ** 2
        texture = (_box_sum(horizontal, patch_size, patch_size - 2)
                   + _box_sum(vertical, patch_size - 2, patch_size))
        at_limit = ((plane == 0.0) | (plane == 1.0)).astype(np.float64)
        clipped = _box_sum(at_limit, patch_size, patch_size)
        means = _box_sum(plane, patch_size, patch_size) / dimension
        texture, clipped, means = (values[::stride, ::stride].ravel()
                                   for values in (texture, clipped, means))
        # Patches in float32, centred on the plane's mean so that the Gram matrix loses no
        # precision that matters (estimates agree with float64 to 1e-3; twice as fast).
        centred = (scaled - scaled.mean()).astype(np.float32)
        windows = sliding_window_view(centred, (patch_size, patch_size))[::stride, ::stride]
        patches = windows.reshape(-1, dimension)  # one row per patch (a copy)

        # Threshold scale: for pure noise, t ~ sigma^2 Gamma(r / 2, 2 tr / r).
        trace, rank = _gradient_operator_stats(patch_size)
        threshold = _gamma_quantile(rank / 2.0) * 2.0 * trace / rank
        usable = clipped < 0.5
        if np.count_nonzero(usable) < 2 * dimension:
            usable = np.ones_like(usable)
        return cls(patches, texture, means, usable, threshold)

    def weak_texture_variance(self, candidates: np.ndarray, iterations: int) -> float:
        """Noise variance of the ``candidates`` patches by the iterative weak-texture method."""
        (variance, _), _selected = self._weak_texture(
            candidates, iterations, lambda rows: (_smallest_eigenvalue(rows), None))
        return variance

    def within_patch_noise(self, candidates: np.ndarray, iterations: int
                           ) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`weak_texture_variance` measuring only the variation inside each patch (its
        mean removed), with the covariance spectrum and the mask of the patches measured
        last. Needed when the candidates were chosen by their mean, which leaves the mean
        direction with less than the noise's variance."""
        (variance, spectrum), selected = self._weak_texture(candidates, iterations,
                                                            _within_patch_noise)
        return variance, spectrum, selected

    def _weak_texture(self, candidates: np.ndarray, iterations: int,
                      measure: Callable[[np.ndarray], tuple[float, Any]]
                      ) -> tuple[tuple[float, Any], np.ndarray]:
        """``measure`` (variance first) of the candidates, then of those with less texture
        than that variance allows, ``iterations`` times in all; and the patches measured."""
        selected = candidates
        result = measure(self.patches[selected])
        for _ in range(iterations - 1):
            candidate = candidates & (self.texture < result[0] * self.threshold)
            if np.count_nonzero(candidate) < 2 * self.patches.shape[1]:
                break
            selected = candidate
            result = measure(self.patches[selected])
        return result, selected


@functools.lru_cache(maxsize=8)
def _gradient_operator_stats(patch_size: int) -> tuple[float, int]:
    """``tr(D^T D)`` and ``rank(D^T D)`` of the stacked central-difference operator ``D``
    of one ``patch_size x patch_size`` channel (differences taken inside the patch)."""
    rows = []
    for i in range(patch_size):
        for j in range(1, patch_size - 1):
            for di, dj in ((0, 1), (1, 0)):  # horizontal at (i, j), vertical at (j, i)
                row = np.zeros((patch_size, patch_size))
                a, b = (i, j) if di == 0 else (j, i)
                row[a + di, b + dj] = 0.5
                row[a - di, b - dj] = -0.5
                rows.append(row.ravel())
    operator = np.array(rows)
    gram = operator.T @ operator
    return float(np.trace(gram)), int(np.linalg.matrix_rank(gram))
