"""What a file declares, read from its header before any pixel is decoded, and the checks on it.

Every page's :class:`DeclaredPage` (size, channels, depth, the decoders' buffers) is read
from the header alone; :func:`check_declared` then refuses, in one line and before any pixel
is decoded:

- a page, or all the pages of a file together, over the pixel limit (:func:`limits.max_pixels`);
- a file whose decoding would take over 512 MiB at more than 1,000 bytes for each of its own
  bytes (a 36-byte WebP declaring 16383 x 16383 pixels, a 900 MP PNG of zeros in 0.9 MB: only
  a field of one value compresses so far), unless ``$FORMNET_MAX_MEGAPIXELS`` is set: so that
  no file under 1 MB makes formnet take much over 1 GiB before it is refused, whatever the limit
  and the memory;
- a file whose pages, decoded and restored, need more memory than is available now (the
  decoders' buffers and the float pages, plus what the caller says its restore will take);

and :func:`missing_data` a header that declares more pixels than its file holds data for (a
200-byte TIFF declaring 1 x 10^9 pixels): the image data's size, read from the header (PNG's
IDAT chunks, a TIFF page's strips or tiles, a BMP's rows, a JPEG's scans), times the most its
compression can expand (1 for none, 1,032 for deflate; a bit per 8 x 8 block for JPEG's
Huffman coding) falls short of the pixels. Codings without such a bound (WebP, AVIF, HEIC,
JPEG 2000, fax-coded TIFF, run-length BMP, arithmetic-coded JPEG) are bounded by the ratio above.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from formnet_cli.errors import ImageTooLargeError
from formnet_cli.io.limits import (MAX_MEGAPIXELS_VARIABLE, available_memory, describe_limit,
                                   max_pixels, too_large_reason)

RestoreMemory = Callable[[Sequence["DeclaredPage"]], int]
"""What a caller will need, in bytes, beyond the decoded pages, to restore a file's declared
pages (its peak); it may also raise a :class:`~formnet_cli.errors.FormnetError` to refuse the
file before it is decoded."""

# Bytes a pixel takes in Pillow's own image of each mode (its 3-channel modes take 4).
_PILLOW_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_CONVERTED_MODES = frozenset({"1", "P", "PA", "CMYK", "LA", "La", "RGBa", "RGBX", "YCbCr"})
"""Modes Pillow converts (into a second image) before formnet takes their samples."""
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "YCbCr", "CMYK"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_BOMB_BYTES = 512 * 2**20
_MOST_EXPANSION = 1000
"""Decoding over :data:`_BOMB_BYTES` at more than this many bytes a byte of the file is refused."""
_DEFLATE_RATIO = 1100
"""Deflate expands at most 1,032 times (258 bytes from a little over 2 bits); a margin on top."""
_TIFF_RATIOS = {1: 1, 32773: 64, 5: 4096, 8: _DEFLATE_RATIO, 32946: _DEFLATE_RATIO}
"""The most each TIFF compression expands: none, PackBits (128 bytes from 2), LZW (12-bit codes
of at most 4,096 bytes), deflate. JPEG is bounded by its blocks; the others (fax, LZMA, zstd,
WebP) not."""
_TIFF_JPEG = frozenset({6, 7})
_JPEG_RATIO = 2048
"""A JPEG takes a bit at least an 8 x 8 block (64 samples, 256 once a 2 x 2 subsampled chroma
block is upsampled): a byte of it decodes to 2,048 samples of each component at most."""
_ARITHMETIC_JPEG = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, *_ARITHMETIC_JPEG})


@dataclass(frozen=True)
class DeclaredPage:
    """One page as its header declares it (before EXIF orientation)."""

    number: int
    """1 for the first page (a TIFF's directory number, thumbnails counted)."""
    width: int
    height: int
    channels: int
    """1 or 3, as formnet holds them (alpha apart)."""
    alpha: bool
    bit_depth: int
    """8 or 16, as formnet reads it."""
    bilevel: bool = False
    decoder_bytes: int = 0
    """The decoders' own buffers for this page at their peak (beside the float page)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def float_bytes(self) -> int:
        """Bytes of the decoded page formnet holds: float32 samples, alpha included."""
        return self.pixels * 4 * (self.channels + self.alpha)


def declare_page(image: Image.Image, data: bytes, number: int = 1) -> DeclaredPage:
    """The page ``image`` is at (opened, not decoded), as its header declares it."""
    width, height = image.size
    mode = image.mode
    bit_depth = declared_bit_depth(image, data)
    colour = mode in _COLOUR_MODES or (bit_depth == 16 and _deep_colour(image, data))
    alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info) or (
        image.format == "PNG" and data[25:26] in (b"\x04", b"\x06"))
    channels = 3 if colour else 1
    return DeclaredPage(number, width, height, channels, alpha, bit_depth, bilevel=mode == "1",
                        decoder_bytes=_decoder_bytes(image, width * height,
                                                     channels + alpha, bit_depth))


def declared_bit_depth(image: Image.Image, data: bytes) -> int:
    """16 where formnet reads the samples at 16 bits, else 8."""
    if image.mode.startswith("I"):
        return 16
    if image.format == "PNG":
        return 16 if data[24:25] == b"\x10" else 8
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)
        return 16 if max(bits if isinstance(bits, tuple) else (bits,)) > 8 else 8
    if image.format == "JPEG2000":
        return 16 if jpeg2000_bits(data) > 8 else 8
    if image.format == "HEIF":
        return 16 if int(image.info.get("bit_depth", 8)) > 8 else 8
    return 8


def jpeg2000_bits(data: bytes) -> int:
    """Bits per sample of a JPEG 2000 codestream's first component (its SIZ marker segment:
    SOC, SIZ, Lsiz, Rsiz, 8 sizes of 4 bytes, Csiz, then Ssiz = bits - 1); 8 if not found."""
    start = data.find(b"\xff\x4f\xff\x51")
    ssiz = start + 4 + 2 + 2 + 32 + 2
    return (data[ssiz] & 0x7F) + 1 if start >= 0 and ssiz < len(data) else 8


def _deep_colour(image: Image.Image, data: bytes) -> bool:
    """Whether a 16-bit file holds colour (Pillow's mode says 8-bit RGB, or grey)."""
    if image.format == "PNG":
        return data[25:26] in (b"\x02", b"\x06")
    if image.format == "TIFF":
        return int(image.tag_v2.get(277, 1)) >= 3
    return image.mode not in ("L", "LA", "I", "I;16")


def _decoder_bytes(image: Image.Image, pixels: int, samples: int, bit_depth: int) -> int:
    """The decoders' buffers for one page: the library's own (OpenJPEG's 32-bit samples,
    libwebp's, libavif's and libheif's RGBA), Pillow's image (4 bytes a pixel in its colour
    modes), a converted copy, and the integer samples formnet takes from it."""
    library = {"JPEG2000": 4 * samples, "WEBP": 4, "AVIF": 8, "HEIF": 2 * samples}.get(
        image.format or "", 0)
    pillow = _PILLOW_BYTES.get(image.mode, 4)
    converted = 4 if image.mode in _CONVERTED_MODES else 0
    return pixels * (library + pillow + converted + samples * bit_depth // 8)


def check_declared(pages: Sequence[DeclaredPage], name: str, file_bytes: int,
                   restore_memory: RestoreMemory | None = None) -> None:
    """Refuse (:class:`ImageTooLargeError`, one line naming ``name`` and the page) the pages of
    a file of ``file_bytes`` bytes over the pixel limit, alone or together, decoding far more
    than the file could hold, or needing more memory than is available (see the module)."""
    limit = max_pixels()
    several = len(pages) > 1
    for page in pages:
        if page.pixels > limit:
            where = f"page {page.number}: " if several else ""
            raise ImageTooLargeError(f"{name}: {where}{too_large_reason(page.width, page.height)}")
    total = sum(page.pixels for page in pages)
    if total > limit:
        raise ImageTooLargeError(f"{name}: image too large, refused as a possible decompression "
                                 f"bomb (its {len(pages)} pages hold {total / 1e6:.4g} MP "
                                 f"together, over {describe_limit()})")
    decoding = max(page.decoder_bytes for page in pages)
    expanded = sum(page.decoder_bytes for page in pages)
    if (expanded > _BOMB_BYTES and expanded > _MOST_EXPANSION * file_bytes
            and not os.environ.get(MAX_MEGAPIXELS_VARIABLE, "").strip()):
        raise ImageTooLargeError(f"{name}: image too large for its file, refused as a possible "
                                 f"decompression bomb ({total / 1e6:.4g} MP, {expanded / 2**30:.1f} "
                                 f"GiB to decode from {file_bytes:,} bytes); set "
                                 f"{MAX_MEGAPIXELS_VARIABLE} to read it all the same")
    held = sum(page.float_bytes for page in pages)
    restoring = restore_memory(pages) if restore_memory is not None else 0
    needed = held + max(decoding, restoring)
    free = available_memory()
    if needed > free:
        largest = max(pages, key=lambda page: page.pixels)
        what = (f"its {len(pages)} pages ({total / 1e6:.4g} MP)" if several
                else f"a {largest.width} x {largest.height} image")
        doing = "read and restore" if restore_memory is not None else "read"
        raise ImageTooLargeError(f"{name}: {what} needs about {needed / 2**30:.1f} GiB of memory "
                                 f"to {doing}, {free / 2**30:.1f} GiB free: close other programs, "
                                 "or use a machine with more memory")


def missing_data(image: Image.Image, data: bytes, page: DeclaredPage) -> str | None:
    """Why the file cannot hold the pixels its header declares for ``page`` (``image`` at that
    page), or None where it may (see the module)."""
    kind = image.format
    if kind == "PNG":
        held, expands, needed = _png_data(data), _DEFLATE_RATIO, _raw_bytes(image, data, page)
    elif kind == "TIFF":
        held, expands = _tiff_data(image, data)
        needed = _raw_bytes(image, data, page)
        if expands is None:
            return "its image data lies past the end of the file" if held < 0 else None
    elif kind == "BMP":
        held, expands, needed = _bmp_data(data), _bmp_ratio(data), _bmp_rows(data, page)
    elif kind in ("JPEG", "MPO"):
        blocks = _jpeg_least_blocks(image)
        if blocks is None or _jpeg_frame(data) in _ARITHMETIC_JPEG:
            return None
        held, expands, needed = len(data), 8, blocks  # at least a bit a block
    else:
        return None
    if held < 0:
        return "its image data lies past the end of the file"
    if expands is not None and held * expands < needed:
        return (f"its header declares {page.width} x {page.height} pixels, which its "
                f"{held:,} bytes of image data cannot hold")
    return None


def tiff_directories(data: bytes, most: int) -> int:
    """How many directories (IFDs) a classic TIFF's chain links, counted from the raw bytes
    up to ``most + 1`` (a loop, or an offset outside the file, ends it); 1 for a BigTIFF."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        return 1
    seen: set[int] = set()
    offset = struct.unpack(order + "I", data[4:8])[0]
    while offset and offset not in seen and offset + 2 <= len(data) and len(seen) <= most:
        seen.add(offset)
        end = offset + 2 + 12 * struct.unpack(order + "H", data[offset:offset + 2])[0]
        if end + 4 > len(data):
            break
        offset = struct.unpack(order + "I", data[end:end + 4])[0]
    return len(seen)


def _raw_bytes(image: Image.Image, data: bytes, page: DeclaredPage) -> int:
    """The least bytes the decoded samples of a PNG or TIFF page take, as stored."""
    if image.format == "PNG":
        samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(data[25], 1)
        bits = data[24]
    else:
        samples = int(image.tag_v2.get(277, 1))
        depth = image.tag_v2.get(258, 1)  # the TIFF default: bilevel
        bits = max(depth) if isinstance(depth, tuple) else int(depth)
    return page.pixels * samples * bits // 8


def _png_data(data: bytes) -> int:
    """Bytes of a PNG's IDAT chunks (those inside the file)."""
    held, offset = 0, 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            held += min(length, len(data) - offset - 8)
        if kind == b"IEND":
            break
        offset += 12 + length
    return held


def _tiff_data(image: Image.Image, data: bytes) -> tuple[int, int | None]:
    """Bytes of a TIFF page's strips or tiles inside the file (-1 where none is), and the
    most its compression expands (None: not bounded)."""
    tags = image.tag_v2
    offsets, counts = tags.get(324), tags.get(325)  # tiles
    if offsets is None:
        offsets, counts = tags.get(273), tags.get(279)  # strips
    if offsets is None or counts is None:
        return 0, None
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    held = sum(max(0, min(int(count), len(data) - int(offset)))
               for offset, count in zip(offsets, counts))
    if held == 0 and any(counts):
        return -1, None
    compression = int(tags.get(259, 1))
    if compression in _TIFF_JPEG:
        return held, _JPEG_RATIO * int(tags.get(277, 1))
    return held, _TIFF_RATIOS.get(compression)


def _bmp_data(data: bytes) -> int:
    offset = struct.unpack("<I", data[10:14])[0] if len(data) >= 14 else len(data)
    return len(data) - offset if offset <= len(data) else -1


def _bmp_ratio(data: bytes) -> int | None:
    """1 for stored rows (BI_RGB, BI_BITFIELDS); None for run-length coding (its jumps and
    end-of-image marker leave pixels unstored)."""
    compression = struct.unpack("<I", data[30:34])[0] if len(data) >= 34 and data[14] >= 40 else 0
    return 1 if compression in (0, 3, 6) else None


def _bmp_rows(data: bytes, page: DeclaredPage) -> int:
    """The least bytes a BMP's stored rows take: every row but the last padded to 4 bytes."""
    bits = struct.unpack("<H", data[28:30])[0] if data[14] >= 40 else \
        struct.unpack("<H", data[24:26])[0]
    row = (page.width * bits + 31) // 32 * 4
    return (page.height - 1) * row + (page.width * bits + 7) // 8


def _jpeg_least_blocks(image: Image.Image) -> int | None:
    """Blocks of the JPEG component with the fewest (each takes a bit at least)."""
    layers = getattr(image, "layer", None)  # (id, horizontal, vertical, table) a component
    if not layers:
        return None
    width, height = image.size
    most_across = max(layer[1] for layer in layers)
    most_down = max(layer[2] for layer in layers)
    return min(_ceil(_ceil(width * layer[1], most_across), 8)
               * _ceil(_ceil(height * layer[2], most_down), 8) for layer in layers)


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _jpeg_frame(data: bytes) -> int | None:
    """The JPEG's frame marker (SOF0-SOF15), read segment by segment up to the first scan."""
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in _JPEG_FRAMES:
            return marker
        if marker == 0xDA:
            return None
        offset += 2 + struct.unpack(">H", data[offset + 2:offset + 4])[0]
    return None
