"""Encoding :class:`~formnet_cli.io.image.LoadedImage` into files and streams.

Pillow encodes everything except 16-bit colour (and 16-bit grey with alpha), which OpenCV (PNG,
JPEG 2000) or tifffile (TIFF) write; pillow-heif writes deep HEIF. Each format gets the metadata
it can hold. Files are written atomically (:func:`~formnet_cli.io.atomic.write_atomically`);
every failure is one :class:`ImageWriteError` line (:class:`OutOfSpaceError` for a full disk).
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import pillow_heif
import tifffile
from PIL import Image, PngImagePlugin

from formnet_cli.errors import ImageWriteError, InvalidOptionError, OutOfSpaceError
from formnet_cli.io.atomic import write_atomically
from formnet_cli.io.capture import LibraryOutput, library_output
from formnet_cli.io.decode import describe_error, quiet_opencv
from formnet_cli.io.formats import (ALPHA_FORMATS, DPI_FORMATS, EXIF_FORMATS, ICC_FORMATS,
                                    LOSSY_FORMATS, SIXTEEN_BIT_FORMATS, output_format)
from formnet_cli.io.header import DeclaredPage
from formnet_cli.io.image import LoadedImage, to_uint
from formnet_cli.io.metadata import (XMP_TAG, icc_fits, png_gamma_body, png_text, tiff_tags,
                                     upright_exif)

_JPEG_MAX_DENSITY = 65535  # JFIF stores the resolution in 16 bits
_JPEG_MAX_XMP = 65504  # one APP1 segment, less its header
_JPEG_MAX_COMMENT = 65533  # one COM segment


def check_writable_as(path: str | os.PathLike[str], pages: Sequence[LoadedImage | DeclaredPage],
                      scale: int = 1, format: str | None = None) -> None:
    """Raise :class:`ImageWriteError` for pages (to be enlarged ``scale`` times) the format of
    ``path`` (or ``format``) cannot hold, before any work is spent on them (from their headers,
    before decoding, or decoded): several pages but TIFF, a 16-bit colour JPEG 2000 under 32 px."""
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
        write_atomically(path, encode)


def _check_jpeg_quality(jpeg_quality: int) -> None:
    if not 1 <= jpeg_quality <= 100:
        raise InvalidOptionError(f"JPEG quality must be between 1 and 100, got {jpeg_quality}")


@contextmanager
def _write_errors(name: str | os.PathLike[str], fmt: str) -> Iterator[None]:
    """Turn what encoding or writing ``name`` as ``fmt`` raises into a one-line ImageWriteError,
    with what the C libraries printed meanwhile (dropped where the file is written)."""
    said = LibraryOutput()
    try:
        with library_output() as said:
            yield
    except OSError as exc:
        reason = exc.strerror or describe_error(exc)
        kind = OutOfSpaceError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ImageWriteError
        raise kind(f"{name}: cannot write {fmt} file ({reason}){_said(said)}") from None
    except (ValueError, OverflowError, struct.error) as exc:
        raise ImageWriteError(f"{name}: cannot encode as {fmt} ({describe_error(exc)})"
                              f"{_said(said)}") from None


def _said(said: LibraryOutput) -> str:
    return f"; the encoder said: {said.summary()}" if said.lines else ""


def _encoder(image: LoadedImage, fmt: str, jpeg_quality: int) -> Callable[[BinaryIO], None]:
    """A function that writes the encoded image to an open binary file."""
    bit_depth = 16 if image.bit_depth == 16 and fmt in (*SIXTEEN_BIT_FORMATS, "HEIF") else 8
    colour = to_uint(image.pixels, bit_depth)
    alpha = None
    if image.alpha is not None and fmt in ALPHA_FORMATS:
        alpha = to_uint(image.alpha, bit_depth)[:, :, None]
    if fmt in ("WEBP", "AVIF", "HEIF") and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    icc_profile = image.icc_profile if fmt in ICC_FORMATS else None
    if icc_profile and not icc_fits(icc_profile, colour.shape[2]):
        icc_profile = None
    exif = upright_exif(image.exif) if fmt in EXIF_FORMATS else None
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
    if image.dpi and fmt in DPI_FORMATS and (fmt != "JPEG" or max(image.dpi) <= _JPEG_MAX_DENSITY):
        options["dpi"] = image.dpi
    if image.xmp and (fmt in ("WEBP", "AVIF", "HEIF") or fmt == "JPEG" and len(image.xmp) <= _JPEG_MAX_XMP):
        options["xmp"] = image.xmp
    if fmt in LOSSY_FORMATS:
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
        options["tiffinfo"] = dict(tiff_tags(image))
    elif fmt == "PNG" and (image.text or image.xmp or image.gamma):
        chunks = PngImagePlugin.PngInfo()
        if image.gamma:
            chunks.add(b"gAMA", png_gamma_body(image.gamma))
        for key, value in png_text(image).items():
            chunks.add_itxt(key, value)
        options["pnginfo"] = chunks
    return options


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
        write_atomically(path, _pages_encoder(pages, "TIFF", jpeg_quality))


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
        fits = page.icc_profile is not None and icc_fits(page.icc_profile, page.channels)
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
                         + value.encode("utf-8")) for key, value in png_text(image).items()]
    if image.dpi:  # at most 1e6 (larger is dropped on read): fits pHYs's 32 bits
        per_metre = [round(value / 0.0254) for value in image.dpi]
        chunks.insert(0, _png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if image.gamma:
        chunks.insert(0, _png_chunk(b"gAMA", png_gamma_body(image.gamma)))

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
        with quiet_opencv():
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
    tags = dict(tiff_tags(image))
    options: dict[str, Any] = {
        "photometric": "rgb" if samples.shape[2] >= 3 else "minisblack",
        "compression": "zlib", "predictor": True, "metadata": None,
        "extratags": [(tag, "B", len(value), value, True) if tag == XMP_TAG
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
    if icc_profile and not icc_fits(icc_profile, 3):
        icc_profile = None
    return samples[:, :, [0, 0, 0, 1]], icc_profile
