"""Sample pixels and metadata shared by the io tests (``tests/test_io_*.py``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageCms

RNG = np.random.default_rng(0)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_uint(shape: tuple[int, ...], bit_depth: int) -> np.ndarray:
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return RNG.integers(0, 2**bit_depth, size=shape, dtype=np.uint64).astype(dtype)


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make
    return exif


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
TEXT = {"Description": "Zürich harbour, 1921", "Author": "José Müller", "Copyright": "© City Archive"}
