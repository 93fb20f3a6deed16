"""Pixel samples: 8- and 16-bit integers, and floats where 1.0 is the integers' maximum.

The one home of the conversions between them, for the decoders and encoders, the tiling and
the measurements alike.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INTEGER_MAXIMUM", "dequantise", "float32_values", "float_values", "quantise"]

INTEGER_MAXIMUM = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
"""The integer pixel types read and written, and the value that stands for 1.0."""


def dequantise(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as a new float32 array in [0, 1] (integers over their maximum)."""
    if pixels.dtype in INTEGER_MAXIMUM:
        return pixels.astype(np.float32) / np.float32(INTEGER_MAXIMUM[pixels.dtype])
    return pixels.astype(np.float32)


def float_values(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as floats in [0, 1]: integer samples converted (:func:`dequantise`), floats
    as they are (not copied)."""
    return dequantise(pixels) if pixels.dtype in INTEGER_MAXIMUM else pixels


def float32_values(pixels: np.ndarray) -> np.ndarray:
    """As :func:`float_values`, in float32 (float32 pixels not copied)."""
    return float_values(pixels).astype(np.float32, copy=False)


def quantise(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float ``pixels`` as ``dtype``: integers clamped to [0, 1] and rounded; floats as they are."""
    if dtype in INTEGER_MAXIMUM:
        return np.rint(np.clip(pixels, 0.0, 1.0) * INTEGER_MAXIMUM[dtype]).astype(dtype)
    return pixels
