"""The pixel limit: the largest image read, decoding under it (a decompression-bomb guard), and
opening a file for its header only, whatever its size."""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from formnet_cli.errors import InvalidOptionError

MAX_MEGAPIXELS_VARIABLE = "FORMNET_MAX_MEGAPIXELS"
DEFAULT_MAX_MEGAPIXELS = 1000.0
"""Largest image read (a 100-400 MP camera frame or a large-format scan passes); anything
bigger is refused as a possible decompression bomb unless ``$FORMNET_MAX_MEGAPIXELS`` allows it."""


def max_pixels() -> int:
    """The largest image read, in pixels: ``$FORMNET_MAX_MEGAPIXELS`` or the default."""
    text = os.environ.get(MAX_MEGAPIXELS_VARIABLE, "").strip()
    try:
        megapixels = float(text) if text else DEFAULT_MAX_MEGAPIXELS
    except ValueError:
        megapixels = math.nan
    if not (megapixels > 0 and math.isfinite(megapixels)):
        raise InvalidOptionError(f"{MAX_MEGAPIXELS_VARIABLE} must be a positive number of "
                                 f"megapixels, got {text!r}")
    return int(megapixels * 1e6)


_DECODING = threading.RLock()
"""Held while decoding under :func:`pixel_limit`: Pillow's limit and the warning filters are
process-wide, so threads decode one at a time and each finds Pillow's own state restored."""


@contextmanager
def pixel_limit() -> Iterator[None]:
    """Decode under :func:`max_pixels`: Pillow's decompression-bomb check (its warning zone
    included) refuses anything larger. Pillow's own limit is restored afterwards."""
    limit = max_pixels()
    with _DECODING:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                # "Corrupt EXIF data" and the like: the file's own error, or nothing, says it.
                warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def too_large_reason(exc: BaseException) -> str:
    """The one-line reason for an image over the limit."""
    return (f"image too large, refused as a possible decompression bomb ({exc}); set "
            f"{MAX_MEGAPIXELS_VARIABLE} (now {max_pixels() / 1e6:g}) to read larger images")


def open_header(source: str | os.PathLike[str] | bytes) -> Image.Image:
    """Open an image file (a path, or its bytes) for its header only (format, size, profile,
    EXIF, JPEG tables), whatever the image's size: Pillow's own limit, which refuses large
    images on opening, is lifted while it opens; nothing is decoded."""
    with _DECODING:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
