"""The decoded image: :class:`LoadedImage` (pixels, alpha, bit depth and the metadata carried
over) and the conversions between [0, 1] floats and integer samples.

>>> image = LoadedImage(np.full((2, 3, 1), 0.5, np.float32))
>>> to_uint(image.pixels, 8)[0, 0, 0]
np.uint8(128)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from formnet_cli.imaging.samples import INTEGER_MAXIMUM, float32_values
from formnet_cli.io.metadata import upright_exif


@dataclass
class LoadedImage:
    """Decoded pixels plus what must survive to the output file.

    ``pixels`` is ``H x W x C`` (C in {1, 3}), upright (EXIF orientation applied): the samples
    as decoded (``uint8`` or ``uint16``: a large photo is never held as floats), or float32 in
    [0, 1]; :attr:`float_pixels` reads them as floats. ``alpha`` is ``H x W`` of the same kind
    (integers of the same type, or float32 in [0, 1]), or None. ``bit_depth`` (8 or 16) is the
    depth written back where the format allows it. ``exif`` is a Pillow EXIF block
    (``b"Exif\\0\\0"`` + TIFF structure) whose orientation is 1. ``dpi`` is the resolution
    (x, y) in pixels per inch, ``xmp`` the XMP packet, ``text`` descriptive text by PNG keyword
    (``Description``, ``Author``, ``Copyright``, ``Comment``, ...). ``colour_description`` is a
    HEIF's nclx colour description (``color_primaries``, ``transfer_characteristics``,
    ``matrix_coefficients``, ``full_range_flag``) where the file has no ICC profile.
    ``bilevel``: the file held 1-bit (black and white) pixels, read as 8-bit grey. ``gamma`` is
    a PNG's gAMA (the samples' encoding exponent: 1.0 for linear light), written back to PNG.
    ``decoder_warnings``: what the C libraries printed while decoding a file they still decoded
    (``Corrupt JPEG data: ...``): its pixels may show the damage.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source_format: str | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    colour_description: dict[str, int] | None = None
    bilevel: bool = False
    gamma: float | None = None
    decoder_warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.dtype not in INTEGER_MAXIMUM:
            pixels = pixels.astype(np.float32, copy=False)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be H x W x C with C in (1, 3), got {pixels.shape}")
        self.pixels = pixels
        if self.alpha is not None:
            alpha = np.asarray(self.alpha)
            if alpha.ndim == 3 and alpha.shape[2] == 1:
                alpha = alpha[:, :, 0]
            if alpha.shape != pixels.shape[:2]:
                raise ValueError(f"alpha shape {alpha.shape} does not match {pixels.shape[:2]}")
            self.alpha = _like(alpha, pixels.dtype)
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def float_pixels(self) -> np.ndarray:
        """The pixels as float32 in [0, 1] (a new array where they are integer samples)."""
        return float32_values(self.pixels)

    @property
    def float_alpha(self) -> np.ndarray | None:
        """Alpha as float32 in [0, 1], or None."""
        return None if self.alpha is None else float32_values(self.alpha)

    @property
    def transparent(self) -> bool:
        """Whether any pixel is less than opaque."""
        if self.alpha is None:
            return False
        return bool((self.alpha < INTEGER_MAXIMUM.get(self.alpha.dtype, 1.0)).any())

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]


def resized(image: LoadedImage, pixels: np.ndarray, alpha: np.ndarray | None) -> LoadedImage:
    """``image`` with new (e.g. super-resolved) pixels and alpha: its resolution, in the file
    and in its EXIF, multiplied by the change of size, so that the print size stays."""
    scale = (pixels.shape[1] / image.width, pixels.shape[0] / image.height)
    dpi = image.dpi and (image.dpi[0] * scale[0], image.dpi[1] * scale[1])
    exif = upright_exif(image.exif, scale) if scale != (1.0, 1.0) else image.exif
    return dataclasses.replace(image, pixels=pixels, alpha=alpha, dpi=dpi, exif=exif)


def to_uint(pixels: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Quantise [0, 1] floats to uint8 or uint16: ``round(clip(x, 0, 1) * (2**bits - 1))``;
    integer samples of another depth are rescaled the same way, of this depth kept as they are.

    NaN becomes 0. Rounds to nearest, so a read-write round trip is exact.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    dtype = np.dtype(np.uint8 if bit_depth == 8 else np.uint16)
    if pixels.dtype == dtype:
        return pixels
    if pixels.dtype in INTEGER_MAXIMUM:
        pixels = float32_values(pixels)
    peak = 255 if bit_depth == 8 else 65535
    clipped = np.fmax(pixels, 0.0)  # fmax takes the 0 over a NaN: NaN becomes 0
    np.fmin(clipped, 1.0, out=clipped)
    clipped *= np.float32(peak) if clipped.dtype == np.float32 else peak
    return np.rint(clipped, out=clipped).astype(dtype)


def from_uint(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples of the given bit depth to float32 in [0, 1]."""
    peak = 255 if bit_depth == 8 else 65535
    return values.astype(np.float32) / np.float32(peak)


def _like(alpha: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``alpha`` as samples of ``dtype`` (integers rescaled, floats quantised), or as float32
    where the pixels are floats."""
    if dtype in INTEGER_MAXIMUM:
        return alpha if alpha.dtype == dtype else to_uint(alpha, 8 if dtype == np.uint8 else 16)
    return float32_values(alpha)
