"""The seeded corpus of ``benchmarks/fuzz.py``: unusual valid images, corrupted ones, hostile
forged headers for each format, damaged multi-page TIFFs, special files and odd names.

:func:`make_corpus` writes it into a folder (one sub-folder a category) and returns a
:class:`Case` a file, saying what a correct run does with it. The forging functions
(``forged_png`` ...) are also used by the tests (``tests/test_fuzz_headers.py``).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import tifffile
from PIL import Image

pillow_heif.register_heif_opener()

CATEGORIES = ("valid", "corrupt", "hostile", "multipage", "special", "names")
_SHARE = {"valid": 0.22, "corrupt": 0.58, "hostile": 0.095, "multipage": 0.06, "special": 0.015,
          "names": 0.03}
"""Share of the files each category gets (the issue's run: 654 corrupt, 108 hostile of 1,130)."""


@dataclass(frozen=True)
class Case:
    """One file of the corpus and what a correct run does with it."""

    path: Path
    category: str
    kind: str
    """What it is (``png 16-bit rgb``, ``truncate jpeg``, ``forged tiff 1 x 1e9``)."""
    pages: int | None = None
    """Pages a restored output must hold (known for valid files and hostile multi-page ones)."""
    size: tuple[int, int] | None = None
    """(width, height) a restored output must have, where known (valid files, upright)."""
    expect: str = "any"
    """``done``: must be restored; ``refused``: must fail (or be skipped); ``any``: either,
    in one line."""


# -- valid images --------------------------------------------------------------------------
def textured(rng: np.random.Generator, height: int, width: int, channels: int,
             dtype: type = np.uint8) -> np.ndarray:
    """A smooth gradient with noise: compresses like a photo, not like noise or a flat field."""
    peak = np.iinfo(dtype).max
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = (np.sin(x / (3 + width / 7)) + np.cos(y / (2 + height / 5))) * 0.25 + 0.5
    planes = [np.clip(base * rng.uniform(0.5, 1.0) + rng.normal(0, 0.05, base.shape), 0, 1)
              for _ in range(channels)]
    samples = np.stack(planes, axis=2) if channels > 1 else planes[0]
    return np.round(samples * peak).astype(dtype)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _opencv(extension: str, samples: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(extension, samples, list(params))
    assert ok, extension
    return data.tobytes()


def _tifffile(samples: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, samples, **options)
    return buffer.getvalue()


def _with_orientation(image: Image.Image, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, fmt, exif=exif.tobytes())


ValidMaker = Callable[[np.random.Generator, int, int], tuple[str, bytes, tuple[int, int]]]


def _valid_makers() -> list[ValidMaker]:
    """Functions ``(rng, height, width) -> (kind and extension, bytes, upright (w, h))``."""
    def pil(mode: str, fmt: str, ext: str, **options: object) -> ValidMaker:
        def make(rng, h, w):
            channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "1": 1, "P": 3}[mode]
            samples = textured(rng, h, w, channels)
            if mode == "1":
                image = Image.fromarray(samples).convert("1")
            elif mode == "P":
                image = Image.fromarray(samples, "RGB").convert("P")
            else:
                image = Image.fromarray(samples if channels > 1 else samples, mode)
            return f"{fmt.lower()} {mode} {options or ''}".strip() + ext, encoded(image, fmt, **options), (w, h)
        return make

    def png16(channels: int) -> ValidMaker:
        def make(rng, h, w):
            samples = textured(rng, h, w, channels, np.uint16)
            return f"png 16-bit {channels}ch.png", _opencv(".png", samples), (w, h)
        return make

    def tiff16(channels: int, **options: object) -> ValidMaker:
        def make(rng, h, w):
            samples = textured(rng, h, w, channels, np.uint16)
            written = dict(options)
            if channels == 1:
                samples = samples[:, :, 0] if samples.ndim == 3 else samples
            else:
                written["photometric"] = "rgb"
                if options.get("planarconfig") == "separate":  # stored channel by channel
                    samples = np.ascontiguousarray(np.moveaxis(samples, 2, 0))
            kind = f"tiff 16-bit {channels}ch {' '.join(f'{k}={v}' for k, v in options.items())}"
            return kind.strip() + ".tif", _tifffile(samples, **written), (w, h)
        return make

    def oriented(orientation: int, fmt: str, ext: str) -> ValidMaker:
        def make(rng, h, w):
            image = Image.fromarray(textured(rng, h, w, 3), "RGB")
            upright = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
            return f"{fmt.lower()} orientation {orientation}{ext}", _with_orientation(image, orientation, fmt), upright
        return make

    def jp2_16(rng, h, w):
        h, w = max(h, 32), max(w, 32)  # OpenCV's JPEG 2000 encoder wants 32 px a side
        return "jp2 16-bit rgb.jp2", _opencv(".jp2", textured(rng, h, w, 3, np.uint16)), (w, h)

    def heic10(rng, h, w):
        samples = textured(rng, h, w, 3, np.uint16)
        heif = pillow_heif.from_bytes(mode="RGB;16", size=(w, h), data=samples.tobytes())
        buffer = io.BytesIO()
        heif.save(buffer, quality=90)
        return "heic 10-bit.heic", buffer.getvalue(), (w, h)

    makers: list[ValidMaker] = [
        pil("L", "PNG", ".png"), pil("LA", "PNG", ".png"), pil("RGB", "PNG", ".png"),
        pil("RGBA", "PNG", ".png"), pil("P", "PNG", ".png"), pil("1", "PNG", ".png"),
        pil("L", "JPEG", ".jpg"), pil("RGB", "JPEG", ".jpg", progressive=True),
        pil("RGB", "JPEG", ".jpg", subsampling=0, quality=60), pil("CMYK", "JPEG", ".jpg"),
        pil("L", "TIFF", ".tif"), pil("RGB", "TIFF", ".tif", compression="tiff_lzw"),
        pil("RGBA", "TIFF", ".tif", compression="tiff_adobe_deflate"),
        pil("L", "TIFF", ".tif", compression="packbits"), pil("1", "TIFF", ".tif", compression="group4"),
        pil("RGB", "TIFF", ".tif", compression="jpeg"), pil("P", "TIFF", ".tif"),
        pil("L", "BMP", ".bmp"), pil("RGB", "BMP", ".bmp"), pil("1", "BMP", ".bmp"), pil("P", "BMP", ".bmp"),
        pil("RGB", "WEBP", ".webp", lossless=True), pil("RGBA", "WEBP", ".webp", quality=70),
        pil("RGB", "AVIF", ".avif"), pil("RGB", "HEIF", ".heic"), pil("L", "JPEG2000", ".jp2"),
        pil("RGBA", "JPEG2000", ".jp2"),
        png16(1), png16(3), png16(4), tiff16(1), tiff16(3), tiff16(3, planarconfig="separate"),
        tiff16(3, tile=(16, 16)), tiff16(1, compression="zlib"), jp2_16, heic10,
        *(oriented(orientation, "JPEG", ".jpg") for orientation in range(1, 9)),
        oriented(6, "PNG", ".png"), oriented(8, "WEBP", ".webp"),
    ]
    return makers


_VALID_SIZES = ((1, 1), (1, 29), (29, 1), (2, 3), (7, 5), (17, 33), (40, 48), (64, 24))
"""(height, width) of the valid files: single pixels and rows included."""


# -- forged headers: each format declaring far more pixels than it holds --------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def forged_png(width: int, height: int, colour_type: int = 0, depth: int = 8) -> bytes:
    """A PNG whose IHDR declares ``width x height`` over a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def forged_jpeg(width: int, height: int, mode: str = "L") -> bytes:
    """A 16 x 16 JPEG whose frame header (SOF0) declares ``width x height``."""
    data = bytearray(encoded(Image.new(mode, (16, 16), 128), "JPEG"))
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def forged_tiff(width: int, height: int, mode: str = "L", compression: str | None = None) -> bytes:
    """A 16 x 16 TIFF whose tags declare ``width x height`` (RowsPerStrip the height: one strip),
    e.g. the issue's 1 x 10^9."""
    options = {"compression": compression} if compression else {}
    data = bytearray(encoded(Image.new(mode, (16, 16), 128), "TIFF", **options))
    offset = struct.unpack("<I", data[4:8])[0]
    for index in range(struct.unpack("<H", data[offset:offset + 2])[0]):
        entry = offset + 2 + 12 * index
        value = {256: width, 257: height, 278: height}.get(struct.unpack("<H", data[entry:entry + 2])[0])
        if value is not None:
            data[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, value)  # LONG, count 1
    return bytes(data)


def forged_bmp(width: int, height: int, mode: str = "L") -> bytes:
    data = bytearray(encoded(Image.new(mode, (16, 16), 128), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def forged_webp(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header declares ``width x height`` (at most 16384 a side)."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), 128), "WEBP", lossless=True))
    at = data.find(b"VP8L") + 8 + 1  # chunk header, then the 0x2f signature
    bits = struct.unpack("<I", data[at:at + 4])[0] & ~((1 << 28) - 1)
    data[at:at + 4] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def forged_heif(width: int, height: int, fmt: str = "HEIF") -> bytes:
    """An AVIF or HEIC whose image spatial extents (``ispe``) declare ``width x height``."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), 128), fmt))
    at = data.find(b"ispe")
    while at >= 0:  # every ispe: the image's and its grid's or thumbnail's
        data[at + 8:at + 16] = struct.pack(">II", width, height)
        at = data.find(b"ispe", at + 4)
    return bytes(data)


def forged_jpeg2000(width: int, height: int) -> bytes:
    """A JP2 whose header box (``ihdr``) and codestream (SIZ) declare ``width x height``."""
    data = bytearray(encoded(Image.new("L", (16, 16), 128), "JPEG2000"))
    at = data.find(b"ihdr")
    data[at + 4:at + 12] = struct.pack(">II", height, width)
    at = data.find(b"\xff\x51")
    data[at + 6:at + 14] = struct.pack(">II", width, height)  # Xsiz, Ysiz (offsets stay 0)
    at = data.find(b"\xff\x51")
    data[at + 22:at + 30] = struct.pack(">II", width, height)  # one tile: XTsiz, YTsiz
    return bytes(data)


FORGERS: dict[str, Callable[[int, int], bytes]] = {
    "png": forged_png, "jpg": forged_jpeg, "tif": forged_tiff, "bmp": forged_bmp,
    "webp": forged_webp, "avif": lambda w, h: forged_heif(w, h, "AVIF"), "heic": forged_heif,
    "jp2": forged_jpeg2000}
"""A forger a format (by extension): ``forger(width, height) -> bytes``."""

FORGED_SIZES = ((1, 10**9), (16383, 16383), (40000, 40000), (65535, 65535), (10**9, 1),
                (30000, 30000), (20000, 10000))
"""Declared (width, height): over the limit, at it (the issue's 1 x 10^9), and under it but
more than the memory or the file's data allows (WebP's at most 16383 a side)."""


def zeros_png(width: int, height: int, colour_type: int = 0) -> bytes:
    """A valid PNG of zeros, ``width x height`` (grey or RGB): a decompression bomb (900 MP of
    grey in 0.9 MB), its deflate stream built from one compressed block repeated."""
    channels = {0: 1, 2: 3}[colour_type]
    row = b"\0" * (1 + width * channels)
    rows_a_block = max(1, (1 << 20) // len(row))
    compressor = zlib.compressobj(9)
    block = row * rows_a_block
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(height, rows_a_block)
    tail = compressor.compress(row * rest) + compressor.flush()
    stream = first + repeated * (blocks - 1) + tail[:-4]
    total = len(row) * height  # the Adler-32 of zeros: a = 1, b = the length
    stream += struct.pack(">I", ((total % 65521) << 16) | 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", stream)
            + _png_chunk(b"IEND", b""))


def ifd_offsets(data: bytes) -> list[int]:
    """The offsets of a little-endian TIFF's directories, following the chain (a loop, or an
    offset outside the file, ends it; the offset is still listed: a page was declared)."""
    offsets: list[int] = []
    offset = struct.unpack("<I", data[4:8])[0]
    while offset and offset not in offsets:
        offsets.append(offset)
        if offset + 2 > len(data):
            break
        count = struct.unpack("<H", data[offset:offset + 2])[0]
        end = offset + 2 + 12 * count
        if end + 4 > len(data):
            break
        offset = struct.unpack("<I", data[end:end + 4])[0]
    return offsets


def declared_tiff_pages(data: bytes) -> int:
    """Directories a TIFF declares (for the fuzz: pages an output must hold)."""
    return len(ifd_offsets(data)) if data[:4] == b"II*\x00" else 1


def many_pages_tiff(pages: int) -> bytes:
    """A little-endian TIFF of ``pages`` 1 x 1 grey pages sharing one byte of data (a
    page-count bomb), its directories written directly (Pillow takes minutes for this)."""
    tags = ((256, 4, 1), (257, 4, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, 1), (279, 4, 1))  # (tag, type, value); 273: the byte at 8
    directory = 2 + 12 * len(tags) + 4
    data = bytearray(b"II*\x00" + struct.pack("<I", 10) + b"\x80\x00")
    for index in range(pages):
        start = len(data)
        data += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            data += struct.pack("<HHI", tag, kind, 1) + struct.pack("<I" if kind == 4 else "<HH",
                                                                    *((value,) if kind == 4 else (value, 0)))
        data += struct.pack("<I", start + directory if index < pages - 1 else 0)
    return bytes(data)


def looped_tiff() -> bytes:
    """A 2-page TIFF whose second directory points back at the first."""
    page = Image.new("L", (8, 8), 50)
    data = bytearray(encoded(page, "TIFF", save_all=True, append_images=[Image.new("L", (8, 8), 90)]))
    first, second = ifd_offsets(bytes(data))
    end = second + 2 + 12 * struct.unpack("<H", data[second:second + 2])[0]
    data[end:end + 4] = struct.pack("<I", first)
    return bytes(data)


def _hostile(rng: np.random.Generator, count: int) -> list[tuple[str, bytes, str, int | None, str]]:
    """(name, bytes, kind, pages, expected) of ``count`` hostile files: the issue's cases first
    (the 1 x 10^9 TIFF, a 900 MP PNG of zeros, TIFF chains), then every format's forged header
    at every size (size by size, so that a small corpus has every format), then random ones.
    A forged header of 100 MP or more must be refused; a smaller one may also decode (a
    lossless WebP of one colour takes no bits a pixel, whatever its size)."""
    made = [("tall.tif", forged_tiff(1, 10**9), "forged tif 1 x 1e9 (the issue's)", None, "refused"),
            ("zeros-900mp.png", zeros_png(30000, 30000), "bomb png grey 900 MP of zeros", None, "refused"),
            ("loop.tif", looped_tiff(), "tif directory loop", 2, "done"),
            ("zeros-rgb-400mp.png", zeros_png(20000, 20000, 2), "bomb png rgb 400 MP of zeros", None, "refused"),
            ("tall-rgb.tif", forged_tiff(1, 10**9, "RGB"), "forged tif rgb 1 x 1e9", None, "refused"),
            ("tall-lzw.tif", forged_tiff(1, 10**9, compression="tiff_lzw"), "forged tif lzw 1 x 1e9", None, "refused"),
            ("tall-g4.tif", forged_tiff(1, 10**9, "1", "group4"), "forged tif group4 1 x 1e9", None, "refused"),
            ("rgb.png", forged_png(30000, 30000, 2), "forged png rgb", None, "refused"),
            ("rgba16.png", forged_png(20000, 20000, 6, 16), "forged png 16-bit rgba", None, "refused"),
            ("pages-12000.tif", many_pages_tiff(12_000), "tif 12,000 pages", None, "refused")]
    seen = {name for name, *_ in made}

    def forged(extension: str, width: int, height: int, name: str, kind: str) -> None:
        expect = "refused" if width * height >= 10**8 else "any"
        made.append((name, FORGERS[extension](width, height), kind, None, expect))

    for size in FORGED_SIZES:
        for extension in FORGERS:
            width, height = (min(side, 16383) for side in size) if extension == "webp" else size
            if extension == "jpg" and max(width, height) > 65535:
                continue
            name = f"forged-{width}x{height}.{extension}"
            if name not in seen:
                seen.add(name)
                forged(extension, width, height, name, f"forged {extension} {width} x {height}")
    while len(made) < count:  # 100 MP or more (a smaller one may be restored, which takes long)
        extension = list(FORGERS)[rng.integers(len(FORGERS))]
        most = 16383 if extension == "webp" else 65535
        width = int(rng.integers(10**8 // most + 1, most))
        height = int(rng.integers(10**8 // width + 1, most))
        forged(extension, width, height, f"random-{len(made)}-{width}x{height}.{extension}",
               f"forged {extension} random")
    return made[:count]


# -- corruption -----------------------------------------------------------------------------
def corrupted(rng: np.random.Generator, data: bytes) -> tuple[str, bytes]:
    """``data`` damaged one seeded way: cut, bytes flipped, a range zeroed, deleted or
    repeated, junk inserted, or a PNG chunk's payload changed with its CRC made right again
    (so that the damage reaches the decoder)."""
    data = bytearray(data)
    size = len(data)
    how = ["truncate", "flip", "zero", "delete", "insert", "repeat", "tail"]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        how.append("png-chunk")
    if data[:4] == b"II*\x00":
        how.append("tiff-tag")
    choice = how[rng.integers(len(how))]
    start = int(rng.integers(1, max(2, size)))
    length = int(rng.integers(1, max(2, min(64, size - start + 1))))
    if choice == "truncate":
        data = data[:start]
    elif choice == "flip":
        for at in rng.integers(0, size, int(rng.integers(1, 17))):
            data[at] ^= int(rng.integers(1, 256))
    elif choice == "zero":
        data[start:start + length] = bytes(len(data[start:start + length]))
    elif choice == "delete":
        del data[start:start + length]
    elif choice == "insert":
        data[start:start] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    elif choice == "repeat":
        data[start:start] = data[start:start + length]
    elif choice == "tail":
        data += rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    elif choice == "png-chunk":
        data = bytearray(_damaged_png_chunk(rng, bytes(data)))
    else:
        data = bytearray(_damaged_tiff_tag(rng, bytes(data)))
    return choice, bytes(data)


def _damaged_png_chunk(rng: np.random.Generator, data: bytes) -> bytes:
    chunks, offset = [], 8
    while offset + 12 <= len(data):
        length = struct.unpack(">I", data[offset:offset + 4])[0]
        chunks.append((offset, length))
        offset += 12 + length
    offset, length = chunks[int(rng.integers(len(chunks)))]
    body = bytearray(data[offset + 8:offset + 8 + length])
    for at in rng.integers(0, max(1, length), int(rng.integers(1, 5))):
        if body:
            body[at] ^= int(rng.integers(1, 256))
    kind = data[offset + 4:offset + 8]
    return data[:offset] + _png_chunk(kind, bytes(body)) + data[offset + 12 + length:]


def _damaged_tiff_tag(rng: np.random.Generator, data: bytes) -> bytes:
    """One directory entry of a little-endian TIFF given a random count or value."""
    data = bytearray(data)
    offsets = ifd_offsets(bytes(data))
    ifd = offsets[int(rng.integers(len(offsets)))]
    if ifd + 2 > len(data):
        return bytes(data)
    count = struct.unpack("<H", data[ifd:ifd + 2])[0]
    entry = ifd + 2 + 12 * int(rng.integers(max(1, count)))
    if entry + 12 <= len(data):
        field = int(rng.integers(2))  # the count, or the value
        value = int(rng.choice([0, 1, 2, 255, 65535, 2**31, 2**32 - 1, int(rng.integers(2**32))]))
        data[entry + 4 + 4 * field:entry + 8 + 4 * field] = struct.pack("<I", value)
    return bytes(data)


# -- multi-page TIFFs ------------------------------------------------------------------------
def mixed_pages(rng: np.random.Generator) -> bytes:
    """The issue's 4-page TIFF: 16-bit grey, 1-bit, RGBA and palette pages."""
    pages = [Image.fromarray(textured(rng, 24, 32, 1, np.uint16)),
             Image.fromarray(textured(rng, 24, 32, 1)).convert("1"),
             Image.fromarray(textured(rng, 24, 32, 4), "RGBA"),
             Image.fromarray(textured(rng, 24, 32, 3), "RGB").convert("P")]
    return encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def damaged_page(rng: np.random.Generator, data: bytes) -> tuple[str, bytes]:
    """A page's directory or data of a multi-page TIFF damaged (the issue's: 100 bytes of the
    last directory)."""
    data = bytearray(data)
    offsets = ifd_offsets(bytes(data))
    page = int(rng.integers(len(offsets)))
    where = "directory" if rng.random() < 0.6 else "next-offset"
    start = offsets[page]
    if where == "directory":
        length = int(rng.integers(4, 101))
        data[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    else:  # the chain's link to the next page sent past the end of the file
        count = struct.unpack("<H", data[start:start + 2])[0]
        end = start + 2 + 12 * count
        data[end:end + 4] = struct.pack("<I", len(data) + int(rng.integers(1, 10**6)))
    return f"page {page + 1} {where}", bytes(data)


# -- the corpus ------------------------------------------------------------------------------
def make_corpus(folder: str | os.PathLike[str], *, seed: int = 0, files: int = 1130) -> list[Case]:
    """Write a corpus of about ``files`` files under ``folder`` (a sub-folder a category);
    the same seed writes the same bytes."""
    rng = np.random.default_rng(seed)
    root = Path(folder)
    counts = {category: max(1, round(files * share)) for category, share in _SHARE.items()}
    cases: list[Case] = []
    makers = _valid_makers()

    def write(category: str, name: str, data: bytes, kind: str, **expected: object) -> None:
        path = root / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        cases.append(Case(path, category, kind, **expected))  # type: ignore[arg-type]

    bases: list[tuple[str, bytes]] = []
    for index in range(counts["valid"]):
        height, width = _VALID_SIZES[index % len(_VALID_SIZES)] if index < 2 * len(makers) else \
            (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        kind, data, size = makers[index % len(makers)](rng, height, width)
        extension = kind[kind.rindex("."):]
        bilevel = kind[:-len(extension)].split()[1] == "1"  # refused for denoise, in one line (it holds no noise)
        write("valid", f"valid-{index:04d}{extension}", data, kind[:-len(extension)], pages=1, size=size,
              expect="refused" if bilevel else "done")
        if min(height, width) >= 16:
            bases.append((extension, data))
    while len(bases) < len(makers):  # larger bases for the corruptions: every maker once
        kind, data, _ = makers[len(bases)](rng, 40, 48)
        bases.append((kind[kind.rindex("."):], data))

    for index in range(counts["corrupt"]):
        extension, data = bases[int(rng.integers(len(bases)))]
        how, damaged = corrupted(rng, data)
        write("corrupt", f"corrupt-{index:04d}{extension}", damaged, f"{how} {extension[1:]}")

    for name, data, kind, pages, expect in _hostile(rng, counts["hostile"]):
        write("hostile", name, data, kind, pages=pages, expect=expect)

    for index in range(counts["multipage"]):
        data = mixed_pages(rng)
        if index % 3 == 0:
            write("multipage", f"pages-{index:04d}.tif", data, "4 pages", pages=4, size=(32, 24), expect="done")
        else:
            how, damaged = damaged_page(rng, data)
            write("multipage", f"pages-{index:04d}.tif", damaged, how, pages=declared_tiff_pages(damaged))

    cases += _special_files(root / "special", rng, counts["special"])
    cases += _odd_names(root / "names", rng, counts["names"], makers)
    return cases


def _special_files(folder: Path, rng: np.random.Generator, count: int) -> list[Case]:
    """Files that are not images or not files: empty, a folder, a FIFO, links to nothing, to
    themselves and to a device, a sparse file of 4 GiB, a text file named .png, a link to a
    valid image."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(name: str, kind: str, expect: str = "refused", **expected: object) -> None:
        cases.append(Case(folder / name, "special", kind, expect=expect, **expected))  # type: ignore[arg-type]

    (folder / "empty.png").write_bytes(b"")
    add("empty.png", "empty file")
    (folder / "folder.png").mkdir()
    add("folder.png", "a folder named .png", expect="ignored")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.png")
        add("fifo.png", "a FIFO")
    (folder / "dangling.png").symlink_to("nowhere.png")
    add("dangling.png", "a link to nothing")
    (folder / "loop.png").symlink_to("loop.png")
    add("loop.png", "a link loop")
    if Path("/dev/zero").exists():
        (folder / "zero.png").symlink_to("/dev/zero")
        add("zero.png", "a link to /dev/zero")
    with open(folder / "sparse.png", "wb") as handle:
        handle.truncate(4 * 2**30)
    add("sparse.png", "a sparse 4 GiB file of zeros")
    (folder / "text.png").write_text("not an image\n")
    add("text.png", "text named .png")
    (folder / "html.jpg").write_text("<html><body>404 Not Found</body></html>")
    add("html.jpg", "an HTML error page named .jpg")
    image = folder / "real.png"
    Image.fromarray(textured(rng, 20, 30, 1)).save(image)
    cases.append(Case(image, "special", "a valid image beside them", pages=1, size=(30, 20), expect="done"))
    (folder / "link-to-real.png").symlink_to("real.png")
    add("link-to-real.png", "a link to a valid image (run once)", expect="any")
    return cases


def _odd_names(folder: Path, rng: np.random.Generator, count: int,
               makers: list[ValidMaker]) -> list[Case]:
    """Valid images under names with spaces, accents, CJK, emoji, a leading dash, a newline,
    glob characters, 250 bytes, upper-case extensions, several dots, a non-UTF-8 byte, and a
    hidden one (skipped, and listed as skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["with space.png", "café.png", "写真.png", "📷.png", "-dash.png", "new\nline.png",
             "[glob]*?.png", "x" * 246 + ".png", "UPPER.PNG", "photo.JPEG", "a.b.c.png",
             "tab\there.png", "back\\slash.png", "colon:name.png", "'quote\".png", "%s%n.png"]
    if os.name == "posix":
        names.append(os.fsdecode(b"latin1-\xe9.png"))
    cases = []
    for index, name in enumerate(names[:max(count, len(names))]):
        kind, data, size = makers[0](rng, 12, 16)  # a grey PNG (JPEG for .JPEG)
        if name.lower().endswith(".jpeg"):
            data = encoded(Image.fromarray(textured(rng, 12, 16, 3), "RGB"), "JPEG")
        path = folder / name
        path.write_bytes(data)
        cases.append(Case(path, "names", f"name {name!r}", pages=1, size=size, expect="done"))
    hidden = folder / ".hidden.png"
    hidden.write_bytes(makers[0](rng, 12, 16)[1])
    cases.append(Case(hidden, "names", "a hidden file", expect="skipped"))
    return cases
