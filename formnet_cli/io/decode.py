"""Decoding image files into :class:`~formnet_cli.io.image.LoadedImage`.

Before any pixel is decoded, every page's header is read and checked
(:mod:`formnet_cli.io.header`): its size against the pixel limit, the memory the file will
take (and, told by the caller, its restore) against the memory available, and whether the file
holds data enough for what its header declares. Pillow then decodes everything except 16-bit
colour (and 16-bit grey with alpha), which Pillow would silently reduce to 8 bits: OpenCV
decodes those (tifffile where a TIFF stores its channels apart), pillow-heif's own reader deep
HEIF. EXIF orientation is applied, so the pixels are upright. A multi-page TIFF is read page by
page by :func:`read_pages`, every page or none (a damaged page's directory fails the file,
naming the page); :func:`read_image` refuses it rather than return its first page. Every
failure is one :class:`ImageReadError` line, what the C libraries printed meanwhile folded
into it (:mod:`formnet_cli.io.capture`); an image decoded despite their warnings carries them
(:attr:`LoadedImage.decoder_warnings`).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import tifffile
from PIL import Image, ImageCms

from formnet_cli.errors import ImageReadError, ImageTooLargeError
from formnet_cli.io.capture import LibraryOutput, library_output
from formnet_cli.io.formats import PNG_SIGNATURE, format_by_signature, opening_order
from formnet_cli.io.header import (DeclaredPage, RestoreMemory, check_declared, declare_page,
                                   jpeg2000_bits, missing_data, tiff_directories)
from formnet_cli.io.image import LoadedImage
from formnet_cli.io.limits import available_memory, decoding
from formnet_cli.io.metadata import (descriptive_metadata, exif_orientation,
                                     nclx_colour_description, png_gamma, upright_exif)

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
_NOT_AN_IMAGE = "not a supported image (PNG, JPEG, TIFF, BMP, WebP, AVIF, HEIC or JPEG 2000)"
_SIGNATURE_BYTES = 32
_UNKNOWN_READ_BYTES = 64 * 2**20
"""A file larger than this without a known signature is refused from its first bytes (a
sparse file of zeros named ``.png`` is not read whole)."""
_MOST_PAGES = 10_000
"""More TIFF directories than this are refused (counting them reads each)."""


def read_image(path: str | os.PathLike[str], *,
               restore_memory: RestoreMemory | None = None) -> LoadedImage:
    """Decode an image file; raise ImageReadError with a one-line reason on any failure
    (:class:`ImageTooLargeError` over the pixel limit or the memory available, from the header).
    ``restore_memory``: what the caller's restore of it will take (see
    :data:`~formnet_cli.io.header.RestoreMemory`), checked with the decoding's."""
    return read_image_bytes(_file_bytes(path), str(path), restore_memory=restore_memory)


def read_pages(path: str | os.PathLike[str], *,
               restore_memory: RestoreMemory | None = None) -> list[LoadedImage]:
    """Every page of a multi-page TIFF (one :class:`LoadedImage` each); for any other file,
    the one image :func:`read_image` reads. Raises ImageReadError as :func:`read_image` does,
    naming the page: a page that cannot be read (its directory damaged) fails the file.

    Pages of any depth, 16-bit colour included (decoded by OpenCV), keep their own profile,
    resolution, text and XMP. Animations (WebP, PNG) are refused with a one-line reason.
    """
    return read_pages_bytes(_file_bytes(path), str(path), restore_memory=restore_memory)


def read_pages_bytes(data: bytes, name: str, *,
                     restore_memory: RestoreMemory | None = None) -> list[LoadedImage]:
    """:func:`read_pages` for an encoded file held in memory (standard input); ``name`` is
    used in error messages."""
    return _read(data, name, restore_memory, several_pages=True)


def read_image_bytes(data: bytes, name: str, *,
                     restore_memory: RestoreMemory | None = None) -> LoadedImage:
    """Decode an encoded image held in memory; ``name`` is used in error messages."""
    return _read(data, name, restore_memory, several_pages=False)[0]


def _file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; one-line errors for a missing file, a folder, what is not a regular
    file (a FIFO, which would block, a device), an unreadable file and one larger than the
    memory available (a sparse file of terabytes)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        reason = "a link loop" if exc.errno == errno.ELOOP else exc.strerror or exc
        raise ImageReadError(f"{path}: cannot read file ({reason})") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ImageReadError(f"{path}: is a folder, not an image" if stat.S_ISDIR(status.st_mode)
                             else f"{path}: not a regular file (a FIFO, a device or a socket)")
    with os.fdopen(descriptor, "rb") as handle:
        if status.st_size > available_memory():
            raise ImageTooLargeError(f"{path}: the file is larger ({status.st_size / 2**30:.1f} "
                                     "GiB) than the memory available")
        try:
            head = handle.read(_SIGNATURE_BYTES)
            if status.st_size > _UNKNOWN_READ_BYTES and not format_by_signature(head):
                raise ImageReadError(f"{path}: {_NOT_AN_IMAGE}")  # not worth reading it all
            return head + handle.read()
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _read(data: bytes, name: str, restore_memory: RestoreMemory | None,
          several_pages: bool) -> list[LoadedImage]:
    """Check the header, then decode: every page (``several_pages``) or the one image."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    said = LibraryOutput()
    try:
        with decoding(), library_output() as said:
            pages = _decode_file(data, name, restore_memory, several_pages)
    except ImageTooLargeError:
        raise
    except ImageReadError as error:
        if said.lines:  # what libtiff or libpng printed, in the one line
            raise type(error)(f"{error}; the decoder said: {said.summary()}") from None
        raise
    for page in pages:
        page.decoder_warnings = tuple(said.lines)
    return pages


def _open(data: bytes, name: str) -> Image.Image:
    """The file opened by Pillow (its header read, nothing decoded), or one line saying why not."""
    try:
        return Image.open(io.BytesIO(data), formats=opening_order())
    except Image.UnidentifiedImageError:
        kind = format_by_signature(data)
        reason = (kind == "TIFF" and _unreadable_tiff_layout(data)
                  or f"truncated or corrupt {kind} image (its header cannot be read)" if kind
                  else _NOT_AN_IMAGE)
        raise ImageReadError(f"{name}: {reason}") from None
    except Exception as exc:  # decoders raise many types on malformed headers
        raise ImageReadError(f"{name}: truncated or corrupt image ({describe_error(exc)})") from None


def _decode_file(data: bytes, name: str, restore_memory: RestoreMemory | None,
                 several_pages: bool) -> list[LoadedImage]:
    with _open(data, name) as image:
        indices = _page_indices(image, data, name)
        if len(indices) > 1 and not several_pages:
            raise ImageReadError(f"{name}: holds {len(indices)} pages (read them with read_pages)")
        declared = _declared_pages(image, data, name, indices)
        check_declared(declared, name, len(data), restore_memory)
        if len(indices) > 1:
            return _decode_tiff_pages(data, name, indices)
        return [_decode_image(image, data, name)]


def _page_indices(image: Image.Image, data: bytes, name: str) -> list[int]:
    """The directories of a TIFF's full-resolution pages (reduced-resolution ones, thumbnails
    and pyramid levels, NewSubfileType bit 0, left out): a directory that cannot be read fails
    the file, naming its page. ``[0]`` for any other still image; an animation is refused."""
    if image.format != "TIFF":
        frames = 1 if image.format in ("MPO", "HEIF") else _frames(image)  # MPO, HEIF: the primary
        if frames > 1:
            raise ImageReadError(f"{name}: holds {frames} frames; formnet restores still images, "
                                 "not animations")
        return [0]
    if tiff_directories(data, _MOST_PAGES) > _MOST_PAGES:  # before Pillow reads them one by one
        raise ImageReadError(f"{name}: holds over {_MOST_PAGES} pages (directories), more than "
                             "formnet reads")
    info = dict(image.info)
    pages, index = [], 0
    try:
        while True:
            try:
                image.seek(index)
            except EOFError:  # the last directory (Pillow ends a loop in the chain here too)
                break
            except Exception as exc:
                raise ImageReadError(f"{name}: page {index + 1}: its directory (IFD) is damaged "
                                     f"or missing ({describe_error(exc)}); the file is refused "
                                     "whole rather than read without that page") from None
            if not int(image.tag_v2.get(254, 0)) & 1:
                pages.append(index)
            index += 1
        image.seek(0)
    finally:
        image.info = info  # seeking leaves the other pages' entries (e.g. a profile) behind
    return pages or [0]


def _frames(image: Image.Image) -> int:
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:
        return 1


def _declared_pages(image: Image.Image, data: bytes, name: str,
                    indices: list[int]) -> list[DeclaredPage]:
    """Each page as its header declares it; a header declaring more than the file holds is
    refused here (:func:`~formnet_cli.io.header.missing_data`), before anything is decoded."""
    declared = []
    info = dict(image.info)
    for number, index in enumerate(indices, start=1):
        where = f"page {number}: " if len(indices) > 1 else ""
        try:
            if image.format == "TIFF":
                image.seek(index)
            page = declare_page(image, data, number)
            problem = missing_data(image, data, page)
        except Exception as exc:  # a header field of the wrong type
            raise ImageReadError(f"{name}: {where}truncated or corrupt image "
                                 f"({describe_error(exc)})") from None
        if problem:
            kind = format_by_signature(data) or image.format
            raise ImageReadError(f"{name}: {where}truncated or corrupt {kind} image: {problem}")
        declared.append(page)
    if image.format == "TIFF":
        image.seek(indices[0])
        image.info = info
    return declared


def _decode_tiff_pages(data: bytes, name: str, indices: list[int]) -> list[LoadedImage]:
    pages = []
    for number, index in enumerate(indices, start=1):
        try:
            # Each page from a fresh opening: Pillow before 13 carries the last page's palette
            # across seek(), and loading a 16-bit page after a palette page then fails.
            with Image.open(io.BytesIO(data), formats=["TIFF"]) as image:
                image.seek(index)
                stated = exif_orientation(image)  # before decoding, which may apply it
                # Pillow keeps the previous page's profile in info when a page has none.
                image.info.pop("icc_profile", None)
                profile = image.tag_v2.get(34675)
                if isinstance(profile, bytes) and profile:
                    image.info["icc_profile"] = profile
                pixels, alpha, bit_depth, icc_profile = _decode(image, data, index)
                described = descriptive_metadata(image, stated)
                bilevel = image.mode == "1"
        except ImageReadError as exc:
            raise ImageReadError(f"{name}: page {number}: {exc}") from None
        except Exception as exc:
            reason = f"page {number}: truncated or corrupt ({describe_error(exc)})"
            raise ImageReadError(f"{name}: {reason}") from None
        pages.append(LoadedImage(pixels, alpha, bit_depth, icc_profile, None, "TIFF",
                                 *described, bilevel=bilevel))
    return pages


def _decode_image(image: Image.Image, data: bytes, name: str) -> LoadedImage:
    """The one image of a file (a TIFF's only page)."""
    # Before decoding, which may apply it (TIFF); pillow-heif applies it on opening.
    stated = int(image.info.get("original_orientation") or exif_orientation(image))
    try:
        pixels, alpha, bit_depth, icc_profile = _decode(image, data)
    except ImageReadError as exc:
        raise ImageReadError(f"{name}: {exc}") from None
    except Exception as exc:  # truncated data surfaces only when decoding
        raise ImageReadError(f"{name}: truncated or corrupt image ({describe_error(exc)})") from None
    exif = upright_exif(image.info.get("exif"), swap=stated in (5, 6, 7, 8))
    dpi, xmp, text = descriptive_metadata(image, stated)
    colour = None if icc_profile else nclx_colour_description(image)
    return LoadedImage(pixels, alpha, bit_depth, icc_profile, exif, image.format, dpi, xmp, text,
                       colour, bilevel=image.mode == "1", gamma=png_gamma(image))


def describe_error(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _needs_opencv(image: Image.Image, data: bytes) -> bool:
    """True for 16-bit colour or 16-bit grey+alpha, which Pillow reduces to 8 bits."""
    if image.format == "PNG" and data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
        bit_depth, colour_type = data[24], data[25]
        return bit_depth == 16 and colour_type != 0  # type 0 (grey) opens as I;16
    if image.format == "TIFF" and image.mode not in _SIXTEEN_BIT_GREY_MODES:
        bits = image.tag_v2.get(258, 8)
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    if image.format == "JPEG2000" and image.mode not in (*_SIXTEEN_BIT_GREY_MODES, "LA"):
        return jpeg2000_bits(data) > 8  # (OpenCV reads no grey+alpha JPEG 2000: Pillow's 8 bits)
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
    orientation = 1 if turned_by_decoder else exif_orientation(image)  # after Pillow's decoding,
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
        with quiet_opencv():
            decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    else:
        with quiet_opencv():
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
def quiet_opencv() -> Iterator[None]:
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


def _decode_deep_heif(data: bytes) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The primary image of a 10- or 12-bit HEIF at 16 bits (Pillow's view is cut to 8 bits);
    libheif applies the file's rotation, as for 8-bit files."""
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    # uint16, scaled to the full 16-bit range; a copy: the array may view libheif's buffer,
    # freed with ``heif`` (older pillow-heif)
    samples = np.array(heif[heif.primary_index])
    if samples.ndim == 2:
        samples = samples[:, :, None]
    has_alpha = samples.shape[2] in (2, 4)
    colour = samples[:, :, :-1] if has_alpha else samples
    alpha = np.ascontiguousarray(samples[:, :, -1]) if has_alpha else None
    return np.ascontiguousarray(colour), alpha, 16


def _planar_page(data: bytes, index: int) -> np.ndarray:
    """Page ``index`` of a planar TIFF decoded by tifffile, as OpenCV would give it (H x W x C,
    BGR(A) order)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[index]
            samples = page.asarray()
    except Exception as exc:  # e.g. LZW, which tifffile decodes only with imagecodecs
        raise ImageReadError(f"cannot decode this planar (channel by channel) 16-bit TIFF "
                             f"({describe_error(exc)}); save it interleaved") from None
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
    bits = jpeg2000_bits(data) if header.format == "JPEG2000" else bit_depth
    if bit_depth == 16 and 8 < bits < 16:  # e.g. 12-bit samples, which OpenCV leaves at 0-4095
        decoded = np.round(decoded * (65535 / (2**bits - 1))).astype(np.uint16)
    alpha = np.ascontiguousarray(decoded[:, :, 3]) if decoded.shape[2] == 4 else None
    if _is_grey_source(header, data):
        colour = decoded[:, :, :1]  # OpenCV expands grey to BGR; all three are equal
    else:
        colour = decoded[:, :, 2::-1] if decoded.shape[2] >= 3 else decoded[:, :, :1]
    return np.ascontiguousarray(colour), alpha, bit_depth


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
        alpha = np.where(values != key, 65535, 0).astype(np.uint16) if isinstance(key, int) else None
        return values.astype(np.uint16)[:, :, None], alpha, 16, icc_profile
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
    alpha = np.ascontiguousarray(values[:, :, -1]) if has_alpha else None
    return np.ascontiguousarray(colour), alpha, 8, icc_profile


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
