"""A JPEG's quality, estimated from its quantisation tables (read from the file's header,
whatever the image's size)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from formnet_cli.io.limits import open_header

__all__ = ["STANDARD_LUMINANCE_TABLE", "estimate_jpeg_quality", "luminance_table"]


# ITU-T T.81 Annex K luminance quantisation table (natural row-major order), the base that
# the IJG library (and Pillow) scale by quality.
STANDARD_LUMINANCE_TABLE = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.int64,
)  # fmt: skip


def _ijg_luminance_tables() -> np.ndarray:
    """IJG luminance tables for quality 1..100 (row q-1): ``clip((T * s + 50) // 100, 1, 255)``
    with ``s = 5000 / q`` for ``q < 50`` and ``s = 200 - 2 q`` otherwise."""
    qualities = np.arange(1, 101)
    scale = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    return np.clip((STANDARD_LUMINANCE_TABLE[None, :] * scale[:, None] + 50) // 100, 1, 255)


def luminance_table(quality: int) -> np.ndarray:
    """The 64 steps of the luminance quantisation table the IJG library (and Pillow) use at
    ``quality`` (1..100)."""
    return _ijg_luminance_tables()[quality - 1]


def estimate_jpeg_quality(path_or_image: str | os.PathLike[str] | bytes | Image.Image) -> int | None:
    """IJG quality (1..100) whose scaled standard luminance table best matches the file's
    (a path, the file's bytes, or an opened image).

    Reads the first quantisation table (``PIL.Image.quantization[0]``) and returns the
    quality minimising the sum of absolute differences to the IJG table for that quality
    (exact for files written by libjpeg / Pillow; a best match for other encoders; the
    highest such quality on ties). Returns ``None`` for an image that is not a JPEG.
    """
    if isinstance(path_or_image, Image.Image):
        return _quality_from_pil(path_or_image)
    with open_header(path_or_image) as image:  # a 200 MP photo too: only its tables are read
        return _quality_from_pil(image)


def _quality_from_pil(image: Image.Image) -> int | None:
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables:
        return None
    luminance = np.asarray(tables[min(tables)], dtype=np.int64)
    if luminance.size != 64:
        return None
    errors = np.abs(_ijg_luminance_tables() - luminance[None, :]).sum(axis=1)
    best = np.flatnonzero(errors == errors.min())
    return int(best[-1] + 1)
