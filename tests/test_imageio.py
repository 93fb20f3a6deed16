"""Image I/O: round trips per format and depth, metadata, bad input, atomic writes."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps

from formnet_cli.io import images as imageio
from formnet_cli.errors import ImageReadError, ImageTooLargeError, ImageWriteError, InvalidOptionError
from formnet_cli.io.images import (
    IMAGE_EXTENSIONS,
    LoadedImage,
    is_image_path,
    read_image,
    read_image_bytes,
    to_uint,
    write_image,
)

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


def save_16bit_colour(path: Path, rgb: np.ndarray) -> None:
    """Write 16-bit RGB(A) with OpenCV, the reference encoder for these files."""
    bgr = rgb[:, :, [2, 1, 0, *range(3, rgb.shape[2])]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".webp"])
def test_lossless_8bit_round_trip_is_exact(tmp_path, channels, extension):
    values = random_uint((9, 7, channels), 8)
    source = tmp_path / f"in{extension}"
    Image.fromarray(values[:, :, 0] if channels == 1 else values).save(source, lossless=True)

    image = read_image(source)
    assert image.pixels.dtype == np.float32 and image.bit_depth == 8
    expected_channels = 3 if extension == ".webp" else channels  # WebP has no grey
    assert image.pixels.shape == (9, 7, expected_channels)
    assert np.array_equal(to_uint(image.pixels, 8)[:, :, :channels], values)

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    again = read_image(target)
    assert np.array_equal(again.pixels, image.pixels)


@pytest.mark.parametrize("extension", [".png", ".tiff"])
def test_16bit_grey_round_trip_keeps_values_above_255(tmp_path, extension):
    values = random_uint((8, 6), 16)
    values[0, 0] = 65535
    values[0, 1] = 257  # would collapse to 1 at 8 bits
    source = tmp_path / f"grey16{extension}"
    Image.fromarray(values).save(source)

    image = read_image(source)
    assert image.bit_depth == 16 and image.pixels.shape == (8, 6, 1)
    assert np.array_equal(to_uint(image.pixels, 16)[:, :, 0], values)

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    with Image.open(target) as written:
        assert written.mode.startswith("I;16")
        assert np.array_equal(np.asarray(written), values)


@pytest.mark.parametrize("extension", [".png", ".tiff"])
def test_16bit_rgb_round_trip_is_exact(tmp_path, extension):
    rgb = random_uint((7, 5, 3), 16)
    rgb[0, 0] = (65535, 300, 1)
    source = tmp_path / f"rgb16{extension}"
    save_16bit_colour(source, rgb)

    image = read_image(source)
    assert image.bit_depth == 16 and image.pixels.shape == (7, 5, 3) and image.alpha is None
    assert np.array_equal(to_uint(image.pixels, 16), rgb)  # channel order is RGB

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    decoded = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16
    assert np.array_equal(decoded[:, :, ::-1], rgb)


def test_16bit_rgba_png_keeps_alpha_at_16_bits(tmp_path):
    rgba = random_uint((4, 6, 4), 16)
    source = tmp_path / "rgba16.png"
    save_16bit_colour(source, rgba)

    image = read_image(source)
    assert image.bit_depth == 16 and image.alpha is not None
    assert np.array_equal(to_uint(image.alpha, 16), rgba[:, :, 3])

    target = tmp_path / "out.png"
    write_image(target, image)
    assert np.array_equal(read_image(target).alpha, image.alpha)


def test_16bit_grey_alpha_png_is_read_as_grey(tmp_path):
    grey_alpha = random_uint((3, 4, 2), 16)
    source = tmp_path / "la16.png"
    source.write_bytes(encode_png(grey_alpha, colour_type=4))

    image = read_image(source)
    assert image.pixels.shape == (3, 4, 1) and image.bit_depth == 16
    assert np.array_equal(to_uint(image.pixels, 16)[:, :, 0], grey_alpha[:, :, 0])
    assert np.array_equal(to_uint(image.alpha, 16), grey_alpha[:, :, 1])


def encode_png(samples: np.ndarray, colour_type: int) -> bytes:
    """A minimal 16-bit PNG (filter 0), for layouts no installed encoder writes."""
    height, width, _ = samples.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    size = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    header = size + bytes([16, colour_type, 0, 0, 0])  # depth, colour type, methods
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_returned_separately_and_written_back(tmp_path, mode):
    channels = len(mode)
    values = random_uint((6, 5, channels), 8)
    source = tmp_path / "alpha.png"
    Image.fromarray(values, mode).save(source)

    image = read_image(source)
    assert image.pixels.shape == (6, 5, channels - 1)
    assert np.array_equal(to_uint(image.alpha, 8), values[:, :, -1])

    target = tmp_path / "out.png"
    write_image(target, image)
    with Image.open(target) as written:
        assert written.mode == mode
        assert np.array_equal(np.asarray(written), values)


def test_alpha_is_dropped_for_jpeg(tmp_path):
    image = LoadedImage(np.full((8, 8, 3), 0.5, np.float32), alpha=np.zeros((8, 8), np.float32))
    target = tmp_path / "out.jpg"
    write_image(target, image)
    with Image.open(target) as written:
        assert written.mode == "RGB"
    grey = LoadedImage(np.full((8, 8, 1), 0.5, np.float32), alpha=np.ones((8, 8), np.float32))
    write_image(target, grey)
    with Image.open(target) as written:
        assert written.mode == "L"


@pytest.mark.parametrize(("mode", "key"), [("L", 7), ("RGB", (7, 8, 9))])
def test_png_colour_key_transparency_becomes_alpha(tmp_path, mode, key):
    pixels = np.full((3, 4) if mode == "L" else (3, 4, 3), 200, np.uint8)
    pixels[1, 2] = key
    Image.fromarray(pixels).save(tmp_path / "keyed.png", transparency=key)
    image = read_image(tmp_path / "keyed.png")
    expected = np.ones((3, 4), np.float32)
    expected[1, 2] = 0
    assert image.channels == (1 if mode == "L" else 3) and np.array_equal(image.alpha, expected)


def test_palette_image_becomes_rgb_or_rgba(tmp_path):
    palette_image = Image.fromarray(random_uint((5, 5, 3), 8)).quantize(colors=8)
    expected = np.asarray(palette_image.convert("RGB"))
    source = tmp_path / "palette.png"
    palette_image.save(source)
    image = read_image(source)
    assert image.pixels.shape == (5, 5, 3) and image.alpha is None
    assert np.array_equal(to_uint(image.pixels, 8), expected)

    transparent = tmp_path / "transparent.png"
    palette_image.save(transparent, transparency=0)
    image = read_image(transparent)
    index = np.asarray(palette_image)
    assert image.alpha is not None
    assert np.array_equal(image.alpha == 0, index == 0)


def test_one_bit_and_cmyk_images_are_converted(tmp_path):
    bits = Image.fromarray(np.eye(6, dtype=bool))
    bits.save(tmp_path / "bits.png")
    image = read_image(tmp_path / "bits.png")
    assert image.pixels.shape == (6, 6, 1)
    assert np.array_equal(image.pixels[:, :, 0], np.eye(6, dtype=np.float32))

    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    image = read_image(tmp_path / "cmyk.tif")
    assert image.pixels.shape == (3, 4, 3)
    assert np.allclose(image.pixels[0, 0], [1.0, 0.0, 0.0])  # pure red


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_exif_orientation_is_applied_and_reset_to_1(tmp_path, extension):
    values = np.zeros((4, 10, 3), np.uint8)
    values[0, 0] = 255  # marks the top-left corner
    source = tmp_path / f"rotated{extension}"
    Image.fromarray(values).save(source, exif=exif_with_orientation(6))

    image = read_image(source)
    assert image.pixels.shape[:2] == (10, 4)  # orientation 6: rotate 90 degrees clockwise
    assert image.pixels[0, -1].mean() > 0.8  # top-left went to top-right

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    with Image.open(target) as written:
        exif = written.getexif()
        assert exif.get(0x0112, 1) == 1
        assert exif.get(0x010F) == "TestCam"  # the rest of EXIF is carried
        assert written.size == (4, 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    values = random_uint((3, 5, 3), 8)
    source = tmp_path / "oriented.png"
    Image.fromarray(values).save(source, exif=exif_with_orientation(orientation))
    with Image.open(source) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened))
    assert np.array_equal(to_uint(read_image(source).pixels, 8), expected)


def test_orientation_is_applied_to_16bit_colour(tmp_path):
    rgb = random_uint((3, 5, 3), 16)
    source = tmp_path / "rgb16.png"
    ok, buffer = cv2.imencodeWithMetadata(
        ".png",
        np.ascontiguousarray(rgb[:, :, ::-1]),
        [cv2.IMAGE_METADATA_EXIF],
        [np.frombuffer(exif_with_orientation(6).tobytes()[6:], np.uint8)],
    )
    source.write_bytes(buffer.tobytes())
    image = read_image(source)
    assert np.array_equal(to_uint(image.pixels, 16), np.rot90(rgb, k=-1))


@pytest.mark.parametrize("extension", [".png", ".jpg", ".tif", ".webp", ".avif", ".heic"])
def test_icc_profile_is_carried(tmp_path, extension):
    source = tmp_path / f"icc{extension}"
    Image.new("RGB", (6, 4), (200, 100, 50)).save(source, icc_profile=SRGB_ICC)
    image = read_image(source)
    assert image.icc_profile == SRGB_ICC

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    with Image.open(target) as written:
        assert written.info.get("icc_profile") == SRGB_ICC


def test_icc_profile_and_exif_survive_16bit_png(tmp_path):
    image = LoadedImage(
        random_uint((4, 4, 3), 16).astype(np.float32) / 65535,
        bit_depth=16,
        icc_profile=SRGB_ICC,
        exif=exif_with_orientation(1).tobytes(),
    )
    write_image(tmp_path / "out.png", image)
    again = read_image(tmp_path / "out.png")
    assert again.icc_profile == SRGB_ICC
    exif = Image.Exif()
    exif.load(again.exif)
    assert exif[0x010F] == "TestCam"
    assert again.bit_depth == 16 and np.array_equal(again.pixels, image.pixels)


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
TEXT = {"Description": "Zürich harbour, 1921", "Author": "José Müller", "Copyright": "© City Archive"}


@pytest.mark.parametrize(("extension", "channels", "bit_depth", "text"), [
    (".png", 3, 8, TEXT | {"Comment": "scan 12, ünïcode"}),
    (".png", 1, 16, TEXT),
    (".png", 3, 16, TEXT | {"Comment": "scan 12, ünïcode"}),   # OpenCV, chunks added after
    (".tif", 3, 8, TEXT),
    (".tif", 1, 16, TEXT),
    (".tif", 3, 16, TEXT),   # tifffile
    (".jpg", 3, 8, {"Comment": "scan 12, ünïcode"}),
])
def test_resolution_xmp_and_text_are_carried(tmp_path, extension, channels, bit_depth, text):
    pixels = random_uint((6, 10, channels), bit_depth).astype(np.float32) / (2**bit_depth - 1)
    image = LoadedImage(pixels, bit_depth=bit_depth, dpi=(600.0, 300.0), xmp=XMP, text=text,
                        icc_profile=SRGB_ICC if channels == 3 else None)
    write_image(tmp_path / f"out{extension}", image)
    again = read_image(tmp_path / f"out{extension}")
    assert again.dpi == pytest.approx((600.0, 300.0), abs=0.01)
    assert again.xmp == XMP and again.text == text
    assert again.bit_depth == bit_depth and again.icc_profile == image.icc_profile
    if extension != ".jpg":
        assert np.array_equal(again.pixels, image.pixels)


def test_tiff_text_of_another_encoding_is_read_as_latin1(tmp_path):
    # UTF-8 is what exiftool and formnet write; bytes that are not UTF-8 are taken as Latin-1.
    Image.new("L", (4, 4)).save(tmp_path / "old.tif", tiffinfo={270: "Zürich".encode("latin-1")})
    assert read_image(tmp_path / "old.tif").text == {"Description": "Zürich"}


def test_16bit_colour_tiff_with_alpha_keeps_profile_and_alpha(tmp_path):
    rgba = random_uint((5, 7, 4), 16).astype(np.float32) / 65535
    image = LoadedImage(rgba[:, :, :3], rgba[:, :, 3], bit_depth=16, icc_profile=SRGB_ICC)
    write_image(tmp_path / "out.tif", image)
    again = read_image(tmp_path / "out.tif")
    assert again.icc_profile == SRGB_ICC and again.bit_depth == 16
    assert np.array_equal(again.pixels, image.pixels) and np.array_equal(again.alpha, image.alpha)


def test_text_a_format_cannot_hold_is_left_out(tmp_path):
    image = LoadedImage(np.full((4, 4, 3), 0.5, np.float32), text=TEXT | {"Comment": "c"},
                        dpi=(300.0, 300.0))
    write_image(tmp_path / "out.jpg", image)   # JPEG: the comment only
    assert read_image(tmp_path / "out.jpg").text == {"Comment": "c"}
    write_image(tmp_path / "out.tif", image)   # TIFF: description, author, copyright
    assert read_image(tmp_path / "out.tif").text == TEXT
    write_image(tmp_path / "out.webp", image)  # WebP: no resolution, no text
    again = read_image(tmp_path / "out.webp")
    assert again.dpi is None and again.text == {}


def test_resolution_follows_the_exif_rotation(tmp_path):
    source = tmp_path / "rotated.jpg"
    Image.new("RGB", (8, 4)).save(source, exif=exif_with_orientation(6), dpi=(600, 300))
    image = read_image(source)
    assert image.pixels.shape[:2] == (8, 4) and image.dpi == (300.0, 600.0)


def test_rotation_turns_the_xmp_orientation_and_the_tiff_resolution_upright(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    Image.new("RGB", (8, 4)).save(tmp_path / "r.jpg", exif=exif_with_orientation(6), xmp=xmp)
    assert read_image(tmp_path / "r.jpg").xmp == xmp.replace(b'"6"', b'"1"')
    Image.new("RGB", (8, 4)).save(tmp_path / "r.tif", tiffinfo={274: 6}, dpi=(300, 100))
    image = read_image(tmp_path / "r.tif")
    assert image.pixels.shape[:2] == (8, 4) and image.dpi == (100.0, 300.0)
    assert imageio.read_pages(tmp_path / "r.tif")[0].dpi == (100.0, 300.0)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_tiff_orientation_is_applied_once_at_any_depth(tmp_path, bit_depth):
    rgb = np.zeros((4, 8, 3), np.uint8 if bit_depth == 8 else np.uint16)
    rgb[0, 0] = 255  # top left as stored; orientation 6 turns it 90 degrees clockwise
    for pages in (1, 2):
        with tifffile.TiffWriter(tmp_path / f"o{pages}.tif") as writer:
            for _ in range(pages):
                writer.write(rgb, photometric="rgb", extratags=[(274, "H", 1, 6, True)],
                             resolution=(300, 150), resolutionunit="INCH", metadata=None)
        for image in imageio.read_pages(tmp_path / f"o{pages}.tif"):
            assert image.pixels.shape[:2] == (8, 4) and image.dpi == (150.0, 300.0)
            assert np.unravel_index(np.argmax(image.pixels[:, :, 0]), (8, 4)) == (0, 3)


def test_metadata_a_format_cannot_hold_is_left_out_not_a_failure(tmp_path):
    big_xmp = b"<x:xmpmeta>" + b" " * 100_000 + b"</x:xmpmeta>"
    image = LoadedImage(np.full((4, 4, 3), 0.5, np.float32), dpi=(70_000.0, 70_000.0), xmp=big_xmp,
                        text={"Comment": "c" * 70_000, "": "no keyword", "k" * 80: "too long"})
    write_image(tmp_path / "out.jpg", image)  # JFIF density, APP1 and COM are 16-bit sized
    again = read_image(tmp_path / "out.jpg")
    assert again.xmp is None and again.text == {} and again.dpi != (70_000.0, 70_000.0)
    write_image(tmp_path / "out.png", image)  # PNG holds them, but not invalid keywords
    again = read_image(tmp_path / "out.png")
    assert again.dpi == pytest.approx((70_000.0, 70_000.0), rel=1e-4)
    assert again.xmp == big_xmp and again.text == {"Comment": "c" * 70_000}


def test_resizing_scales_the_resolution_in_the_file_and_in_the_exif(tmp_path):
    exif = exif_with_orientation(1)
    exif[282], exif[283], exif[296] = 300.0, 600.0, 2
    image = LoadedImage(np.full((4, 4, 3), 0.5, np.float32), exif=exif.tobytes(), dpi=(300.0, 600.0))
    bigger = imageio.resized(image, np.full((12, 12, 3), 0.5, np.float32), None)  # x3 super-resolution
    assert bigger.dpi == (900.0, 1800.0)
    write_image(tmp_path / "out.jpg", bigger)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.info["jfif_density"] == (900, 1800)
        assert (written.getexif()[282], written.getexif()[283]) == (900.0, 1800.0)
    assert read_image(tmp_path / "out.jpg").dpi == (900.0, 1800.0)
    aspect_only = Image.Exif()
    aspect_only[282], aspect_only[283], aspect_only[296] = 1.0, 2.0, 1  # unit 1: no unit
    image = LoadedImage(np.zeros((2, 2, 1), np.float32), exif=aspect_only.tobytes())
    again = Image.Exif()
    again.load(imageio.resized(image, np.zeros((4, 4, 1), np.float32), None).exif)
    assert (again[282], again[283]) == (1.0, 2.0) and image.dpi is None


def test_exif_pixel_dimensions_follow_the_rotation_and_the_resize(tmp_path):
    exif = exif_with_orientation(6)
    exif.get_ifd(0x8769).update({0xA002: 8, 0xA003: 4})  # PixelXDimension, PixelYDimension
    Image.new("RGB", (8, 4)).save(tmp_path / "r.jpg", exif=exif)
    image = read_image(tmp_path / "r.jpg")
    bigger = imageio.resized(image, np.zeros((16, 8, 3), np.float32), None)  # x2 after turning
    for loaded, size in ((image, (4, 8)), (bigger, (8, 16))):
        written = Image.Exif()
        written.load(loaded.exif)
        details = written.get_ifd(0x8769)
        assert (details[0xA002], details[0xA003]) == size
    plain = exif_with_orientation(6)  # without an Exif sub-IFD: none is added
    again = Image.Exif()
    again.load(imageio._upright_exif(plain.tobytes()))
    assert 0x8769 not in again


def test_resolution_only_in_the_exif_is_read(tmp_path):
    exif = exif_with_orientation(6)
    exif[282], exif[283], exif[296] = 300.0, 100.0, 2
    Image.new("RGB", (8, 4)).save(tmp_path / "x.webp", exif=exif.tobytes(), lossless=True)
    image = read_image(tmp_path / "x.webp")
    assert image.dpi == (100.0, 300.0)  # turned upright with the pixels, like the EXIF's own
    written = Image.Exif()
    written.load(image.exif)
    assert (written[282], written[283], written[0x0112]) == (100.0, 300.0, 1)


def test_jfif_resolution_in_dots_per_cm_is_read_in_inches():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG", dpi=(300, 300))
    data = bytearray(buffer.getvalue())
    at = data.index(b"JFIF\x00") + 7  # after the version: units, X density, Y density
    data[at:at + 5] = bytes([2]) + (118).to_bytes(2, "big") + (59).to_bytes(2, "big")
    assert read_image_bytes(bytes(data), "cm.jpg").dpi == pytest.approx((118 * 2.54, 59 * 2.54))


def test_implausible_resolution_is_not_read(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "x.tif", dpi=(4e9, 4e9))
    assert read_image(tmp_path / "x.tif").dpi is None


def test_structural_tiff_descriptions_are_not_carried(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((4, 4), np.uint8))  # writes {"shape": [4, 4]}
    assert read_image(tmp_path / "t.tif").text == {}


def test_planar_16bit_rgb_tiff_is_decoded_exactly(tmp_path):
    rgb = random_uint((6, 5, 3), 16)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    assert np.array_equal(to_uint(read_image(tmp_path / "planar.tif").pixels, 16), rgb)
    pages = [LoadedImage(rgb.astype(np.float32) / 65535, bit_depth=16)] * 2
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for _ in pages:
            writer.write(rgb, photometric="rgb", planarconfig="separate")
    assert all(np.array_equal(to_uint(page.pixels, 16), rgb)
               for page in imageio.read_pages(tmp_path / "pages.tif"))


def test_16bit_colour_page_after_a_thumbnail_is_the_right_page(tmp_path):
    rgb = random_uint((6, 5, 3), 16)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        writer.write(np.zeros((4, 4), np.uint8), metadata=None)
        writer.write(np.ones((2, 2, 3), np.uint16), photometric="rgb", subfiletype=1, metadata=None)
        writer.write(rgb, photometric="rgb", metadata=None)
    pages = imageio.read_pages(tmp_path / "pages.tif")
    assert len(pages) == 2 and np.array_equal(to_uint(pages[1].pixels, 16), rgb)


def test_16bit_grey_alpha_written_as_rgba_drops_its_grey_profile(tmp_path):
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()[:16] + b"GRAY" + (
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()[20:])
    image = LoadedImage(np.full((3, 3, 1), 0.5, np.float32), np.ones((3, 3), np.float32),
                        bit_depth=16, icc_profile=grey_icc)
    for name in ("out.tif", "out.png"):
        write_image(tmp_path / name, image)
        assert read_image(tmp_path / name).icc_profile is None


def test_signed_16bit_tiff_is_still_read(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.arange(16, dtype=np.int16).reshape(4, 4) * 1000)
    image = read_image(tmp_path / "s.tif")
    assert image.bit_depth == 16 and image.pixels.shape == (4, 4, 1)


def test_threads_reading_at_once_leave_pillow_as_it_was(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    limit = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: read_image(tmp_path / "x.png"), range(40)))
    assert Image.MAX_IMAGE_PIXELS == limit


def test_grey_image_drops_an_rgb_profile(tmp_path):
    image = LoadedImage(np.full((4, 4, 1), 0.25, np.float32), icc_profile=SRGB_ICC)
    write_image(tmp_path / "out.png", image)
    with Image.open(tmp_path / "out.png") as written:
        assert "icc_profile" not in written.info


def test_jpeg_quality_is_honoured(tmp_path):
    noise = LoadedImage(RNG.random((64, 64, 3), dtype=np.float32))
    write_image(tmp_path / "high.jpg", noise)
    write_image(tmp_path / "low.jpeg", noise, jpeg_quality=20)
    assert (tmp_path / "low.jpeg").stat().st_size < (tmp_path / "high.jpg").stat().st_size
    with pytest.raises(InvalidOptionError):
        write_image(tmp_path / "bad.jpg", noise, jpeg_quality=0)


def test_16bit_image_is_written_as_8bit_jpeg(tmp_path):
    image = LoadedImage(np.full((8, 8, 3), 0.5, np.float32), bit_depth=16)
    write_image(tmp_path / "out.jpg", image)
    assert read_image(tmp_path / "out.jpg").bit_depth == 8


# ----------------------------------------------------------------------------- formats, quantising


def test_explicit_format_overrides_the_extension(tmp_path):
    target = tmp_path / "no_extension"
    write_image(target, LoadedImage(np.zeros((2, 2, 3), np.float32)), format="jpg")
    with Image.open(target) as written:
        assert written.format == "JPEG"
    assert read_image(target).source_format == "JPEG"


@pytest.mark.parametrize("extension", [".avif", ".heic"])
@pytest.mark.parametrize("channels", [1, 3])
def test_avif_and_heic_round_trip_keep_alpha_exif_xmp_and_the_quality(tmp_path, channels, extension):
    pixels = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (24, 1))[:, :, None].repeat(channels, 2)
    alpha = np.zeros((24, 32), np.float32)
    alpha[:, 16:] = 1
    image = LoadedImage(pixels, alpha, exif=exif_with_orientation(1).tobytes(), xmp=XMP)
    write_image(tmp_path / f"out{extension}", image, jpeg_quality=90)
    again = read_image(tmp_path / f"out{extension}")
    assert again.source_format == extension[1:].upper().replace("HEIC", "HEIF")
    assert again.channels == 3  # written in colour
    assert np.abs(again.pixels - np.repeat(pixels, 3 // channels, 2)).max() < 4 / 255
    assert np.array_equal(again.alpha, alpha) and again.xmp == XMP
    exif = Image.Exif()
    exif.load(again.exif)
    assert exif[0x010F] == "TestCam"
    write_image(tmp_path / f"low{extension}", image, jpeg_quality=10)
    assert (tmp_path / f"low{extension}").stat().st_size < (tmp_path / f"out{extension}").stat().st_size


def test_heic_resolution_follows_its_rotation(tmp_path):
    exif = exif_with_orientation(6)
    exif[282], exif[283], exif[296] = 300.0, 150.0, 2
    Image.new("RGB", (8, 4)).save(tmp_path / "phone.heic", exif=exif.tobytes(), quality=-1)
    image = read_image(tmp_path / "phone.heic")
    assert image.pixels.shape[:2] == (8, 4) and image.dpi == (150.0, 300.0)


def test_avif_of_any_brand_is_read_by_pillows_avif_plugin():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="AVIF", quality=90)
    data = buffer.getvalue()
    assert data[8:12] == b"avif"
    image = read_image_bytes(data[:8] + b"mif1" + data[12:], "x.avif")  # the HEIF plugin claims mif1
    assert image.source_format == "AVIF" and abs(image.pixels[0, 0, 0] - 200 / 255) < 0.02


def test_heic_with_several_images_reads_the_primary_one(tmp_path):
    first, second = Image.new("RGB", (8, 6), (250, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 250))
    first.save(tmp_path / "burst.heic", save_all=True, append_images=[second], quality=-1)
    image = read_image(tmp_path / "burst.heic")
    assert image.pixels.shape == (6, 8, 3) and image.pixels[0, 0, 0] > 0.9


def test_10_bit_heic_is_read_at_16_bits(tmp_path):
    import pillow_heif

    ramp = np.linspace(0, 65535, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint16)
    pillow_heif.from_bytes(mode="RGB;16", size=(16, 16), data=ramp.tobytes()).save(
        tmp_path / "deep.heic", quality=-1)  # stored at 10 bits
    image = read_image(tmp_path / "deep.heic")
    assert image.bit_depth == 16 and len(np.unique(to_uint(image.pixels, 16))) > 256
    assert np.abs(image.pixels - ramp / 65535).max() < 2 / 1023
    image.icc_profile, image.xmp = SRGB_ICC, XMP
    write_image(tmp_path / "again.heic", image, jpeg_quality=100)  # written back at 10 bits
    again = read_image(tmp_path / "again.heic")
    assert again.bit_depth == 16 and len(np.unique(to_uint(again.pixels, 16))) > 256
    assert again.icc_profile == SRGB_ICC and again.xmp == XMP


def test_a_format_this_installation_cannot_write_is_refused_before_any_work(monkeypatch):
    monkeypatch.delitem(Image.SAVE, "AVIF")
    with pytest.raises(ImageWriteError, match="cannot write AVIF files"):
        imageio.output_format("out.avif")


def test_heic_rotation_is_applied_once(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, 0] = 255  # top left, before turning by EXIF orientation 6 (90 degrees clockwise)
    Image.fromarray(pixels).save(tmp_path / "phone.heic", exif=exif_with_orientation(6).tobytes(), quality=-1)
    image = read_image(tmp_path / "phone.heic")
    assert image.pixels.shape[:2] == (8, 4)
    assert np.unravel_index(np.argmax(image.pixels[:, :, 0]), (8, 4)) == (0, 3)  # now top right


def test_is_image_path_and_extensions():
    assert is_image_path("a/B.PNG") and is_image_path("x.JpEg") and is_image_path(Path("y.tiff"))
    assert not is_image_path("notes.txt") and not is_image_path("png")
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".avif",
                                ".heic", ".heif", ".jp2"}


def test_to_uint_rounds_and_clips():
    pixels = np.array([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 2.0, np.nan], np.float32)
    assert to_uint(pixels, 8).tolist() == [0, 0, 0, 1, 255, 255, 0]
    assert to_uint(np.float32([0.5]), 16).tolist() == [32768]  # 32767.5 rounds half to even
    assert to_uint(np.float32([257 / 65535]), 16).dtype == np.uint16


def test_read_image_bytes_matches_file(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(buffer, format="PNG")
    image = read_image_bytes(buffer.getvalue(), "memory.png")
    assert image.source_format == "PNG" and to_uint(image.pixels[0, 0], 8).tolist() == [1, 2, 3]


def test_loaded_image_validates_shapes():
    assert LoadedImage(np.zeros((2, 3))).pixels.shape == (2, 3, 1)
    with pytest.raises(ValueError):
        LoadedImage(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError):
        LoadedImage(np.zeros((2, 3, 3)), alpha=np.zeros((3, 2)))


# ----------------------------------------------------------------------------- bad input


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_uint((64, 64, 3), 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_png_bytes() -> bytes:
    """A complete PNG whose compressed pixel data starts with a broken zlib header."""
    data = bytearray(png_bytes())
    assert data[37:41] == b"IDAT"
    data[41:43] = b"\xff\xff"
    return bytes(data)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_uint((64, 64, 3), 8)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"just some text, not pixels\n", "not a supported image"),
        ("cut.png", png_bytes()[:400], "truncated or corrupt"),
        ("cut.jpg", jpeg_bytes()[:600], "truncated or corrupt"),
        ("bad.png", corrupt_png_bytes(), "truncated or corrupt"),
        ("cut.tif", b"II*\x00\x08\x00", "truncated or corrupt TIFF image"),
        ("cut.jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00", "truncated or corrupt"),
    ],
)
def test_bad_input_raises_one_line_read_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_multi_page_tiff_reads_and_writes_every_page(tmp_path):
    grey = random_uint((16, 20), 8)
    rgb = random_uint((12, 10, 3), 8)
    rgba = random_uint((8, 8, 4), 8)
    deep = random_uint((10, 6), 16)
    frames = [Image.fromarray(grey), Image.fromarray(rgb), Image.fromarray(rgba, "RGBA"),
              Image.fromarray(deep)]
    source = tmp_path / "scan.tif"
    frames[0].save(source, save_all=True, append_images=frames[1:])
    pages = imageio.read_pages(source)
    assert [page.pixels.shape for page in pages] == [(16, 20, 1), (12, 10, 3), (8, 8, 3), (10, 6, 1)]
    assert [page.bit_depth for page in pages] == [8, 8, 8, 16]
    np.testing.assert_array_equal(to_uint(pages[3].pixels, 16)[:, :, 0], deep)
    copy = tmp_path / "copy.tif"
    imageio.write_pages(copy, pages)
    again = imageio.read_pages(copy)
    assert len(again) == 4
    for before, after in zip(pages, again):
        np.testing.assert_array_equal(before.pixels, after.pixels)
        assert before.bit_depth == after.bit_depth and (after.alpha is None) == (before.alpha is None)
    np.testing.assert_array_equal(to_uint(again[2].alpha, 8), rgba[:, :, 3])
    with pytest.raises(ImageReadError, match="holds 4 pages"):
        read_image(source)  # a single image from a multi-page file would drop pages
    with pytest.raises(ImageWriteError, match="4 pages need a TIFF output"):
        imageio.write_pages(tmp_path / "copy.png", pages)


def test_multi_page_tiff_pages_keep_their_depth_and_metadata(tmp_path):
    rgb16 = random_uint((6, 5, 4), 16).astype(np.float32) / 65535
    pages = [LoadedImage(rgb16[:, :, :3], rgb16[:, :, 3], bit_depth=16, icc_profile=SRGB_ICC,
                         dpi=(400.0, 400.0), text=TEXT, xmp=XMP),
             LoadedImage(random_uint((4, 6, 1), 8).astype(np.float32) / 255, dpi=(200.0, 100.0)),
             LoadedImage(random_uint((3, 3, 1), 8).astype(np.float32) / 255,
                         random_uint((3, 3), 8).astype(np.float32) / 255, dpi=(118.11, 118.11)),
             LoadedImage(random_uint((2, 2, 1), 8).astype(np.float32) / 255)]  # none after one with
    imageio.write_pages(tmp_path / "pages.tif", pages)
    again = imageio.read_pages(tmp_path / "pages.tif")
    for before, after in zip(pages, again, strict=True):
        assert after.bit_depth == before.bit_depth and np.array_equal(after.pixels, before.pixels)
        assert (after.alpha is None) == (before.alpha is None)
        assert before.alpha is None or np.array_equal(after.alpha, before.alpha)
        assert (after.icc_profile, after.text, after.xmp) == (before.icc_profile, before.text, before.xmp)
        assert after.dpi == (None if before.dpi is None else pytest.approx(before.dpi))


def test_encoded_pages_are_the_file_write_pages_writes(tmp_path):
    pages = [LoadedImage(random_uint((4, 6, 1), 8).astype(np.float32) / 255, dpi=(300.0, 300.0)),
             LoadedImage(random_uint((3, 5, 3), 16).astype(np.float32) / 65535, bit_depth=16)]
    encoded = imageio.encode_pages(pages, "tif")
    again = imageio.read_pages_bytes(encoded, "stream")
    assert [page.bit_depth for page in again] == [8, 16]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(pages, again, strict=True))
    one = imageio.encode_pages(pages[:1], ".jpg", jpeg_quality=80)
    assert one.startswith(b"\xff\xd8") and imageio.read_image_bytes(one, "stream").dpi == (300.0, 300.0)
    with pytest.raises(ImageWriteError, match="standard output: 2 pages need a TIFF output"):
        imageio.encode_pages(pages, "png")


@pytest.mark.parametrize("source_format, extension", [
    ("JPEG", ".jpg"), ("MPO", ".jpg"), ("TIFF", ".tif"), ("HEIF", ".heic"), ("JPEG2000", ".jp2"),
    ("GIF", ".png"), (None, ".png")])
def test_a_streamed_image_goes_back_in_its_own_format(source_format, extension):
    assert imageio.extension_of(source_format) == extension


def _tiff_with_pages(path: Path, pages: list[tuple[Image.Image, dict]]) -> Path:
    """A TIFF whose pages are saved with their own options (Pillow's save_all shares them)."""
    from PIL import TiffImagePlugin

    with TiffImagePlugin.AppendingTiffWriter(str(path), new=True) as writer:
        for image, options in pages:
            image.save(writer, format="TIFF", **options)
            writer.newFrame()
    return path


def test_tiff_pages_keep_their_own_profiles_and_skip_thumbnails(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    first, second = (Image.fromarray(random_uint((16, 16, 3), 8)) for _ in range(2))
    thumbnail = Image.fromarray(random_uint((4, 4, 3), 8))
    source = _tiff_with_pages(tmp_path / "scan.tif", [
        (first, {"icc_profile": srgb}), (second, {}),
        (thumbnail, {"tiffinfo": {254: 1}}),  # NewSubfileType: reduced resolution
    ])
    pages = imageio.read_pages(source)
    assert [page.pixels.shape for page in pages] == [(16, 16, 3), (16, 16, 3)]
    assert pages[0].icc_profile == srgb and pages[1].icc_profile is None
    copy = tmp_path / "copy.tif"
    imageio.write_pages(copy, pages)  # each page keeps its own
    assert [page.icc_profile for page in imageio.read_pages(copy)] == [srgb, None]
    # One full-resolution page and its thumbnail: a single image, for read_image too.
    single = _tiff_with_pages(tmp_path / "single.tif",
                              [(first, {}), (thumbnail, {"tiffinfo": {254: 1}})])
    assert read_image(single).pixels.shape == (16, 16, 3)
    assert len(imageio.read_pages(single)) == 1


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the broken chain
def test_tiff_with_a_broken_page_chain_still_reads_its_first_page(tmp_path):
    path = tmp_path / "broken.tif"
    Image.fromarray(random_uint((12, 12), 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"  # little-endian, as Pillow writes
    # Point the first IFD's next-IFD offset past the end of the file.
    ifd = int.from_bytes(data[4:8], "little")
    entries = int.from_bytes(data[ifd:ifd + 2], "little")
    next_offset = ifd + 2 + 12 * entries
    data[next_offset:next_offset + 4] = (len(data) + 1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert read_image(path).pixels.shape == (12, 12, 1)
    assert len(imageio.read_pages(path)) == 1


def test_single_page_files_read_as_one_page(tmp_path):
    path = tmp_path / "one.png"
    Image.fromarray(random_uint((9, 7, 3), 8)).save(path)
    [page] = imageio.read_pages(path)
    np.testing.assert_array_equal(page.pixels, read_image(path).pixels)


def test_animations_are_refused_not_cut_to_their_first_frame(tmp_path):
    frames = [Image.fromarray(random_uint((16, 16, 3), 8)) for _ in range(3)]
    path = tmp_path / "clip.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(ImageReadError, match="holds 3 frames; formnet restores still images"):
        imageio.read_pages(path)


@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_truncated_16bit_colour_raises_and_prints_nothing(tmp_path, capfd, extension):
    # Decoded by OpenCV: neither libpng's nor libtiff's own complaints reach standard error.
    full = tmp_path / f"full{extension}"
    write_image(full, LoadedImage(random_uint((64, 64, 3), 16).astype(np.float32) / 65535,
                                  bit_depth=16))
    cut = tmp_path / f"cut{extension}"
    cut.write_bytes(full.read_bytes()[:len(full.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)
    assert capfd.readouterr().err == ""


def test_missing_file_and_folder_raise_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("pixels_over_limit", [1.5, 3.0])  # warning zone and error zone
@pytest.mark.filterwarnings("error")  # no Pillow warning may leak past the one-line error
def test_decompression_bomb_raises_read_error(tmp_path, monkeypatch, pixels_over_limit):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", str(100 * 100 / pixels_over_limit / 1e6))
    for read in (read_image, imageio.read_pages):
        with pytest.raises(ImageTooLargeError, match="decompression bomb.*set FORMNET_MAX_MEGAPIXELS"):
            read(path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit is left as it was
    monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", "0.01")
    assert read_image(path).pixels.shape == (100, 100, 1)


def test_the_default_limit_reads_large_camera_frames(monkeypatch):
    monkeypatch.delenv("FORMNET_MAX_MEGAPIXELS", raising=False)
    assert imageio.max_pixels() >= 400e6  # a 400 MP pixel-shift frame; Pillow's own is 89.5 MP
    for bad in ("lots", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("FORMNET_MAX_MEGAPIXELS", bad)
        with pytest.raises(InvalidOptionError, match="FORMNET_MAX_MEGAPIXELS must be a positive"):
            imageio.max_pixels()


@pytest.mark.parametrize("dtype, reason", [(np.int32, "signed 32-bit integer samples are not read"),
                                           (np.float32, "32-bit floating-point samples are not read")])
def test_32_bit_tiff_is_refused_not_clipped(tmp_path, dtype, reason):
    path = tmp_path / "deep.tif"
    Image.fromarray((np.arange(64).reshape(8, 8) * 100_000).astype(dtype)).save(path)
    with pytest.raises(ImageReadError, match=reason):
        read_image(path)


# ----------------------------------------------------------------------------- writing failures


def failing_save(exception: BaseException):
    def save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise exception

    return save


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, exception):
    monkeypatch.setattr(Image.Image, "save", failing_save(exception))
    image = LoadedImage(np.zeros((4, 4, 3), np.float32))
    expected = ImageWriteError if isinstance(exception, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_image(tmp_path / "out.png", image)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, LoadedImage(np.zeros((4, 4, 3), np.float32)))
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", failing_save(ValueError("encoder broke")))
    with pytest.raises(ImageWriteError, match="cannot encode as PNG"):
        write_image(target, LoadedImage(np.ones((4, 4, 3), np.float32)))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_successful_write_leaves_no_temporary_file(tmp_path):
    write_image(tmp_path / "out.tif", LoadedImage(np.zeros((4, 4, 3), np.float32), bit_depth=16))
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_unwritable_destinations_raise_write_error(tmp_path):
    image = LoadedImage(np.zeros((2, 2, 1), np.float32))
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ImageWriteError, match="is not a folder"):
        write_image(blocker / "out.png", image)
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.png", image)
    with pytest.raises(ImageWriteError, match="unsupported output format"):
        write_image(tmp_path / "out.gif", image)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageWriteError, match="cannot write PNG file"):
        write_image(tmp_path / "folder.png", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.png"]


def test_output_format_names():
    assert imageio.output_format("x.JPG") == "JPEG"
    assert imageio.output_format("x.png", ".tif") == "TIFF"
    assert imageio.output_format("x", "WebP") == "WEBP"


def test_metadata_not_kept_reads_the_written_header(tmp_path):
    image = LoadedImage(np.full((4, 4, 3), 0.5, np.float32), icc_profile=SRGB_ICC,
                        dpi=(300.0, 300.0), text={"Comment": "scan 12"})
    write_image(tmp_path / "out.png", image)
    assert imageio.metadata_not_kept(image, tmp_path / "out.png") == []
    write_image(tmp_path / "out.webp", image)
    assert imageio.metadata_not_kept(image, tmp_path / "out.webp") == ["resolution", "text (Comment)"]
    deep = LoadedImage(np.full((40, 40, 3), 0.5, np.float32), bit_depth=16)
    write_image(tmp_path / "deep.jpg", deep)
    assert imageio.metadata_not_kept(deep, tmp_path / "deep.jpg") == ["16-bit depth"]
    write_image(tmp_path / "deep.jp2", deep)
    assert imageio.metadata_not_kept(deep, tmp_path / "deep.jp2") == []
    grey_with_rgb_profile = LoadedImage(np.full((4, 4, 1), 0.5, np.float32), icc_profile=SRGB_ICC)
    write_image(tmp_path / "grey.png", grey_with_rgb_profile)  # left out on purpose: not noted
    assert imageio.metadata_not_kept(grey_with_rgb_profile, tmp_path / "grey.png") == []


def test_metadata_not_kept_reads_a_header_beyond_pillows_own_limit(tmp_path, monkeypatch):
    image = LoadedImage(np.full((40, 40, 1), 0.5, np.float32), dpi=(300.0, 300.0))
    write_image(tmp_path / "big.webp", image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40 x 40 is then a "bomb" to Pillow
    assert imageio.metadata_not_kept(image, tmp_path / "big.webp") == ["resolution"]
    assert imageio.metadata_not_kept(image, tmp_path / "missing.png") == []


@pytest.mark.parametrize(("channels", "bit_depth", "with_alpha"), [
    (1, 8, False), (3, 8, True), (1, 16, False), (3, 16, False), (3, 16, True)])
def test_jpeg2000_round_trip_is_lossless_at_its_depth(tmp_path, channels, bit_depth, with_alpha):
    # Archives' format: Pillow writes 8 bits and 16-bit grey, OpenCV 16-bit colour (lossless).
    scale = 2**bit_depth - 1
    pixels = random_uint((40, 50, channels), bit_depth).astype(np.float32) / scale
    alpha = random_uint((40, 50), bit_depth).astype(np.float32) / scale if with_alpha else None
    write_image(tmp_path / "scan.jp2", LoadedImage(pixels, alpha, bit_depth=bit_depth))
    again = read_image(tmp_path / "scan.jp2")
    assert again.source_format == "JPEG2000" and again.bit_depth == bit_depth
    assert again.text == {}  # not OpenJPEG's "Created by OpenJPEG" comment
    assert np.array_equal(again.pixels, pixels)
    assert (again.alpha is None) if alpha is None else np.array_equal(again.alpha, alpha)


def test_a_16bit_colour_jpeg2000_too_small_for_opencv_is_one_line(tmp_path):
    image = LoadedImage(random_uint((20, 30, 3), 16).astype(np.float32) / 65535, bit_depth=16)
    with pytest.raises(ImageWriteError, match="needs 32 px a side.*write .tif or .png"):
        write_image(tmp_path / "tiny.jp2", image)
    assert list(tmp_path.iterdir()) == []


def test_a_12bit_colour_jpeg2000_is_scaled_to_16_bits():
    # tests/data/rgb12bit.jp2: imagecodecs.jpeg2k_encode(c, codecformat="jp2", bitspersample=12,
    # reversible=True) of c = default_rng(0).integers(0, 4096, (12, 16, 3), dtype=np.uint16).
    expected = np.random.default_rng(0).integers(0, 4096, (12, 16, 3), dtype=np.uint16)
    image = read_image(Path(__file__).parent / "data" / "rgb12bit.jp2")
    assert image.bit_depth == 16 and image.pixels.shape == (12, 16, 3)
    assert np.array_equal(np.round(image.pixels * 4095).astype(np.uint16), expected)


def test_sixteen_bit_min_is_white_tiff_is_not_read_as_a_negative(tmp_path):
    samples = random_uint((6, 7), 16)
    tifffile.imwrite(tmp_path / "mw.tif", samples, photometric="miniswhite")  # 0 is white
    image = imageio.read_image(tmp_path / "mw.tif")
    np.testing.assert_array_equal(imageio.to_uint(image.pixels, 16)[:, :, 0], 65535 - samples)


def test_sixteen_bit_grey_png_colour_key_becomes_alpha(tmp_path):
    samples = random_uint((5, 6), 16)
    samples[0, 0] = key = 12345
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", 6, 5, 16, 0, 0, 0, 0)),
              (b"tRNS", struct.pack(">H", key)), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    data = imageio._PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)
    image = imageio.read_image_bytes(data, "keyed.png")
    assert image.bit_depth == 16 and image.alpha is not None
    np.testing.assert_array_equal(image.alpha, (samples != key).astype(np.float32))


@pytest.mark.parametrize("samples, options, message", [
    (np.zeros((4, 5, 3), np.float32), {"photometric": "rgb"}, "32-bit floating-point samples are not read"),
    (np.full((4, 5), -3, np.int16), {}, "signed 16-bit samples with negative values are not read"),
    (np.zeros((4, 5), np.uint32), {}, "unsigned 32-bit integer samples are not read"),
    (np.zeros((4, 5, 4), np.uint16), {"photometric": "separated"}, "16-bit CMYK is not read"),
    (np.zeros((4, 5, 2), np.uint16), {"photometric": "minisblack", "extrasamples": ["unassalpha"]},
     "16-bit grey\\+alpha TIFF is not read"),
    (np.full((4, 5), -3, np.int8), {}, "signed 8-bit integer samples are not read"),
    (np.full((4, 5, 3), 3, np.int16), {"photometric": "rgb"}, "signed 16-bit integer samples are not read"),
])
def test_tiff_layouts_not_read_are_named_not_called_corrupt(tmp_path, samples, options, message):
    tifffile.imwrite(tmp_path / "odd.tif", samples, **options)
    with pytest.raises(ImageReadError, match=f"odd.tif: {message}"):
        imageio.read_pages(tmp_path / "odd.tif")


def test_a_truncated_tiff_is_reported_once_without_library_log_lines(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "whole.tif", random_uint((8, 8), 16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:8])
    with pytest.raises(ImageReadError, match="cut.tif: truncated or corrupt TIFF image"):
        imageio.read_pages(tmp_path / "cut.tif")
    assert not [record for record in caplog.records if record.name.startswith("tifffile")]


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_gamma_is_carried_to_png_and_its_loss_noted_elsewhere(bit_depth):
    pixels = random_uint((6, 5, 3), bit_depth).astype(np.float32) / (2**bit_depth - 1)
    linear = LoadedImage(pixels, bit_depth=bit_depth, gamma=1.0)
    again = imageio.read_image_bytes(imageio.encode_pages([linear], "png"), "linear.png")
    assert again.gamma == 1.0 and again.bit_depth == bit_depth
    as_jpeg = imageio.encode_pages([again], "jpg")
    assert "gamma (PNG gAMA)" in imageio.metadata_not_kept(again, as_jpeg)
    srgb_like = dataclasses.replace(again, gamma=0.45455)  # what viewers assume anyway: no note
    assert "gamma (PNG gAMA)" not in imageio.metadata_not_kept(srgb_like, as_jpeg)
