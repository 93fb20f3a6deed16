"""Files in and out: the only package that reads or writes pixels (and the one atomic writer).

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

Modules: ``formats`` (extensions, signatures, what each format holds), ``image``
(:class:`LoadedImage`, sample conversions), ``limits`` (the pixel limit), ``header`` (what a
file declares, checked before decoding), ``capture`` (the C libraries' standard error),
``metadata``, ``decode``, ``encode``, ``atomic`` (the atomic writer), ``jpeg_quality``. Import
from here: each name loads its module on first use, so that a module needing only the atomic
writer or the JPEG quality (checkpoints, the numpy API) does not load every image library.

Before any pixel is decoded, every page's header is checked against the pixel limit, the
memory available and the data the file holds (``header``); what the C libraries print is
folded into the one-line error, or kept on the image as its ``decoder_warnings``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULE_OF = {
    "check_writable_folder": "atomic", "leftover_temporaries": "atomic",
    "write_atomically": "atomic",
    "DeclaredPage": "header", "RestoreMemory": "header",
    "read_image": "decode", "read_image_bytes": "decode", "read_pages": "decode",
    "read_pages_bytes": "decode",
    "check_page_count": "encode", "check_writable_as": "encode", "encode_pages": "encode",
    "write_image": "encode", "write_pages": "encode",
    "IMAGE_EXTENSIONS": "formats", "extension_of": "formats", "is_image_path": "formats",
    "keeps_alpha": "formats", "keeps_colour_description": "formats", "output_format": "formats",
    "LoadedImage": "image", "from_uint": "image", "resized": "image", "to_uint": "image",
    "estimate_jpeg_quality": "jpeg_quality",
    "DEFAULT_MAX_MEGAPIXELS": "limits", "MAX_MEGAPIXELS_VARIABLE": "limits", "max_pixels": "limits",
    "describes_other_than_srgb": "metadata", "metadata_not_kept": "metadata",
}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from formnet_cli.io.atomic import check_writable_folder, leftover_temporaries, write_atomically
    from formnet_cli.io.decode import read_image, read_image_bytes, read_pages, read_pages_bytes
    from formnet_cli.io.encode import (check_page_count, check_writable_as, encode_pages,
                                       write_image, write_pages)
    from formnet_cli.io.header import DeclaredPage, RestoreMemory
    from formnet_cli.io.formats import (IMAGE_EXTENSIONS, extension_of, is_image_path, keeps_alpha,
                                        keeps_colour_description, output_format)
    from formnet_cli.io.image import LoadedImage, from_uint, resized, to_uint
    from formnet_cli.io.jpeg_quality import estimate_jpeg_quality
    from formnet_cli.io.limits import DEFAULT_MAX_MEGAPIXELS, MAX_MEGAPIXELS_VARIABLE, max_pixels
    from formnet_cli.io.metadata import describes_other_than_srgb, metadata_not_kept


def __dir__() -> list[str]:
    # the public names, those loaded on first use included (tab completion in a notebook)
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
