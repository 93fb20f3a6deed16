"""The metadata an image carries over: ICC profile, EXIF (orientation, resolution, pixel
dimensions), resolution (dpi), XMP, descriptive text, PNG gamma, HEIF colour description.

Read from an opened Pillow image for the upright pixels (the EXIF orientation applied, so the
EXIF and XMP kept say orientation 1), turned into what each encoder writes (TIFF tags, PNG
text chunks), and compared with a written file's header (:func:`metadata_not_kept`).
"""

from __future__ import annotations

import os
import re
import struct
from typing import TYPE_CHECKING, Any

from PIL import Image

from formnet_cli.io.formats import SIXTEEN_BIT_FORMATS
from formnet_cli.io.limits import open_header

if TYPE_CHECKING:
    from formnet_cli.io.image import LoadedImage

_ORIENTATION_TAG = 0x0112
_NCLX_KEYS = ("color_primaries", "transfer_characteristics", "matrix_coefficients", "full_range_flag")
_SRGB_OR_UNSPECIFIED_PRIMARIES = (1, 2)  # ITU-T H.273: BT.709 (sRGB's), unspecified
_SRGB_OR_UNSPECIFIED_TRANSFER = (2, 13)  # unspecified, sRGB
_EXIF_IFD_TAG = 0x8769
_PIXEL_X_TAG, _PIXEL_Y_TAG = 0xA002, 0xA003  # PixelXDimension, PixelYDimension (Exif IFD)
XMP_TAG = 700
# TIFF text tags and the PNG keyword each is carried as (the JPEG comment is "Comment").
_TIFF_TEXT_TAGS = {270: "Description", 315: "Author", 33432: "Copyright"}
_PNG_XMP_KEY = "XML:com.adobe.xmp"
_MAX_DPI = 1e6  # beyond any scanner or microscope: larger values are garbage, dropped on read
# Descriptions written by imaging libraries to record the file's layout (tifffile, ImageJ).
_STRUCTURAL_DESCRIPTIONS = ('{"shape"', "ImageJ=", "<?xml")


def png_gamma(image: Image.Image) -> float | None:
    """A PNG's gAMA value (Pillow's ``gamma``), or None."""
    gamma = image.info.get("gamma") if image.format == "PNG" else None
    return float(gamma) if isinstance(gamma, (int, float)) and 0 < gamma < 100 else None


def _differs_from_srgb(gamma: float | None) -> bool:
    """Whether a gAMA changes how the samples show: not absent, not sRGB's 1/2.2 (0.45455)."""
    return gamma is not None and abs(gamma - 1 / 2.2) > 0.005


def nclx_colour_description(image: Image.Image) -> dict[str, int] | None:
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
        with open_header(written) as header:
            if header.format == "TIFF":
                profile = header.tag_v2.get(34675)
                has_exif = False  # formnet writes no EXIF IFD into a TIFF
            else:
                profile, has_exif = header.info.get("icc_profile"), bool(header.info.get("exif"))
            dpi, xmp, text = descriptive_metadata(header)
            gamma = png_gamma(header)
            channels = 1 if header.getbands()[0] in ("L", "I", "1") else 3
            deep = header.format in (*SIXTEEN_BIT_FORMATS, "HEIF")  # HEIF: 10 bits
    except Exception:  # advice only: never fail a file that was written
        return []
    # A profile for other channels than those written (an RGB one on grey pixels) is left
    # out on purpose: it no longer fits.
    fitting_profile = image.icc_profile if image.icc_profile and icc_fits(image.icc_profile,
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


def exif_orientation(image: Image.Image) -> int:
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


def descriptive_metadata(image: Image.Image, orientation: int = 1) -> tuple[
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


def upright_exif(raw: bytes | None, scale: tuple[float, float] = (1.0, 1.0),
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


def _tiff_text(value: str) -> str:
    """A TIFF text tag as Pillow reads it (each byte a Latin-1 character) turned back into the
    UTF-8 that exiftool, tifffile and formnet write; text that is not UTF-8 stays Latin-1."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def tiff_tags(image: LoadedImage) -> list[tuple[int, bytes]]:
    """(tag, value) of the TIFF text tags and the XMP packet ``image`` holds. The standard says
    ASCII; text beyond it is written as UTF-8 (as exiftool does), not lost to '?'."""
    tags = [(tag, image.text[keyword].encode("utf-8"))
            for tag, keyword in _TIFF_TEXT_TAGS.items() if image.text.get(keyword)]
    if image.xmp:
        tags.append((XMP_TAG, image.xmp))
    return tags


def png_text(image: LoadedImage) -> dict[str, str]:
    """The PNG text chunks for ``image``: its text, and its XMP under the keyword Adobe uses."""
    text = {key: value for key, value in image.text.items() if _png_keyword(key)}
    if image.xmp:
        text[_PNG_XMP_KEY] = image.xmp.decode("utf-8", "replace")
    return text


def png_gamma_body(gamma: float) -> bytes:
    return struct.pack(">I", round(gamma * 100_000))


def _png_keyword(key: str) -> bool:
    """Whether ``key`` is a valid PNG text keyword: 1-79 Latin-1 characters."""
    return 0 < len(key) < 80 and all(" " <= char <= "\xff" for char in key)


def icc_fits(icc_profile: bytes, channels: int) -> bool:
    """True if the profile's colour space (header bytes 16-20) matches grey or RGB pixels."""
    space = icc_profile[16:20]
    return space == (b"GRAY" if channels == 1 else b"RGB ")
