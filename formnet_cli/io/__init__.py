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
(:class:`LoadedImage`, sample conversions), ``limits`` (the pixel limit), ``metadata``,
``decode``, ``encode``, ``atomic`` (the atomic writer), ``jpeg_quality``. Import from here.
"""

from formnet_cli.io.atomic import check_writable_folder, write_atomically
from formnet_cli.io.decode import read_image, read_image_bytes, read_pages, read_pages_bytes
from formnet_cli.io.encode import check_page_count, check_writable_as, encode_pages, write_image, write_pages
from formnet_cli.io.formats import (IMAGE_EXTENSIONS, extension_of, is_image_path, keeps_alpha,
                                    keeps_colour_description, output_format)
from formnet_cli.io.image import LoadedImage, from_uint, resized, to_uint
from formnet_cli.io.jpeg_quality import estimate_jpeg_quality
from formnet_cli.io.limits import DEFAULT_MAX_MEGAPIXELS, MAX_MEGAPIXELS_VARIABLE, max_pixels
from formnet_cli.io.metadata import describes_other_than_srgb, metadata_not_kept

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS", "IMAGE_EXTENSIONS", "MAX_MEGAPIXELS_VARIABLE", "LoadedImage",
    "check_page_count", "check_writable_as", "check_writable_folder", "describes_other_than_srgb",
    "encode_pages", "estimate_jpeg_quality", "extension_of", "from_uint", "is_image_path",
    "keeps_alpha", "keeps_colour_description", "max_pixels", "metadata_not_kept", "output_format",
    "read_image", "read_image_bytes", "read_pages", "read_pages_bytes", "resized", "to_uint",
    "write_atomically", "write_image", "write_pages",
]
