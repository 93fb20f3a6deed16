"""Image files in and out: the only module that reads or writes pixels.

Every supported file becomes a :class:`LoadedImage`: float32 ``H x W x C`` pixels in [0, 1]
(C = 1 for grey, 3 for colour), the alpha channel kept apart, the bit depth (8 or 16) and what
the output should carry over: ICC profile, EXIF, resolution (dpi), XMP and descriptive text
(PNG text chunks; TIFF description, artist and copyright; the JPEG comment). Pillow decodes and
encodes everything except 16-bit colour (and 16-bit grey with alpha), which Pillow would
silently reduce to 8 bits; those are decoded by OpenCV and written by OpenCV (PNG) or tifffile
(TIFF). EXIF orientation is applied on read, so the pixels are upright and the EXIF kept says
orientation 1.

A multi-page TIFF is read page by page by :func:`read_pages` (and written back by
:func:`write_pages`); :func:`read_image` refuses it rather than return its first page.

Writing is atomic: the file is encoded into a hidden temporary file next to the target and
renamed onto it, so an interrupted or failed write leaves no partial output.

>>> image = LoadedImage(np.full((2, 3, 1), 0.5, np.float32))
>>> to_uint(image.pixels, 8)[0, 0, 0]
np.uint8(128)
"""

from __future__ import annotations

import dataclasses
import errno
import io
import logging
import math
import os
import re
import secrets
import struct
import threading
import zlib
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import pillow_heif
import tifffile
from PIL import Image, ImageCms, PngImagePlugin

from formnet_cli.errors import (ImageReadError, ImageTooLargeError, ImageWriteError, InvalidOptionError,
                                OutOfSpaceError)

Image.init()  # Pillow's own plugins first: its AVIF reader must see AVIF files before HEIF's
pillow_heif.register_heif_opener()  # HEIC/HEIF (phone photos) through Pillow; it applies their rotation

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".avif", ".heic", ".heif", ".jp2"}
)

# Output format (Pillow's name) for each extension or format name a user may give.
_FORMAT_BY_NAME = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "webp": "WEBP",
    "avif": "AVIF",
    "heic": "HEIF",
    "heif": "HEIF",
    "jp2": "JPEG2000",  # archives' format; written losslessly (reversible 5/3 wavelet)
}
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF", "JPEG2000"})
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP", "AVIF", "HEIF", "JPEG2000"})
_ICC_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "WEBP", "AVIF", "HEIF"})
_LOSSY_FORMATS = frozenset({"JPEG", "AVIF", "HEIF"})  # written at the JPEG quality option
# TIFF stores EXIF as its own tags; Pillow's libtiff writer rejects a foreign EXIF block.
_EXIF_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "AVIF", "HEIF"})

# Pillow modes that hold 16-bit grey samples (mode "I" is 32-bit, clipped to 16 bits).
_SIXTEEN_BIT_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# What each 8-bit Pillow mode becomes; "P" and "CMYK" are handled on their own.
_TARGET_MODE = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "PA": "RGBA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "YCbCr": "RGB",
}
MAX_MEGAPIXELS_VARIABLE = "FORMNET_MAX_MEGAPIXELS"
DEFAULT_MAX_MEGAPIXELS = 1000.0
"""Largest image read (a 100-400 MP camera frame or a large-format scan passes); anything
bigger is refused as a possible decompression bomb unless ``$FORMNET_MAX_MEGAPIXELS`` allows it."""

_ORIENTATION_TAG = 0x0112
_NCLX_KEYS = ("color_primaries", "transfer_characteristics", "matrix_coefficients", "full_range_flag")
_SRGB_OR_UNSPECIFIED_PRIMARIES = (1, 2)  # ITU-T H.273: BT.709 (sRGB's), unspecified
_SRGB_OR_UNSPECIFIED_TRANSFER = (2, 13)  # unspecified, sRGB
_EXIF_IFD_TAG = 0x8769
_PIXEL_X_TAG, _PIXEL_Y_TAG = 0xA002, 0xA003  # PixelXDimension, PixelYDimension (Exif IFD)
_XMP_TAG = 700
# TIFF text tags and the PNG keyword each is carried as (the JPEG comment is "Comment").
_TIFF_TEXT_TAGS = {270: "Description", 315: "Author", 33432: "Copyright"}
_PNG_XMP_KEY = "XML:com.adobe.xmp"
_DPI_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "BMP"})
_MAX_DPI = 1e6  # beyond any scanner or microscope: larger values are garbage, dropped on read
_JPEG_MAX_DENSITY = 65535  # JFIF stores the resolution in 16 bits
_JPEG_MAX_XMP = 65504  # one APP1 segment, less its header
_JPEG_MAX_COMMENT = 65533  # one COM segment
# Descriptions written by imaging libraries to record the file's layout (tifffile, ImageJ).
_STRUCTURAL_DESCRIPTIONS = ('{"shape"', "ImageJ=", "<?xml")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEMPORARY_NAME_BYTES = 200
"""Bytes of an output's name kept in its temporary file's name (``.<name>.<8 hex>.part``)."""


@dataclass
class LoadedImage:
    """Decoded pixels plus what must survive to the output file.

    ``pixels`` is float32 ``H x W x C`` (C in {1, 3}) in [0, 1], upright (EXIF orientation
    applied). ``alpha`` is float32 ``H x W`` in [0, 1] or None. ``bit_depth`` (8 or 16) is the
    depth written back where the format allows it. ``exif`` is a Pillow EXIF block
    (``b"Exif\\0\\0"`` + TIFF structure) whose orientation is 1. ``dpi`` is the resolution
    (x, y) in pixels per inch, ``xmp`` the XMP packet, ``text`` descriptive text by PNG keyword
    (``Description``, ``Author``, ``Copyright``, ``Comment``, ...). ``colour_description`` is a
    HEIF's nclx colour description (``color_primaries``, ``transfer_characteristics``,
    ``matrix_coefficients``, ``full_range_flag``) where the file has no ICC profile.
    ``bilevel``: the file held 1-bit (black and white) pixels, read as 8-bit grey. ``gamma`` is
    a PNG's gAMA (the samples' encoding exponent: 1.0 for linear light), written back to PNG.
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

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be H x W x C with C in (1, 3), got {pixels.shape}")
        self.pixels = pixels
        if self.alpha is not None:
            alpha = np.asarray(self.alpha, dtype=np.float32)
            if alpha.ndim == 3 and alpha.shape[2] == 1:
                alpha = alpha[:, :, 0]
            if alpha.shape != pixels.shape[:2]:
                raise ValueError(f"alpha shape {alpha.shape} does not match {pixels.shape[:2]}")
            self.alpha = alpha
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

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
    exif = _upright_exif(image.exif, scale) if scale != (1.0, 1.0) else image.exif
    return dataclasses.replace(image, pixels=pixels, alpha=alpha, dpi=dpi, exif=exif)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name ends in a supported image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_uint(pixels: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Quantise [0, 1] floats to uint8 or uint16: ``round(clip(x, 0, 1) * (2**bits - 1))``.

    NaN becomes 0. Rounds to nearest, so a read-write round trip is exact.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    peak = 255 if bit_depth == 8 else 65535
    clipped = np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0)
    return np.rint(clipped * peak).astype(np.uint8 if bit_depth == 8 else np.uint16)


def from_uint(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples of the given bit depth to float32 in [0, 1]."""
    peak = 255 if bit_depth == 8 else 65535
    return values.astype(np.float32) / np.float32(peak)


# --------------------------------------------------------------------------------- reading


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
"""Held while decoding under :func:`_pixel_limit`: Pillow's limit and the warning filters are
process-wide, so threads decode one at a time and each finds Pillow's own state restored."""


@contextmanager
def _pixel_limit() -> Iterator[None]:
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


def _too_large(exc: BaseException) -> str:
    """The one-line reason for an image over the limit."""
    return (f"image too large, refused as a possible decompression bomb ({exc}); set "
            f"{MAX_MEGAPIXELS_VARIABLE} (now {max_pixels() / 1e6:g}) to read larger images")


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode an image file; raise ImageReadError with a one-line reason on any failure."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return read_image_bytes(data, str(path))


def read_pages(path: str | os.PathLike[str]) -> list[LoadedImage]:
    """Every page of a multi-page TIFF (one :class:`LoadedImage` each); for any other file,
    the one image :func:`read_image` reads. Raises ImageReadError as :func:`read_image` does.

    Pages of any depth, 16-bit colour included (decoded by OpenCV), keep their own profile,
    resolution, text and XMP. Animations (WebP, PNG) are refused with a one-line reason.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return [read_image(path)]  # says why in one line
    return read_pages_bytes(data, str(path))


def read_pages_bytes(data: bytes, name: str) -> list[LoadedImage]:
    """:func:`read_pages` for an encoded file held in memory (standard input); ``name`` is
    used in error messages."""
    try:
        with _pixel_limit(), Image.open(io.BytesIO(data)) as probe:
            pages = _tiff_pages(probe) if probe.format == "TIFF" else [0]
    except Exception:  # the reading below says why in one line
        pages = [0]
    if pages == [0]:
        return [read_image_bytes(data, name)]
    return _read_tiff_pages(data, name, pages)


def _tiff_pages(image: Image.Image) -> list[int]:
    """Indices of a TIFF's full-resolution pages: reduced-resolution IFDs (thumbnails,
    pyramid levels: NewSubfileType bit 0) are left out; an unreadable IFD chain counts as
    one page, as any reader that only decodes the first would see it."""
    info = dict(image.info)
    try:
        count = image.n_frames
        pages = []
        for index in range(count):
            image.seek(index)
            if not int(image.tag_v2.get(254, 0)) & 1:
                pages.append(index)
        image.seek(0)
    except Exception:
        return [0]
    finally:
        image.info = info  # seeking leaves the other pages' entries (e.g. a profile) behind
    return pages or [0]


def _frame_count(image: Image.Image) -> int:
    """Pages (TIFF, full resolution only) or animation frames of an opened image."""
    if image.format == "TIFF":
        return len(_tiff_pages(image))
    if image.format in ("MPO", "HEIF"):  # a photo with its previews or bursts: the primary is read
        return 1
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:
        return 1


def _read_tiff_pages(data: bytes, name: str, indices: list[int]) -> list[LoadedImage]:
    pages = []
    with _pixel_limit(), Image.open(io.BytesIO(data)) as image:
        for number, index in enumerate(indices, start=1):
            try:
                image.seek(index)
                stated = _orientation(image)  # before decoding, which may apply it
                # Pillow keeps the previous page's profile in info when a page has none.
                image.info.pop("icc_profile", None)
                profile = image.tag_v2.get(34675)
                if isinstance(profile, bytes) and profile:
                    image.info["icc_profile"] = profile
                pixels, alpha, bit_depth, icc_profile = _decode(image, data, index)
            except ImageReadError as exc:
                raise ImageReadError(f"{name}: page {number}: {exc}") from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageTooLargeError(f"{name}: page {number}: {_too_large(exc)}") from None
            except Exception as exc:
                reason = f"page {number}: truncated or corrupt ({_describe(exc)})"
                raise ImageReadError(f"{name}: {reason}") from None
            pages.append(LoadedImage(pixels, alpha, bit_depth, icc_profile, None, "TIFF",
                                     *_descriptive_metadata(image, stated),
                                     bilevel=image.mode == "1"))
    return pages


def read_image_bytes(data: bytes, name: str) -> LoadedImage:
    """Decode an encoded image held in memory; ``name`` is used in error messages."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    with _pixel_limit():
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(f"{name}: {_too_large(exc)}") from None
        except Image.UnidentifiedImageError:
            kind = _format_by_signature(data)
            reason = (kind == "TIFF" and _unreadable_tiff_layout(data)
                      or f"truncated or corrupt {kind} image (its header cannot be read)" if kind
                      else "not a supported image (PNG, JPEG, TIFF, BMP, WebP, AVIF, HEIC or JPEG 2000)")
            raise ImageReadError(f"{name}: {reason}") from None
        except Exception as exc:  # decoders raise many types on malformed headers
            raise ImageReadError(f"{name}: truncated or corrupt image ({_describe(exc)})") from None
        with image:
            frames = _frame_count(image)
            if frames > 1:
                what = ("pages (read them with read_pages)" if image.format == "TIFF"
                        else "frames; formnet restores still images, not animations")
                raise ImageReadError(f"{name}: holds {frames} {what}")
            # Before decoding, which may apply it (TIFF); pillow-heif applies it on opening.
            stated = int(image.info.get("original_orientation") or _orientation(image))
            try:
                pixels, alpha, bit_depth, icc_profile = _decode(image, data)
            except ImageReadError as exc:
                raise ImageReadError(f"{name}: {exc}") from None
            except Exception as exc:  # truncated data surfaces only when decoding
                reason = f"truncated or corrupt image ({_describe(exc)})"
                raise ImageReadError(f"{name}: {reason}") from None
            exif = _upright_exif(image.info.get("exif"), swap=stated in (5, 6, 7, 8))
            source_format, mode = image.format, image.mode
            dpi, xmp, text = _descriptive_metadata(image, stated)
            colour = None if icc_profile else _nclx_colour_description(image)
            gamma = _png_gamma(image)
    return LoadedImage(pixels, alpha, bit_depth, icc_profile, exif, source_format, dpi, xmp, text,
                       colour, bilevel=mode == "1", gamma=gamma)


def _png_gamma(image: Image.Image) -> float | None:
    """A PNG's gAMA value (Pillow's ``gamma``), or None."""
    gamma = image.info.get("gamma") if image.format == "PNG" else None
    return float(gamma) if isinstance(gamma, (int, float)) and 0 < gamma < 100 else None


def _differs_from_srgb(gamma: float | None) -> bool:
    """Whether a gAMA changes how the samples show: not absent, not sRGB's 1/2.2 (0.45455)."""
    return gamma is not None and abs(gamma - 1 / 2.2) > 0.005


def _nclx_colour_description(image: Image.Image) -> dict[str, int] | None:
    """A HEIF's nclx colour description (what stands for an ICC profile there), or None."""
    nclx = image.info.get("nclx_profile") if image.format == "HEIF" else None
    try:
        return {key: int(nclx[key]) for key in _NCLX_KEYS} if isinstance(nclx, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def describes_other_than_srgb(image: LoadedImage) -> bool:
    """True if ``image`` has a colour description (nclx) naming primaries or a transfer curve
    other than sRGB's (e.g. Display P3): a format without one shows its colours differently."""
    colour = image.colour_description
    return bool(colour) and (colour["color_primaries"] not in _SRGB_OR_UNSPECIFIED_PRIMARIES
                             or colour["transfer_characteristics"] not in _SRGB_OR_UNSPECIFIED_TRANSFER)


def metadata_not_kept(image: LoadedImage, written: str | os.PathLike[str] | bytes) -> list[str]:
    """What of ``image``'s metadata the file ``written`` from it (a path, or the bytes written
    to a stream) does not hold (its format has no room for it, or formnet does not write it
    there: EXIF in a TIFF), read back from that file's header: e.g. ``["EXIF", "text
    (Author)"]``; ``[]`` when the header cannot be read."""
    try:
        with _DECODING:  # the header only, whatever the image's size
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                header = Image.open(io.BytesIO(written) if isinstance(written, bytes) else written)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        with header:
            if header.format == "TIFF":
                profile = header.tag_v2.get(34675)
                has_exif = False  # formnet writes no EXIF IFD into a TIFF
            else:
                profile, has_exif = header.info.get("icc_profile"), bool(header.info.get("exif"))
            dpi, xmp, text = _descriptive_metadata(header)
            gamma = _png_gamma(header)
            channels = 1 if header.getbands()[0] in ("L", "I", "1") else 3
            deep = header.format in (*_SIXTEEN_BIT_FORMATS, "HEIF")  # HEIF: 10 bits
    except Exception:  # advice only: never fail a file that was written
        return []
    # A profile for other channels than those written (an RGB one on grey pixels) is left
    # out on purpose: it no longer fits.
    fitting_profile = image.icc_profile if image.icc_profile and _icc_fits(image.icc_profile,
                                                                         channels) else None
    lost = [name for name, had, has in (("16-bit depth", image.bit_depth == 16, deep),
                                        ("ICC profile", fitting_profile, profile),
                                        ("EXIF", image.exif, has_exif),
                                        ("resolution", image.dpi, dpi), ("XMP", image.xmp, xmp),
                                        ("gamma (PNG gAMA)", _differs_from_srgb(image.gamma), gamma))
            if had and not has]
    missing_text = [key for key in image.text if key not in text]
    if missing_text:
        lost.append(f"text ({', '.join(missing_text)})")
    return lost


def keeps_colour_description(path: str | os.PathLike[str], format: str | None = None) -> bool:
    """Whether the format of ``path`` (or ``format``) carries an nclx colour description (HEIC)."""
    return output_format(path, format) == "HEIF"


def _describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) from the TIFF tags or the EXIF block; 1 if unreadable.

    Reads ``info`` rather than ``getexif()``, which would decode (and swallow decode errors).
    """
    try:
        if image.format == "TIFF":
            value = image.tag_v2.get(_ORIENTATION_TAG, 1)
        else:
            exif = Image.Exif()
            exif.load(image.info.get("exif"))
            value = exif.get(_ORIENTATION_TAG, 1)
        orientation = int(value)
    except Exception:
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _descriptive_metadata(image: Image.Image, orientation: int = 1) -> tuple[
        tuple[float, float] | None, bytes | None, dict[str, str]]:
    """Resolution (dpi), XMP packet and descriptive text of an opened image, where it has them,
    for its upright pixels: ``orientation`` (the EXIF one the pixels are turned by) swaps the
    resolution's axes for 5-8, and the XMP says orientation 1."""
    info = image.info
    if image.format == "TIFF":  # the page's own tags (Pillow says 1 dpi without them, and
        dpi = _tag_dpi(image.tag_v2)  # keeps the previous page's after a seek)
    elif image.format == "JPEG":  # Pillow falls back on EXIF's X resolution for both axes
        per_unit = {1: 1.0, 2: 2.54}.get(info.get("jfif_unit", 0))  # JFIF: per inch or per cm
        density = info.get("jfif_density")
        dpi = (density[0] * per_unit, density[1] * per_unit) if per_unit and density else None
    else:
        dpi = info.get("dpi")
    dpi = dpi or _exif_dpi(info.get("exif"))
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    if dpi is not None and not all(0 < value <= _MAX_DPI for value in dpi):
        dpi = None  # also NaN
    if dpi is not None and orientation in (5, 6, 7, 8):
        dpi = (dpi[1], dpi[0])
    xmp = info.get("xmp") or info.get(_PNG_XMP_KEY) or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    xmp = _upright_xmp(xmp) if isinstance(xmp, bytes) and orientation != 1 else xmp
    text: dict[str, str] = {}
    if image.format == "PNG":  # text chunks (tEXt, zTXt, iTXt) are str values of info
        text = {key: str(value) for key, value in info.items() if isinstance(value, str)
                and key != _PNG_XMP_KEY and not key.startswith("Raw profile type")}
    elif image.format == "TIFF":
        for tag, keyword in _TIFF_TEXT_TAGS.items():
            value = image.tag_v2.get(tag)
            if isinstance(value, str) and value.strip():
                text[keyword] = _tiff_text(value)
        if text.get("Description", "").startswith(_STRUCTURAL_DESCRIPTIONS):
            del text["Description"]  # the layout of the file read, not a description of the image
    elif (isinstance(info.get("comment"), bytes) and info["comment"].strip()
          and not info["comment"].startswith(b"Created by OpenJPEG")):  # the encoder's banner
        text["Comment"] = info["comment"].decode("utf-8", "replace")
    return dpi, (xmp if isinstance(xmp, bytes) else None), text


def _upright_xmp(xmp: bytes) -> bytes:
    """The XMP packet with its ``tiff:Orientation`` (attribute or element) set to 1."""
    xmp = re.sub(rb'(tiff:Orientation\s*=\s*["\'])\d(["\'])', rb"\g<1>1\2", xmp)
    return re.sub(rb"(<tiff:Orientation>\s*)\d(\s*</tiff:Orientation>)", rb"\g<1>1\2", xmp)


def _tag_dpi(tags: Any) -> tuple[float, float] | None:
    """The resolution TIFF or EXIF tags state (X/YResolution in the ResolutionUnit: inch, the
    default, or cm), or None without them or in unit 1 (an aspect ratio only)."""
    try:
        per_unit = {2: 1.0, 3: 2.54}.get(int(tags.get(296, 2)))
        if per_unit is None or 282 not in tags or 283 not in tags:
            return None
        return float(tags[282]) * per_unit, float(tags[283]) * per_unit
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _exif_dpi(raw: bytes | None) -> tuple[float, float] | None:
    """The resolution an EXIF block states (see :func:`_tag_dpi`)."""
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
    except Exception:  # unreadable EXIF says nothing
        return None
    return _tag_dpi(exif)


def _upright_exif(raw: bytes | None, scale: tuple[float, float] = (1.0, 1.0),
                  swap: bool = False) -> bytes | None:
    """Re-encode an EXIF block (with or without the ``Exif\\0\\0`` prefix) with orientation 1;
    its X/Y resolution swapped (``swap``: the pixels were turned by 90 degrees) and multiplied
    by ``scale`` (the pixels were resized), unless its unit is 1 (an aspect ratio only), and
    its pixel dimensions swapped and scaled likewise.

    TIFF tags are not carried as EXIF (they describe the TIFF container). Unreadable EXIF is
    dropped rather than failing the image.
    """
    if not raw:
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        if _ORIENTATION_TAG in exif:
            exif[_ORIENTATION_TAG] = 1
        if 282 in exif and 283 in exif and int(exif.get(296, 2)) != 1:
            x, y = (exif[283], exif[282]) if swap else (exif[282], exif[283])
            exif[282], exif[283] = float(x) * scale[0], float(y) * scale[1]
        details = exif.get_ifd(_EXIF_IFD_TAG) if _EXIF_IFD_TAG in exif else {}  # else none made
        if _PIXEL_X_TAG in details and _PIXEL_Y_TAG in details:
            width, height = details[_PIXEL_X_TAG], details[_PIXEL_Y_TAG]
            if swap:
                width, height = height, width
            details[_PIXEL_X_TAG] = round(int(width) * scale[0])
            details[_PIXEL_Y_TAG] = round(int(height) * scale[1])
        return exif.tobytes()
    except Exception:
        return None


def _needs_opencv(image: Image.Image, data: bytes) -> bool:
    """True for 16-bit colour or 16-bit grey+alpha, which Pillow reduces to 8 bits."""
    if image.format == "PNG" and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
        bit_depth, colour_type = data[24], data[25]
        return bit_depth == 16 and colour_type != 0  # type 0 (grey) opens as I;16
    if image.format == "TIFF" and image.mode not in _SIXTEEN_BIT_GREY_MODES:
        bits = image.tag_v2.get(258, 8)
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    if image.format == "JPEG2000" and image.mode not in (*_SIXTEEN_BIT_GREY_MODES, "LA"):
        return _jpeg2000_bits(data) > 8  # (OpenCV reads no grey+alpha JPEG 2000: Pillow's 8 bits)
    return False


def _tiff_layout_problem(sample_formats: tuple[int, ...], bits: tuple[int, ...], photometric: int,
                         samples_per_pixel: int) -> str | None:
    """Why formnet cannot read TIFF samples of this layout, or None if it can: floating-point
    or over 16-bit samples, signed samples but 16-bit grey (read where none is negative),
    16-bit CMYK, 16-bit grey with alpha."""
    depth = max(bits)
    if 3 in sample_formats:
        return (f"{depth}-bit floating-point samples are not read (formnet reads 8- and 16-bit "
                "unsigned integers); save the image as 16-bit integers")
    signed = 2 in sample_formats
    if depth > 16 or signed and (depth != 16 or samples_per_pixel > 1):
        return (f"{'signed' if signed else 'unsigned'} {depth}-bit integer samples are not read "
                "(formnet reads 8- and 16-bit unsigned integers, and signed 16-bit grey)")
    if depth == 16 and photometric == 5:  # separated: CMYK
        return "16-bit CMYK is not read (8-bit CMYK is); save the image as RGB"
    if depth == 16 and photometric in (0, 1) and samples_per_pixel == 2:
        return "16-bit grey+alpha TIFF is not read; save it as 16-bit RGBA (TIFF or PNG)"
    return None


def _unreadable_tiff_layout(data: bytes) -> str | None:
    """Why Pillow could not open this TIFF, from its first page's tags read by tifffile (None
    where they look readable: the file is then truncated or corrupt)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            bits = page.bitspersample
            return _tiff_layout_problem((int(page.sampleformat),), (int(bits),),
                                        int(page.photometric), int(page.samplesperpixel))
    except Exception:
        return None


def _pillow_tiff_layout_problem(image: Image.Image) -> str | None:
    """:func:`_tiff_layout_problem` for a TIFF (page) Pillow opened."""
    def numbers(tag: int, default: int) -> tuple[int, ...]:
        value = image.tag_v2.get(tag, default)
        return tuple(value) if isinstance(value, tuple) else (value,)

    return _tiff_layout_problem(numbers(339, 1), numbers(258, 8), int(image.tag_v2.get(262, 1)),
                                int(image.tag_v2.get(277, 1)))


def _jpeg2000_bits(data: bytes) -> int:
    """Bits per sample of a JPEG 2000 codestream's first component (its SIZ marker segment:
    SOC, SIZ, Lsiz, Rsiz, 8 sizes of 4 bytes, Csiz, then Ssiz = bits - 1); 8 if not found."""
    start = data.find(b"\xff\x4f\xff\x51")
    ssiz = start + 4 + 2 + 2 + 32 + 2
    return (data[ssiz] & 0x7F) + 1 if start >= 0 and ssiz < len(data) else 8


def _decode(image: Image.Image, data: bytes, page: int | None = None) -> tuple[
        np.ndarray, np.ndarray | None, int, bytes | None]:
    """Upright pixels, alpha, bit depth and ICC profile of an opened image (``page``: the TIFF
    page ``image`` was sought to), by whichever decoder keeps its depth: Pillow, or OpenCV for
    16-bit colour (tifffile where the channels are stored apart), pillow-heif's own for deep
    HEIF. The EXIF or TIFF orientation is applied here unless the decoder did."""
    icc_profile = image.info.get("icc_profile") or None
    turned_by_decoder = False
    problem = _pillow_tiff_layout_problem(image) if image.format == "TIFF" else None
    if problem:
        raise ImageReadError(problem)
    deep_colour = _needs_opencv(image, data)
    if deep_colour and image.format == "TIFF" and image.tag_v2.get(284, 1) == 2:
        pixels, alpha, bit_depth = _opencv_arrays(_planar_page(data, page or 0), image, data)
    elif deep_colour:
        pixels, alpha, bit_depth = _decode_with_opencv(data, image, page)
        turned_by_decoder = image.format == "TIFF"  # OpenCV applies a TIFF's Orientation tag
    elif image.format == "HEIF" and int(image.info.get("bit_depth", 8)) > 8:
        pixels, alpha, bit_depth = _decode_deep_heif(data)  # libheif turns it (EXIF then says 1)
    else:
        image.load()  # decode now: a truncated file fails here, not later
        pixels, alpha, bit_depth, icc_profile = _pillow_to_arrays(image)
    orientation = 1 if turned_by_decoder else _orientation(image)  # after Pillow's decoding,
    pixels = _apply_orientation(pixels, orientation)  # which may have turned a TIFF itself
    if alpha is not None:
        alpha = _apply_orientation(alpha[:, :, None], orientation)[:, :, 0]
    return pixels, alpha, bit_depth, icc_profile


def _decode_with_opencv(data: bytes, header: Image.Image,
                        page: int | None = None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode 16-bit colour (or grey+alpha) with OpenCV, the image or only TIFF page ``page``
    (OpenCV's range of IFDs); BGR(A) becomes RGB plus alpha."""
    buffer = np.frombuffer(data, np.uint8)
    if header.format == "PNG" and not _png_is_complete(data):  # (libpng would print to stderr)
        raise ImageReadError("truncated PNG image (its data ends before the IEND chunk)")
    if page is None:
        with _quiet_opencv():
            decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    else:
        with _quiet_opencv():
            ok, pages = cv2.imdecodemulti(buffer, cv2.IMREAD_UNCHANGED, None, (page, page + 1))
        decoded = pages[0] if ok and len(pages) == 1 else None
    if decoded is None:
        raise ImageReadError("truncated or corrupt image (OpenCV could not decode it)")
    return _opencv_arrays(decoded, header, data)


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile's log lines (an invalid offset in a truncated file) off; the caller reports."""
    logger = logging.getLogger("tifffile")
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own log lines (libtiff errors on a truncated file) off; the caller reports."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _png_is_complete(data: bytes) -> bool:
    """Whether a PNG's chunks all lie within ``data``, up to its IEND chunk."""
    offset = 8  # the signature
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        offset += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return offset <= len(data)
    return False


_SIGNATURES = ((_PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"), (b"BM", "BMP"),
               (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"))
_HEIF_BRANDS = {b"heic": "HEIF", b"heix": "HEIF", b"heim": "HEIF", b"heis": "HEIF",
                b"hevc": "HEIF", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def _format_by_signature(data: bytes) -> str | None:
    """The format whose signature ``data`` starts with, among those formnet reads."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":  # ISO media: HEIF and AVIF by their brand, not a video
        return _HEIF_BRANDS.get(data[8:12])
    return next((kind for signature, kind in _SIGNATURES if data.startswith(signature)), None)


def _decode_deep_heif(data: bytes) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The primary image of a 10- or 12-bit HEIF at 16 bits (Pillow's view is cut to 8 bits);
    libheif applies the file's rotation, as for 8-bit files."""
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    samples = np.asarray(heif[heif.primary_index])  # uint16, scaled to the full 16-bit range
    if samples.ndim == 2:
        samples = samples[:, :, None]
    has_alpha = samples.shape[2] in (2, 4)
    colour = samples[:, :, :-1] if has_alpha else samples
    alpha = from_uint(samples[:, :, -1], 16) if has_alpha else None
    return from_uint(colour, 16), alpha, 16


def _planar_page(data: bytes, index: int) -> np.ndarray:
    """Page ``index`` of a planar TIFF decoded by tifffile, as OpenCV would give it (H x W x C,
    BGR(A) order)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[index]
            samples = page.asarray()
    except Exception as exc:  # e.g. LZW, which tifffile decodes only with imagecodecs
        raise ImageReadError(f"cannot decode this planar (channel by channel) 16-bit TIFF "
                             f"({_describe(exc)}); save it interleaved") from None
    if samples.ndim == 3 and samples.shape[0] == page.samplesperpixel and samples.shape[0] <= 4:
        samples = np.moveaxis(samples, 0, -1)
    if samples.ndim == 3 and samples.shape[2] >= 3:
        samples = samples[:, :, [2, 1, 0, *range(3, samples.shape[2])]]
    return samples


def _opencv_arrays(decoded: np.ndarray, header: Image.Image,
                   data: bytes) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Pixels, alpha and bit depth of an image OpenCV decoded (``header``: Pillow's view of it)."""
    if decoded.dtype == np.uint8:
        bit_depth = 8
    elif decoded.dtype == np.uint16:
        bit_depth = 16
    else:
        raise ImageReadError(f"unsupported sample type {decoded.dtype} (need 8 or 16 bits)")
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    bits = _jpeg2000_bits(data) if header.format == "JPEG2000" else bit_depth
    if bit_depth == 16 and 8 < bits < 16:  # e.g. 12-bit samples, which OpenCV leaves at 0-4095
        decoded = np.round(decoded * (65535 / (2**bits - 1))).astype(np.uint16)
    alpha = decoded[:, :, 3] if decoded.shape[2] == 4 else None
    if _is_grey_source(header, data):
        colour = decoded[:, :, :1]  # OpenCV expands grey to BGR; all three are equal
    else:
        colour = decoded[:, :, 2::-1] if decoded.shape[2] >= 3 else decoded[:, :, :1]
    pixels = from_uint(colour, bit_depth)
    return pixels, (None if alpha is None else from_uint(alpha, bit_depth)), bit_depth


def _is_grey_source(image: Image.Image, data: bytes) -> bool:
    if image.format == "PNG":
        return data[25] in (0, 4)
    if image.format == "TIFF":
        return image.tag_v2.get(262, 2) in (0, 1)  # photometric: white/black is zero
    if image.format == "JPEG2000":
        return image.mode in ("L", "LA")
    return False


def _pillow_to_arrays(
    image: Image.Image,
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """Pixels, alpha, bit depth and ICC profile (sRGB after CMYK conversion) of a loaded image."""
    icc_profile = image.info.get("icc_profile") or None
    mode = image.mode
    if mode in _SIXTEEN_BIT_GREY_MODES:  # (TIFFs over 16 bits or signed: refused by _decode)
        values = np.asarray(image)
        if mode == "I" and values.size and values.min() < 0:  # signed 16-bit samples
            raise ImageReadError("signed 16-bit samples with negative values are not read "
                                 "(formnet reads 8- and 16-bit unsigned integers)")
        if mode == "I":
            values = np.clip(values, 0, 65535)
        if image.format == "TIFF" and image.tag_v2.get(262) == 0:  # min-is-white: 0 is white
            values = 65535 - values
        key = image.info.get("transparency")  # a PNG tRNS colour key
        alpha = (values != key).astype(np.float32) if isinstance(key, int) else None
        return from_uint(values[:, :, None], 16), alpha, 16, icc_profile
    if mode == "P":
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif mode in ("L", "RGB") and image.has_transparency_data:  # a PNG tRNS colour key
        image = image.convert("LA" if mode == "L" else "RGBA")
    elif mode == "CMYK":
        image, icc_profile = _cmyk_to_rgb(image, icc_profile)
    elif mode in _TARGET_MODE:
        image = image.convert(_TARGET_MODE[mode])
    else:
        raise ImageReadError(f"unsupported pixel mode {mode}")
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[:, :, None]
    has_alpha = image.mode in ("LA", "RGBA")
    colour = values[:, :, :-1] if has_alpha else values
    alpha = from_uint(values[:, :, -1], 8) if has_alpha else None
    return from_uint(colour, 8), alpha, 8, icc_profile


def _cmyk_to_rgb(
    image: Image.Image, icc_profile: bytes | None
) -> tuple[Image.Image, bytes | None]:
    """CMYK to sRGB through its ICC profile when it has one, else Pillow's naive formula."""
    if icc_profile:
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            return converted, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return image.convert("RGB"), None


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Make an H x W x C array upright for an EXIF orientation (as ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):  # these swap width and height
        array = array.transpose(1, 0, 2)
    flips = {2: (1,), 3: (0, 1), 4: (0,), 5: (), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        array = np.flip(array, axis)
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------- writing


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Pillow format name (PNG, JPEG, TIFF, BMP, WEBP, AVIF, HEIF) from ``format`` or the path's
    extension."""
    name = format if format is not None else Path(path).suffix
    key = name.lower().lstrip(".")
    if key not in _FORMAT_BY_NAME:
        shown = repr(name) if name else "(no extension)"
        choices = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageWriteError(f"{path}: unsupported output format {shown} (use one of {choices})")
    if _FORMAT_BY_NAME[key] not in Image.SAVE:  # e.g. a Pillow or libheif built without it
        raise ImageWriteError(f"{path}: this installation cannot write {_FORMAT_BY_NAME[key]} "
                              "files (its image library lacks the encoder); choose another --ext")
    return _FORMAT_BY_NAME[key]


def keeps_alpha(path: str | os.PathLike[str], format: str | None = None) -> bool:
    """Whether the format of ``path`` (or ``format``) holds an alpha channel (PNG, TIFF, WebP,
    AVIF, HEIC, JPEG 2000; not JPEG, BMP)."""
    return output_format(path, format) in _ALPHA_FORMATS


def extension_of(source_format: str | None) -> str:
    """The extension formnet writes a Pillow format as (``"JPEG"`` -> ``".jpg"``): where an
    image read from a stream goes back to a stream in its own format; ``.png`` for a format
    formnet does not write."""
    if source_format == "MPO":  # a JPEG with previews (many cameras)
        source_format = "JPEG"
    names = [name for name, fmt in _FORMAT_BY_NAME.items() if fmt == source_format]
    return "." + names[0] if names else ".png"


def write_image(
    path: str | os.PathLike[str],
    image: LoadedImage,
    *,
    format: str | None = None,
    jpeg_quality: int = 95,
) -> None:
    """Encode ``image`` to ``path`` atomically, in the format of its extension or ``format``.

    16 bits are kept in PNG, TIFF and JPEG 2000 (10 in HEIC, 8 elsewhere); alpha is kept in PNG,
    TIFF, WebP, AVIF, HEIC and JPEG 2000 and dropped in JPEG and BMP; WebP and JPEG 2000 are
    written lossless, AVIF and HEIC at ``jpeg_quality``, these three always in colour; JPEG 2000
    carries no metadata. ICC profiles and XMP go to PNG, JPEG, TIFF, WebP, AVIF and
    HEIC, EXIF to all of them but TIFF and BMP, the resolution to PNG, JPEG, TIFF and BMP, text
    to PNG (all), TIFF (description, author, copyright) and JPEG (comment). 16-bit grey+alpha is
    written as RGBA (no encoder writes two 16-bit channels).
    """
    path = Path(path)
    fmt = output_format(path, format)
    _check_jpeg_quality(jpeg_quality)
    parent = path.parent
    if not parent.exists():
        raise ImageWriteError(f"{path}: output folder {parent} does not exist")
    if not parent.is_dir():
        raise ImageWriteError(f"{path}: {parent} is not a folder")
    encode = _encoder(image, fmt, jpeg_quality)
    with _write_errors(path, fmt):
        _write_atomically(path, encode)


def _check_jpeg_quality(jpeg_quality: int) -> None:
    if not 1 <= jpeg_quality <= 100:
        raise InvalidOptionError(f"JPEG quality must be between 1 and 100, got {jpeg_quality}")


@contextmanager
def _write_errors(name: str | os.PathLike[str], fmt: str) -> Iterator[None]:
    """Turn what encoding or writing ``name`` as ``fmt`` raises into a one-line ImageWriteError."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or _describe(exc)
        kind = OutOfSpaceError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ImageWriteError
        raise kind(f"{name}: cannot write {fmt} file ({reason})") from None
    except (ValueError, OverflowError, struct.error) as exc:
        raise ImageWriteError(f"{name}: cannot encode as {fmt} ({_describe(exc)})") from None


def _encoder(image: LoadedImage, fmt: str, jpeg_quality: int) -> Callable[[BinaryIO], None]:
    """A function that writes the encoded image to an open binary file."""
    bit_depth = 16 if image.bit_depth == 16 and fmt in (*_SIXTEEN_BIT_FORMATS, "HEIF") else 8
    colour = to_uint(image.pixels, bit_depth)
    alpha = None
    if image.alpha is not None and fmt in _ALPHA_FORMATS:
        alpha = to_uint(image.alpha, bit_depth)[:, :, None]
    if fmt in ("WEBP", "AVIF", "HEIF") and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    icc_profile = image.icc_profile if fmt in _ICC_FORMATS else None
    if icc_profile and not _icc_fits(icc_profile, colour.shape[2]):
        icc_profile = None
    exif = _upright_exif(image.exif) if fmt in _EXIF_FORMATS else None
    samples = colour if alpha is None else np.concatenate([colour, alpha], axis=2)

    if bit_depth == 16 and fmt == "HEIF":
        return _deep_heif_encoder(samples, _save_options(fmt, image, icc_profile, exif, jpeg_quality))
    if bit_depth == 16 and samples.shape[2] > 1:
        if fmt == "TIFF":
            return _tifffile_encoder([_tiff_page(samples, image, icc_profile)])
        if fmt == "JPEG2000":
            return _opencv_jpeg2000_encoder(samples)
        return _opencv_png_encoder(samples, image, icc_profile, exif)

    pil_image = Image.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)
    options = _save_options(fmt, image, icc_profile, exif, jpeg_quality)

    def encode(handle: BinaryIO) -> None:
        pil_image.save(handle, format=fmt, **options)

    return encode


def _deep_heif_encoder(samples: np.ndarray, options: dict[str, object]) -> Callable[[BinaryIO], None]:
    """Encoder for a HEIF of 16-bit RGB(A) samples, which pillow-heif stores at 10 bits."""
    heif = pillow_heif.from_bytes(mode="RGBA;16" if samples.shape[2] == 4 else "RGB;16",
                                  size=(samples.shape[1], samples.shape[0]),
                                  data=np.ascontiguousarray(samples).tobytes())

    def encode(handle: BinaryIO) -> None:
        heif.save(handle, **options)

    return encode


def _save_options(fmt: str, image: LoadedImage, icc_profile: bytes | None, exif: bytes | None,
                  jpeg_quality: int) -> dict[str, object]:
    """Pillow ``save`` options for ``fmt``, with the metadata of ``image`` it can hold."""
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif:
        options["exif"] = exif
    if image.dpi and fmt in _DPI_FORMATS and (fmt != "JPEG" or max(image.dpi) <= _JPEG_MAX_DENSITY):
        options["dpi"] = image.dpi
    if image.xmp and (fmt in ("WEBP", "AVIF", "HEIF") or fmt == "JPEG" and len(image.xmp) <= _JPEG_MAX_XMP):
        options["xmp"] = image.xmp
    if fmt in _LOSSY_FORMATS:
        options["quality"] = jpeg_quality
    if fmt == "HEIF" and image.colour_description and not icc_profile:
        options.update(image.colour_description)  # pillow-heif's nclx save options
    if fmt == "JPEG":
        comment = image.text.get("Comment", "").encode("utf-8")
        if comment and len(comment) <= _JPEG_MAX_COMMENT:
            options["comment"] = comment
    elif fmt == "WEBP":
        options["lossless"] = True
    elif fmt == "TIFF":
        options["compression"] = "tiff_lzw"
        options["tiffinfo"] = dict(_tiff_tags(image))
    elif fmt == "PNG" and (image.text or image.xmp or image.gamma):
        chunks = PngImagePlugin.PngInfo()
        if image.gamma:
            chunks.add(b"gAMA", _png_gamma_body(image.gamma))
        for key, value in _png_text(image).items():
            chunks.add_itxt(key, value)
        options["pnginfo"] = chunks
    return options


def _tiff_text(value: str) -> str:
    """A TIFF text tag as Pillow reads it (each byte a Latin-1 character) turned back into the
    UTF-8 that exiftool, tifffile and formnet write; text that is not UTF-8 stays Latin-1."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _tiff_tags(image: LoadedImage) -> list[tuple[int, bytes]]:
    """(tag, value) of the TIFF text tags and the XMP packet ``image`` holds. The standard says
    ASCII; text beyond it is written as UTF-8 (as exiftool does), not lost to '?'."""
    tags = [(tag, image.text[keyword].encode("utf-8"))
            for tag, keyword in _TIFF_TEXT_TAGS.items() if image.text.get(keyword)]
    if image.xmp:
        tags.append((_XMP_TAG, image.xmp))
    return tags


def _png_text(image: LoadedImage) -> dict[str, str]:
    """The PNG text chunks for ``image``: its text, and its XMP under the keyword Adobe uses."""
    text = {key: value for key, value in image.text.items() if _png_keyword(key)}
    if image.xmp:
        text[_PNG_XMP_KEY] = image.xmp.decode("utf-8", "replace")
    return text


def _png_gamma_body(gamma: float) -> bytes:
    return struct.pack(">I", round(gamma * 100_000))


def _png_keyword(key: str) -> bool:
    """Whether ``key`` is a valid PNG text keyword: 1-79 Latin-1 characters."""
    return 0 < len(key) < 80 and all(" " <= char <= "\xff" for char in key)


def check_writable_as(path: str | os.PathLike[str], pages: list[LoadedImage],
                      scale: int = 1, format: str | None = None) -> None:
    """Raise :class:`ImageWriteError` for pages (to be enlarged ``scale`` times) the format of
    ``path`` (or ``format``) cannot hold, before any work is spent on them: several pages but
    TIFF, a 16-bit colour JPEG 2000 under 32 px."""
    check_page_count(path, len(pages), format)
    if output_format(path, format) == "JPEG2000" and any(
            page.bit_depth == 16 and page.channels == 3
            and min(page.height, page.width) * scale < 32 for page in pages):
        raise ImageWriteError(f"{path}: a 16-bit colour JPEG 2000 needs 32 px a side (OpenCV's "
                              "encoder); write .tif or .png")


def check_page_count(path: str | os.PathLike[str], pages: int, format: str | None = None) -> None:
    """Raise :class:`ImageWriteError` unless the format of ``path`` (or ``format``) holds
    ``pages`` pages (several: TIFF only)."""
    if pages > 1 and output_format(path, format) != "TIFF":
        raise ImageWriteError(f"{path}: {pages} pages need a TIFF output (.tif)")


def write_pages(path: str | os.PathLike[str], pages: list[LoadedImage], *,
                jpeg_quality: int = 95) -> None:
    """Write one image (as :func:`write_image`) or several pages as one multi-page TIFF,
    atomically. Each page keeps its own depth (8 or 16 bits), alpha, ICC profile, resolution,
    text and XMP (written by tifffile, deflate-compressed)."""
    if len(pages) == 1:
        write_image(path, pages[0], jpeg_quality=jpeg_quality)
        return
    path = Path(path)
    check_page_count(path, len(pages))
    with _write_errors(path, "TIFF"):
        _write_atomically(path, _pages_encoder(pages, "TIFF", jpeg_quality))


def encode_pages(pages: list[LoadedImage], format: str, *, jpeg_quality: int = 95,
                 name: str = "standard output") -> bytes:
    """The file :func:`write_pages` would write, as bytes in ``format`` (an extension, with or
    without its dot: ``"png"``, ``".jpg"``, ``"jp2"``), for a stream such as standard output;
    ``name`` is used in error messages."""
    fmt = output_format(name, format)
    _check_jpeg_quality(jpeg_quality)
    check_page_count(name, len(pages), format)
    buffer = io.BytesIO()
    with _write_errors(name, fmt):
        _pages_encoder(pages, fmt, jpeg_quality)(buffer)
    return buffer.getvalue()


def _pages_encoder(pages: list[LoadedImage], fmt: str,
                   jpeg_quality: int) -> Callable[[BinaryIO], None]:
    """The encoder of one image (:func:`_encoder`) or of several pages as one TIFF."""
    if len(pages) == 1:
        return _encoder(pages[0], fmt, jpeg_quality)
    encoded = []
    for page in pages:
        samples = to_uint(page.pixels, page.bit_depth)
        if page.alpha is not None:
            samples = np.concatenate([samples, to_uint(page.alpha, page.bit_depth)[:, :, None]], axis=2)
        fits = page.icc_profile is not None and _icc_fits(page.icc_profile, page.channels)
        encoded.append(_tiff_page(samples, page, page.icc_profile if fits else None))
    return _tifffile_encoder(encoded)


def _opencv_png_encoder(samples: np.ndarray, image: LoadedImage, icc_profile: bytes | None,
                        exif: bytes | None) -> Callable[[BinaryIO], None]:
    """Encoder for a 16-bit colour PNG (RGB, RGBA, or grey+alpha expanded to RGBA) via OpenCV,
    which writes the profile and EXIF; the resolution, text and XMP chunks are added after
    (OpenCV 5.0 reads an XMP block past its end, as if it were a C string)."""
    samples, icc_profile = _deep_grey_alpha_as_rgba(samples, icc_profile)
    bgr = np.ascontiguousarray(samples[:, :, [2, 1, 0, *range(3, samples.shape[2])]])
    kinds, blocks = [], []
    for kind, block in ((cv2.IMAGE_METADATA_ICCP, icc_profile),
                        (cv2.IMAGE_METADATA_EXIF, exif.removeprefix(b"Exif\x00\x00") if exif else None)):
        if block:
            kinds.append(kind)
            blocks.append(np.frombuffer(block, np.uint8))
    chunks = [_png_chunk(b"iTXt", key.encode("latin-1", "replace") + b"\x00\x00\x00\x00\x00"
                         + value.encode("utf-8")) for key, value in _png_text(image).items()]
    if image.dpi:  # at most _MAX_DPI: fits pHYs's 32 bits
        per_metre = [round(value / 0.0254) for value in image.dpi]
        chunks.insert(0, _png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if image.gamma:
        chunks.insert(0, _png_chunk(b"gAMA", _png_gamma_body(image.gamma)))

    def encode(handle: BinaryIO) -> None:
        ok, buffer = cv2.imencodeWithMetadata(".png", bgr, kinds, blocks)
        if not ok:
            raise ValueError("OpenCV could not encode a 16-bit PNG")
        data = buffer.tobytes()
        header_end = 8 + 8 + 13 + 4  # signature, then the IHDR chunk (length, type, data, CRC)
        handle.write(data[:header_end] + b"".join(chunks) + data[header_end:])

    return encode


def _opencv_jpeg2000_encoder(samples: np.ndarray) -> Callable[[BinaryIO], None]:
    """Encoder for a lossless 16-bit colour JPEG 2000 via OpenCV (Pillow writes 8 bits there);
    it carries no metadata."""
    samples, _ = _deep_grey_alpha_as_rgba(samples, None)
    bgr = np.ascontiguousarray(samples[:, :, [2, 1, 0, *range(3, samples.shape[2])]])

    def encode(handle: BinaryIO) -> None:
        with _quiet_opencv():
            try:
                ok, buffer = cv2.imencode(".jp2", bgr, [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 1000])
            except cv2.error:
                ok = False
        if not ok:
            raise ValueError("OpenCV could not encode a 16-bit colour JPEG 2000 (it needs 32 px "
                             "a side); write .tif or .png")
        handle.write(buffer.tobytes())

    return encode


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff_page(samples: np.ndarray, image: LoadedImage,
               icc_profile: bytes | None) -> tuple[np.ndarray, dict[str, Any]]:
    """One TIFF page for tifffile: its samples (16-bit grey+alpha expanded to RGBA, which the
    readers take) and ``TiffWriter.write`` options with the profile, resolution, text and XMP."""
    samples, icc_profile = _deep_grey_alpha_as_rgba(samples, icc_profile)
    tags = dict(_tiff_tags(image))
    options: dict[str, Any] = {
        "photometric": "rgb" if samples.shape[2] >= 3 else "minisblack",
        "compression": "zlib", "predictor": True, "metadata": None,
        "extratags": [(tag, "B", len(value), value, True) if tag == _XMP_TAG
                      else (tag, "s", 0, value, True) for tag, value in tags.items() if tag != 270],
    }
    if samples.shape[2] in (2, 4):
        options["extrasamples"] = [2]  # unassociated alpha
    if 270 in tags:
        options["description"] = tags[270]
    if icc_profile:
        options["iccprofile"] = icc_profile
    if image.dpi:
        options.update(resolution=image.dpi, resolutionunit="INCH")
    return (samples[:, :, 0] if samples.shape[2] == 1 else samples), options


def _tifffile_encoder(pages: list[tuple[np.ndarray, dict[str, Any]]]) -> Callable[[BinaryIO], None]:
    """Encoder for a TIFF of the given :func:`_tiff_page` pages (16-bit colour, multi-page)."""

    def encode(handle: BinaryIO) -> None:
        buffer = io.BytesIO()  # tifffile wants a named file or a buffer, not a bare descriptor
        with tifffile.TiffWriter(buffer) as writer:
            for samples, options in pages:
                writer.write(np.ascontiguousarray(samples), **options)
        handle.write(buffer.getbuffer())

    return encode


def _deep_grey_alpha_as_rgba(samples: np.ndarray,
                             icc_profile: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """16-bit grey+alpha samples as RGBA (no encoder here writes, nor reader takes, two 16-bit
    channels), without a grey profile, which no longer fits; other samples as they are."""
    if samples.shape[2] != 2 or samples.dtype != np.uint16:
        return samples, icc_profile
    if icc_profile and not _icc_fits(icc_profile, 3):
        icc_profile = None
    return samples[:, :, [0, 0, 0, 1]], icc_profile


def _icc_fits(icc_profile: bytes, channels: int) -> bool:
    """True if the profile's colour space (header bytes 16-20) matches grey or RGB pixels."""
    space = icc_profile[16:20]
    return space == (b"GRAY" if channels == 1 else b"RGB ")


def check_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`ImageWriteError` unless a file can be created in ``folder`` (or, when it
    does not exist yet, in the nearest existing folder above it, where it would be made).

    Tries a real (anonymous, self-deleting) file: permission bits alone say nothing about
    read-only mounts or special file systems.
    """
    try:
        probe = Path(folder).absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ImageWriteError(f"{folder}: cannot create it ({probe} is a file)")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:  # unwritable, or a path past the system's limit
        raise ImageWriteError(f"{folder}: cannot write there ({error.strerror or error})") from None


def _write_atomically(path: Path, encode: Callable[[BinaryIO], None]) -> None:
    """Run ``encode`` into a hidden file beside ``path``, then rename it onto ``path``.

    The temporary file is created with O_EXCL and mode 0o666 (less the umask, as for any new
    file) and removed on any failure, Ctrl-C included.
    """
    # The name, cut to leave room for the rest in a file system's 255 bytes.
    stem = os.fsencode(path.name)[:_TEMPORARY_NAME_BYTES].decode(errors="ignore") or "image"
    temporary = path.with_name(f".{stem}.{secrets.token_hex(4)}.part")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            encode(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
