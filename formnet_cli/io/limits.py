"""The pixel limit and the memory a file will take: the largest image read (a decompression-bomb
guard), decoding with Pillow's own limit lifted (formnet checks first), and opening a file for
its header only.

The limit is ``$FORMNET_MAX_MEGAPIXELS`` or, by default, the smaller of a fixed ceiling
(:data:`DEFAULT_MAX_MEGAPIXELS`) and what this machine's memory could restore at all
(:data:`LEAST_BYTES_PER_PIXEL` a pixel). The header checks that use it (every page, before any
pixel is decoded) are in :mod:`formnet_cli.io.header`.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
from PIL import Image

from formnet_cli.errors import InvalidOptionError

MAX_MEGAPIXELS_VARIABLE = "FORMNET_MAX_MEGAPIXELS"
DEFAULT_MAX_MEGAPIXELS = 1000.0
"""The fixed ceiling of the default limit (a 100-400 MP camera frame or a large-format scan
passes); anything bigger is refused as a possible decompression bomb unless
``$FORMNET_MAX_MEGAPIXELS`` allows it."""
LEAST_BYTES_PER_PIXEL = 26
"""The least memory a restore takes a pixel (8-bit grey, one pass): its decoded samples (2
bytes), the float page and its result (8) and the engine's whole-image buffers (16). The default
limit is no larger than the machine's memory over this: a larger image could never be restored."""


def memory_megapixels() -> float:
    """The largest image, in megapixels, that this machine's memory could restore at all."""
    return psutil.virtual_memory().total / LEAST_BYTES_PER_PIXEL / 1e6


def max_pixels() -> int:
    """The largest image read, in pixels: ``$FORMNET_MAX_MEGAPIXELS``, or the default (the
    ceiling, or what the machine's memory could restore where that is less)."""
    text = os.environ.get(MAX_MEGAPIXELS_VARIABLE, "").strip()
    try:
        megapixels = float(text) if text else min(DEFAULT_MAX_MEGAPIXELS, memory_megapixels())
    except ValueError:
        megapixels = math.nan
    if not (megapixels > 0 and math.isfinite(megapixels)):
        raise InvalidOptionError(f"{MAX_MEGAPIXELS_VARIABLE} must be a positive number of "
                                 f"megapixels, got {text!r}")
    return int(megapixels * 1e6)


def describe_limit() -> str:
    """The limit in words, where it comes from, and how to change it (the end of a message)."""
    limit = max_pixels() / 1e6
    if not os.environ.get(MAX_MEGAPIXELS_VARIABLE, "").strip() and limit < DEFAULT_MAX_MEGAPIXELS:
        source = (f", what this machine's {psutil.virtual_memory().total / 2**30:.0f} GiB of "
                  "memory can restore")
    else:
        source = ""
    return (f"the limit of {limit:.4g} MP{source}; set {MAX_MEGAPIXELS_VARIABLE} (now "
            f"{limit:.4g}) to read larger images")


def available_memory() -> int:
    """Bytes of host memory available to a new allocation now."""
    return int(psutil.virtual_memory().available)


_DECODING = threading.RLock()
"""Held while opening or decoding (:func:`decoding`, :func:`open_header`): Pillow's limit and
the warning filters are process-wide, so threads decode one at a time and each finds Pillow's
own state restored."""


@contextmanager
def decoding() -> Iterator[None]:
    """Open and decode under formnet's own checks: Pillow's decompression-bomb limit is lifted
    (formnet checks every page's header against :func:`max_pixels` and the memory, with its
    own message, before any pixel is decoded: :mod:`formnet_cli.io.header`), its warnings are
    silenced (the error, or nothing, says it), and Pillow's own limit is restored afterwards."""
    with _DECODING:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with warnings.catch_warnings():
                # "Corrupt EXIF data" and the like: the file's own error, or nothing, says it.
                warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def too_large_reason(width: int, height: int) -> str:
    """The one-line reason for an image over the limit."""
    return (f"image too large, refused as a possible decompression bomb ({width} x {height} = "
            f"{width * height / 1e6:.4g} MP, over {describe_limit()})")


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
