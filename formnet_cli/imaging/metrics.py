"""Image quality metrics of the benchmark protocol: PSNR and SSIM (Wang et al., 2004).

Inputs are arrays on the uint8 scale (``data_range = 255``, the default; pass 1.0 for
images in [0, 1]) of shape ``H x W`` or
``H x W x C``; everything is computed in float64. For super-resolution, ``sr_psnr`` and
``sr_ssim`` measure the MATLAB ``rgb2ycbcr`` luma with ``scale`` border pixels cropped.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from formnet_cli.imaging.degradations import rgb_to_y

__all__ = ["psnr", "ssim", "y_channel", "sr_psnr", "sr_ssim"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _prepare(reference: np.ndarray, test: np.ndarray, border: int,
             data_range: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Both images as float64, ``border`` cropped, and the data range: 255 when not given,
    unless both are floats within [0, 1] (then it must be given: 1.0, or 255 for dark images)."""
    reference, test = np.asarray(reference), np.asarray(test)
    if data_range is None and all(np.issubdtype(a.dtype, np.floating) and a.size and a.max() <= 1.0
                                  for a in (reference, test)):
        raise ValueError("both images lie in [0, 1]: pass data_range=1.0 (the default, 255, is the "
                         "uint8 scale; pass it for dark images on that scale)")
    reference = reference.astype(np.float64)
    test = test.astype(np.float64)
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    if reference.ndim not in (2, 3):
        raise ValueError(f"expected H x W or H x W x C, got shape {reference.shape}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border:
        reference = reference[border:-border, border:-border]
        test = test[border:-border, border:-border]
    if reference.size == 0:
        raise ValueError("nothing left to measure after cropping the border")
    return reference, test, 255.0 if data_range is None else float(data_range)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float | None = None, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``.

    The MSE is taken over all pixels and channels after cropping ``border`` pixels from each
    side. Identical images give ``math.inf``.

    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 5.0)), 4)
    34.1514
    """
    reference, test, data_range = _prepare(reference, test, border, data_range)
    mse = float(np.mean((reference - test) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    window = cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA, cv2.CV_64F)
    radius = _SSIM_WINDOW // 2

    def blur(image: np.ndarray) -> np.ndarray:
        # Any border mode works: the border-affected rim is cropped below ("valid" region).
        filtered = cv2.sepFilter2D(image, cv2.CV_64F, window, window, borderType=cv2.BORDER_REFLECT)
        return filtered[radius:-radius, radius:-radius]

    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float | None = None, border: int = 0) -> float:
    """Structural similarity of Wang et al. (2004), averaged over channels.

    With Gaussian-weighted local statistics (11 x 11 window, sigma 1.5, population
    covariance) ``mu``, ``var``, ``cov`` and ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``::

        SSIM = mean over valid pixels of
               (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))

    "Valid" pixels are those whose window lies inside the image (a 5-pixel rim is dropped),
    which matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` and MATLAB's ``ssim_index``. Identical images
    give 1.0. Needs at least 11 x 11 pixels after cropping ``border``.
    """
    reference, test, data_range = _prepare(reference, test, border, data_range)
    if min(reference.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW} x {_SSIM_WINDOW} pixels, got {reference.shape[:2]}")
    if reference.ndim == 2:
        return _ssim_channel(reference, test, data_range)
    channels = [
        _ssim_channel(np.ascontiguousarray(reference[..., c]), np.ascontiguousarray(test[..., c]), data_range)
        for c in range(reference.shape[2])
    ]
    return float(np.mean(channels))


def y_channel(image_uint8: np.ndarray) -> np.ndarray:
    """Luma on the 0-255 scale as MATLAB's ``rgb2ycbcr`` gives it for a uint8 RGB image.

    ``Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255)`` for RGB in 0..255 (MATLAB
    rounds because its output is uint8), returned as float64. A gray image (``H x W`` or
    ``H x W x 1``) is returned unchanged, as float64 ``H x W``.
    """
    image = np.asarray(image_uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return image.astype(np.float64)
    return np.round(rgb_to_y(image.astype(np.float64) / 255.0) * 255.0)


def sr_psnr(hr_uint8: np.ndarray, sr_uint8: np.ndarray, scale: int) -> float:
    """Super-resolution PSNR: :func:`psnr` of the :func:`y_channel` with ``scale`` pixels of border cropped."""
    return psnr(y_channel(hr_uint8), y_channel(sr_uint8), border=int(scale))


def sr_ssim(hr_uint8: np.ndarray, sr_uint8: np.ndarray, scale: int) -> float:
    """Super-resolution SSIM: :func:`ssim` of the :func:`y_channel` with ``scale`` pixels of border cropped."""
    return ssim(y_channel(hr_uint8), y_channel(sr_uint8), border=int(scale))
