"""Writing every format (formnet_cli.io.encode): exact round trips per depth, alpha, quality,
pages, JPEG 2000, bad targets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from formnet_cli import io as imageio
from formnet_cli.errors import ImageWriteError, InvalidOptionError
from formnet_cli.io import LoadedImage, read_image, to_uint, write_image
from image_samples import RNG, SRGB_ICC, TEXT, XMP, exif_with_orientation, random_uint


def save_16bit_colour(path: Path, rgb: np.ndarray) -> None:
    """Write 16-bit RGB(A) with OpenCV, the reference encoder for these files."""
    bgr = rgb[:, :, [2, 1, 0, *range(3, rgb.shape[2])]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".webp"])
def test_lossless_8bit_round_trip_is_exact(tmp_path, channels, extension):
    values = random_uint((9, 7, channels), 8)
    source = tmp_path / f"in{extension}"
    Image.fromarray(values[:, :, 0] if channels == 1 else values).save(source, lossless=True)

    image = read_image(source)
    assert image.pixels.dtype == np.uint8 and image.bit_depth == 8  # the samples as decoded
    expected_channels = 3 if extension == ".webp" else channels  # WebP has no grey
    assert image.float_pixels.shape == (9, 7, expected_channels)
    assert np.array_equal(image.pixels[:, :, :channels], values)
    assert np.array_equal(to_uint(image.float_pixels, 8)[:, :, :channels], values)

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    again = read_image(target)
    assert np.array_equal(again.float_pixels, image.float_pixels)


@pytest.mark.parametrize("extension", [".png", ".tiff"])
def test_16bit_grey_round_trip_keeps_values_above_255(tmp_path, extension):
    values = random_uint((8, 6), 16)
    values[0, 0] = 65535
    values[0, 1] = 257  # would collapse to 1 at 8 bits
    source = tmp_path / f"grey16{extension}"
    Image.fromarray(values).save(source)

    image = read_image(source)
    assert image.bit_depth == 16 and image.float_pixels.shape == (8, 6, 1)
    assert np.array_equal(to_uint(image.float_pixels, 16)[:, :, 0], values)

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
    assert image.bit_depth == 16 and image.float_pixels.shape == (7, 5, 3) and image.float_alpha is None
    assert np.array_equal(to_uint(image.float_pixels, 16), rgb)  # channel order is RGB

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
    assert image.bit_depth == 16 and image.float_alpha is not None
    assert np.array_equal(to_uint(image.float_alpha, 16), rgba[:, :, 3])

    target = tmp_path / "out.png"
    write_image(target, image)
    assert np.array_equal(read_image(target).float_alpha, image.float_alpha)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_returned_separately_and_written_back(tmp_path, mode):
    channels = len(mode)
    values = random_uint((6, 5, channels), 8)
    source = tmp_path / "alpha.png"
    Image.fromarray(values, mode).save(source)

    image = read_image(source)
    assert image.float_pixels.shape == (6, 5, channels - 1)
    assert np.array_equal(to_uint(image.float_alpha, 8), values[:, :, -1])

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
    assert np.abs(again.float_pixels - np.repeat(pixels, 3 // channels, 2)).max() < 4 / 255
    assert np.array_equal(again.float_alpha, alpha) and again.xmp == XMP
    exif = Image.Exif()
    exif.load(again.exif)
    assert exif[0x010F] == "TestCam"
    write_image(tmp_path / f"low{extension}", image, jpeg_quality=10)
    assert (tmp_path / f"low{extension}").stat().st_size < (tmp_path / f"out{extension}").stat().st_size


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
        assert after.bit_depth == before.bit_depth and np.array_equal(after.float_pixels, before.float_pixels)
        assert (after.float_alpha is None) == (before.float_alpha is None)
        assert before.float_alpha is None or np.array_equal(after.float_alpha, before.float_alpha)
        assert (after.icc_profile, after.text, after.xmp) == (before.icc_profile, before.text, before.xmp)
        assert after.dpi == (None if before.dpi is None else pytest.approx(before.dpi))


def test_encoded_pages_are_the_file_write_pages_writes(tmp_path):
    pages = [LoadedImage(random_uint((4, 6, 1), 8).astype(np.float32) / 255, dpi=(300.0, 300.0)),
             LoadedImage(random_uint((3, 5, 3), 16).astype(np.float32) / 65535, bit_depth=16)]
    encoded = imageio.encode_pages(pages, "tif")
    again = imageio.read_pages_bytes(encoded, "stream")
    assert [page.bit_depth for page in again] == [8, 16]
    assert all(np.array_equal(a.float_pixels, b.float_pixels) for a, b in zip(pages, again, strict=True))
    one = imageio.encode_pages(pages[:1], ".jpg", jpeg_quality=80)
    assert one.startswith(b"\xff\xd8") and imageio.read_image_bytes(one, "stream").dpi == (300.0, 300.0)
    with pytest.raises(ImageWriteError, match="standard output: 2 pages need a TIFF output"):
        imageio.encode_pages(pages, "png")


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
    assert np.array_equal(again.float_pixels, pixels)
    assert (again.float_alpha is None) if alpha is None else np.array_equal(again.float_alpha, alpha)


def test_a_16bit_colour_jpeg2000_too_small_for_opencv_is_one_line(tmp_path):
    image = LoadedImage(random_uint((20, 30, 3), 16).astype(np.float32) / 65535, bit_depth=16)
    with pytest.raises(ImageWriteError, match="needs 32 px a side.*write .tif or .png"):
        write_image(tmp_path / "tiny.jp2", image)
    assert list(tmp_path.iterdir()) == []


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
