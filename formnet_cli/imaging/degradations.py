"""Protocol degradations and colour conversions (pure numpy; see docs/BENCHMARK.md).

Every function here is deterministic: the noise is seeded, JPEG goes through Pillow in
memory, and ``imresize`` reproduces MATLAB's bicubic ``imresize`` so that super-resolution
figures can be compared with published ones.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "add_gaussian_noise",
    "add_camera_noise",
    "jpeg_compress",
    "imresize",
    "cubic_kernel",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "rgb_to_y",
    "modcrop",
]


def check_unit_range(image: np.ndarray, function: str) -> None:
    """Raise ``TypeError`` for integer samples given to a function of images in [0, 1] (a
    uint8 image would be read as nearly white noise-free pixels or a sigma 255 times too large)."""
    dtype = np.asarray(image).dtype
    if np.issubdtype(dtype, np.integer):
        raise TypeError(f"{function} expects a float image in [0, 1], got {dtype} "
                        f"(divide by {np.iinfo(dtype).max})")


def add_gaussian_noise(clean: np.ndarray, sigma: float, seed: int | None = 0) -> np.ndarray:
    """Additive white Gaussian noise exactly as the benchmark protocol makes it.

    ``noisy = x + n`` with ``x = float64(clean)`` and
    ``n = RandomState(seed).normal(0, sigma / 255, x.shape)`` (a fresh generator per call,
    as DnCNN and KAIR do); the result is **not** clipped and is cast to float32.

    Args:
        clean: image in [0, 1], ``H x W`` or ``H x W x C``.
        sigma: noise standard deviation on the 0-255 scale.
        seed: seed of the ``numpy.random.RandomState``; ``None`` draws fresh entropy.

    >>> add_gaussian_noise(np.zeros((2, 2)), 25.0).dtype
    dtype('float32')
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    check_unit_range(clean, "add_gaussian_noise")
    x = np.asarray(clean, dtype=np.float64)
    noise = np.random.RandomState(seed).normal(0.0, sigma / 255.0, x.shape)
    return (x + noise).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to sRGB-encoded values (IEC 61966-2-1)."""
    linear = np.clip(linear, 0.0, None)
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.maximum(linear, 0.0031308) ** (1 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light."""
    return np.where(encoded <= 0.04045, encoded / 12.92,
                    ((np.maximum(encoded, 0.04045) + 0.055) / 1.055) ** 2.4)


def add_camera_noise(clean_uint8: np.ndarray, shot: float, read: float, encoding: str = "linear",
                     seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-Gaussian sensor noise, variance ``shot * x + read**2`` at linear brightness ``x``.

    ``encoding="linear"`` adds it to the image's values (``x`` is the value; not clipped, as
    :func:`add_gaussian_noise`); ``"srgb"`` decodes the image to linear light, adds it there
    and encodes back to sRGB, clipped and rounded to 8 bits, as a camera writes a photo (the
    sRGB curve makes the shadows the noisiest). ``read`` is on the [0, 1] scale; the normal
    draws are ``RandomState(seed).normal(size=shape)``.

    Returns ``(noisy float32 H x W x C, true sigma H x W on the [0, 1] scale)``: the noise's
    standard deviation per pixel, averaged over the channels; for ``"srgb"`` the linear one
    times the slope of the sRGB curve at the clean pixel (a first-order approximation, capped
    at 0.5 where the curve is steepest, near black).
    """
    if encoding not in ("linear", "srgb"):
        raise ValueError(f"encoding must be 'linear' or 'srgb', got {encoding!r}")
    if np.asarray(clean_uint8).dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {np.asarray(clean_uint8).dtype}")
    x = np.asarray(clean_uint8, dtype=np.float64) / 255.0
    if x.ndim == 2:
        x = x[..., None]
    normal = np.random.RandomState(seed).normal(size=x.shape)
    if encoding == "linear":
        std = np.sqrt(shot * x + read * read)
        return (x + std * normal).astype(np.float32), std.mean(axis=2)
    linear = srgb_decode(x)
    std_linear = np.sqrt(shot * linear + read * read)
    noisy = np.round(np.clip(srgb_encode(linear + std_linear * normal), 0.0, 1.0) * 255.0) / 255.0
    step = 1e-4
    low = np.maximum(linear - step, 0.0)
    slope = (srgb_encode(linear + step) - srgb_encode(low)) / (linear + step - low)
    return noisy.astype(np.float32), np.minimum(slope * std_linear, 0.5).mean(axis=2)


def jpeg_compress(image_uint8: np.ndarray, quality: int) -> np.ndarray:
    """Encode with Pillow's JPEG encoder at ``quality`` (1-100) in memory and decode again.

    A gray image (``H x W`` or ``H x W x 1``) is coded as one-channel JPEG and keeps its
    shape; an RGB image uses Pillow's default chroma subsampling (4:2:0).
    """
    array = np.asarray(image_uint8)
    if array.dtype != np.uint8:
        raise TypeError(f"jpeg_compress expects uint8, got {array.dtype}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    squeeze = array.ndim == 3 and array.shape[2] == 1
    pil = Image.fromarray(array[..., 0] if squeeze else array)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert(pil.mode))
    return out[..., None] if squeeze else out


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``).

    ``k(t) = 1.5|t|^3 - 2.5|t|^2 + 1`` for ``|t| <= 1``,
    ``k(t) = -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2`` for ``1 < |t| <= 2``, else 0.
    """
    t = np.abs(np.asarray(x, dtype=np.float64))
    t2, t3 = t * t, t * t * t
    inner = (1.5 * t3 - 2.5 * t2 + 1.0) * (t <= 1)
    outer = (-0.5 * t3 + 2.5 * t2 - 4.0 * t + 2.0) * ((t > 1) & (t <= 2))
    return inner + outer


def _resize_weights(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and (0-based) source indices of MATLAB's bicubic resize along one axis.

    Output pixel ``i`` (1-based) maps to ``u = i / scale + (1 - 1 / scale) / 2`` in the input.
    When shrinking (``scale < 1``) the kernel is stretched to ``scale * k(scale * t)``, which
    is MATLAB's antialiasing; its support is then ``4 / scale`` pixels. Each row of weights
    is normalised to sum to 1; indices outside the image are mirrored (``symmetric``).
    """
    antialias = scale < 1
    kernel_width = 4.0 / scale if antialias else 4.0
    u = np.arange(1, out_length + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(scale * distance) if antialias else cubic_kernel(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: 1..n, n..1 repeated.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)  # drop all-zero taps, as MATLAB does
    return weights[:, keep], indices[:, keep]


def _resize_axis(array: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    weights, indices = _resize_weights(array.shape[axis], out_length, scale)
    moved = np.moveaxis(array, axis, 0)
    out = np.zeros((out_length,) + moved.shape[1:], dtype=np.float64)
    shape = (out_length,) + (1,) * (moved.ndim - 1)
    for tap in range(weights.shape[1]):
        out += weights[:, tap].reshape(shape) * moved[indices[:, tap]]
    return np.moveaxis(out, 0, axis)


def imresize(
    image: np.ndarray,
    scale: float | None = None,
    output_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking).

    Give either ``scale`` (output size ``ceil(scale * input size)``, MATLAB's rule) or
    ``output_shape = (H, W)`` (then each axis uses its own scale ``out / in``). The resize is
    separable: one pass per axis, the axis with the smaller scale first (MATLAB's order).
    Values are not rounded or clipped. A float32 input gives float32; anything else float64.

    Example: ``lr = imresize(hr, 1 / 4)`` then ``sr_bicubic = imresize(lr, 4)``.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"imresize expects H x W or H x W x C, got shape {array.shape}")
    in_shape = array.shape[:2]
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        scales = (float(scale), float(scale))
        out_shape = tuple(math.ceil(scale * n) for n in in_shape)
    else:
        out_shape = (int(output_shape[0]), int(output_shape[1]))
        if min(out_shape) < 1:
            raise ValueError(f"output_shape must be positive, got {output_shape}")
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
    out = array.astype(np.float64)
    for axis in sorted((0, 1), key=lambda a: scales[a]):  # stable: rows first on ties
        if out_shape[axis] != in_shape[axis] or scales[axis] != 1.0:
            out = _resize_axis(out, axis, out_shape[axis], scales[axis])
    return out.astype(np.float32) if array.dtype == np.float32 else out


# MATLAB rgb2ycbcr for images in [0, 1]: ycbcr = OFFSET + MATRIX @ rgb (ITU-R BT.601, studio
# range: Y in [16, 235] / 255, Cb and Cr in [16, 240] / 255).
_YCBCR_MATRIX = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` for float RGB in [0, 1] (``H x W x 3``), result in [0, 1].

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``,
    ``Cb = (128 - 37.797 R - 74.203 G + 112 B) / 255``,
    ``Cr = (128 + 112 R - 93.786 G - 18.214 B) / 255``. Computed in float64.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected a trailing axis of 3 channels, got shape {rgb.shape}")
    return rgb @ _YCBCR_MATRIX.T + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``), not clipped, float64."""
    ycbcr = np.asarray(ycbcr, dtype=np.float64)
    if ycbcr.shape[-1] != 3:
        raise ValueError(f"expected a trailing axis of 3 channels, got shape {ycbcr.shape}")
    return (ycbcr - _YCBCR_OFFSET) @ np.linalg.inv(_YCBCR_MATRIX).T


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma ``Y`` of :func:`rgb_to_ycbcr` (``H x W``, [0, 1] scale), float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected a trailing axis of 3 channels, got shape {rgb.shape}")
    return rgb @ _YCBCR_MATRIX[0] + _YCBCR_OFFSET[0]


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so that height and width are multiples of ``scale``."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]
