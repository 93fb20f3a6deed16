"""How blocky an image is: the trace JPEG's 8 x 8 blocks leave in a decoded image.

A JPEG file says it is one (its quantisation tables: :func:`formnet_cli.io.estimate_jpeg_quality`);
an image that was a JPEG once and was saved again (a PNG screenshot of a JPEG, a decoded
upload) says so only in its pixels: each 8 x 8 block is quantised on its own, so brightness
steps between blocks that the picture does not have.
"""

from __future__ import annotations

import numpy as np

from formnet_cli.imaging.degradations import check_unit_range
from formnet_cli.imaging.samples import float_values

__all__ = ["BLOCK", "jpeg_blockiness", "luminance"]

BLOCK = 8
"""The side of a JPEG block (of the luminance; chroma blocks are 16 pixels with 4:2:0)."""

_LUMA = np.array([0.299, 0.587, 0.114])
_BACKGROUND = 0.05
"""A share of positions counted as peaks in every phase: in a drawing or a flat picture, whose
steps peak in few places at all, a handful of edges falling on one phase is not a grid (a
photo's steps peak at about a third of the positions, so this changes its score little)."""


def jpeg_blockiness(image: np.ndarray) -> float:
    """How much more often brightness steps peak on one column (and row) of every 8 than on
    the others, in both halves of the image: about 1 for an image never JPEG-compressed (up to
    1.25 for a photo with a strong regular texture, 1.35 for a drawing), 1.6-4 for most photos
    compressed at quality 40 or less (``H x W`` or ``H x W x C`` in [0, 1]; colour is measured
    on its luminance).

    Along each axis, a step between two neighbouring pixels counts as a peak where it is larger
    than the steps on either side of it (flat areas count nothing); the share of positions
    that peak is taken in each of the 8 phases of an 8-pixel grid, over its lines but the one
    that peaks most (one long straight edge, the horizon or a drawing's frame, is not a grid:
    JPEG's shows on every line of its phase). The axis's score is, at the
    phase with the most peaks, its share over the mean of the other seven, both raised by
    :data:`_BACKGROUND`, in the half of the image (left or right, top or bottom) where that is
    lower: JPEG's block edges fall on one phase all over the image (whichever crop it is),
    a drawing's few edges may fall on one by chance in a part of it. The result is the
    geometric mean of the two axes' scores; 1.0 for an image too small to tell (under 4 blocks
    a side).
    """
    check_unit_range(image, "jpeg_blockiness")
    array = luminance(image)
    if min(array.shape) < 4 * BLOCK:
        return 1.0
    return float(np.sqrt(_axis_score(array, 0) * _axis_score(array, 1)))


def luminance(image: np.ndarray, rows: int = 256) -> np.ndarray:
    """The float64 ``H x W`` plane blockiness is measured on: a gray image as it is, colour
    (``H x W x 3``, float in [0, 1], or 8- or 16-bit samples read as value / 255 or / 65535)
    as luminance, computed ``rows`` at a time (no float64 copy of the whole colour image)."""
    if image.ndim == 2 or image.shape[2] == 1:
        plane = image if image.ndim == 2 else image[:, :, 0]
        return _unit_float64(plane)
    plane = np.empty(image.shape[:2], np.float64)
    for top in range(0, image.shape[0], rows):
        plane[top:top + rows] = _unit_float64(image[top:top + rows, :, :3]) @ _LUMA
    return plane


def _unit_float64(values: np.ndarray) -> np.ndarray:
    """As float64; integer samples through float32 in [0, 1], as the API reads them."""
    return np.asarray(float_values(values), dtype=np.float64)


def _axis_score(plane: np.ndarray, axis: int) -> float:
    # in 64ths of an 8-bit level: equal steps compare equal, whatever the float precision
    steps = np.diff(np.moveaxis(plane, axis, 0), axis=0)
    np.abs(steps, out=steps)  # in place: one image-sized temporary at a time
    steps *= 255.0 * 64.0
    np.rint(steps, out=steps)
    peaks = steps[1:-1] > np.maximum(steps[:-2], steps[2:])
    strongest = int(np.argmax(_phase_shares(peaks)))
    return min(_ratio(_phase_shares(half), strongest) for half in np.array_split(peaks, 2, axis=1))


def _phase_shares(peaks: np.ndarray) -> np.ndarray:
    """The share of positions that peak in each of the 8 phases (along the first axis), the
    line of the phase that peaks most left out."""
    along = peaks.mean(axis=1)
    return np.array([np.sort(along[phase::BLOCK])[:-1].mean() for phase in range(BLOCK)])


def _ratio(shares: np.ndarray, phase: int) -> float:
    others = np.delete(shares, phase).mean()
    return float((shares[phase] + _BACKGROUND) / (others + _BACKGROUND))
