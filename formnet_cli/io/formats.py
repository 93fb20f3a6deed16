"""The formats formnet reads and writes: extensions, signatures, and what each format holds.

Importing this module registers Pillow's plugins and pillow-heif's HEIF opener, so every other
io module (which imports it) decodes HEIC and finds AVIF through Pillow's own plugin.
"""

from __future__ import annotations

import os
from pathlib import Path

import pillow_heif
from PIL import Image

from formnet_cli.errors import ImageWriteError

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
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF", "JPEG2000"})
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP", "AVIF", "HEIF", "JPEG2000"})
ICC_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "WEBP", "AVIF", "HEIF"})
LOSSY_FORMATS = frozenset({"JPEG", "AVIF", "HEIF"})  # written at the JPEG quality option
# TIFF stores EXIF as its own tags; Pillow's libtiff writer rejects a foreign EXIF block.
EXIF_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "AVIF", "HEIF"})
DPI_FORMATS = frozenset({"PNG", "JPEG", "TIFF", "BMP"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_SIGNATURES = ((PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"), (b"BM", "BMP"),
               (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"))
_HEIF_BRANDS = {b"heic": "HEIF", b"heix": "HEIF", b"heim": "HEIF", b"heis": "HEIF",
                b"hevc": "HEIF", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def opening_order() -> list[str]:
    """Pillow's formats in the order formnet tries them: Pillow's AVIF reader before
    pillow-heif's, whichever registered first (an AVIF of brand ``mif1`` is claimed by both, and
    pillow-heif's wheels have no AV1 decoder); for ``Image.open(..., formats=)``."""
    order = [name for name in Image.ID if name != "HEIF"]
    if "HEIF" in Image.ID:
        order.insert(order.index("AVIF") + 1 if "AVIF" in order else len(order), "HEIF")
    return order


def format_by_signature(data: bytes) -> str | None:
    """The format whose signature ``data`` starts with, among those formnet reads."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":  # ISO media: HEIF and AVIF by their brand, not a video
        return _HEIF_BRANDS.get(data[8:12])
    return next((kind for signature, kind in _SIGNATURES if data.startswith(signature)), None)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name ends in a supported image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


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
    return output_format(path, format) in ALPHA_FORMATS


def extension_of(source_format: str | None) -> str:
    """The extension formnet writes a Pillow format as (``"JPEG"`` -> ``".jpg"``): where an
    image read from a stream goes back to a stream in its own format; ``.png`` for a format
    formnet does not write."""
    if source_format == "MPO":  # a JPEG with previews (many cameras)
        source_format = "JPEG"
    names = [name for name, fmt in _FORMAT_BY_NAME.items() if fmt == source_format]
    return "." + names[0] if names else ".png"


def keeps_colour_description(path: str | os.PathLike[str], format: str | None = None) -> bool:
    """Whether the format of ``path`` (or ``format``) carries an nclx colour description (HEIC)."""
    return output_format(path, format) == "HEIF"
