"""Metadata carried from the file read to the file written, or noted as lost
(formnet_cli.io.metadata)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from formnet_cli import io as imageio
from formnet_cli.io import LoadedImage, read_image, read_image_bytes, write_image
from image_samples import SRGB_ICC, TEXT, XMP, exif_with_orientation, random_uint


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_exif_orientation_is_applied_and_reset_to_1(tmp_path, extension):
    values = np.zeros((4, 10, 3), np.uint8)
    values[0, 0] = 255  # marks the top-left corner
    source = tmp_path / f"rotated{extension}"
    Image.fromarray(values).save(source, exif=exif_with_orientation(6))

    image = read_image(source)
    assert image.float_pixels.shape[:2] == (10, 4)  # orientation 6: rotate 90 degrees clockwise
    assert image.float_pixels[0, -1].mean() > 0.8  # top-left went to top-right

    target = tmp_path / f"out{extension}"
    write_image(target, image)
    with Image.open(target) as written:
        exif = written.getexif()
        assert exif.get(0x0112, 1) == 1
        assert exif.get(0x010F) == "TestCam"  # the rest of EXIF is carried
        assert written.size == (4, 10)


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
    assert again.bit_depth == 16 and np.array_equal(again.float_pixels, image.float_pixels)


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
        assert np.array_equal(again.float_pixels, image.float_pixels)


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
    assert np.array_equal(again.float_pixels, image.float_pixels) and np.array_equal(again.float_alpha, image.float_alpha)


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
    assert image.float_pixels.shape[:2] == (8, 4) and image.dpi == (300.0, 600.0)


def test_rotation_turns_the_xmp_orientation_and_the_tiff_resolution_upright(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    Image.new("RGB", (8, 4)).save(tmp_path / "r.jpg", exif=exif_with_orientation(6), xmp=xmp)
    assert read_image(tmp_path / "r.jpg").xmp == xmp.replace(b'"6"', b'"1"')
    Image.new("RGB", (8, 4)).save(tmp_path / "r.tif", tiffinfo={274: 6}, dpi=(300, 100))
    image = read_image(tmp_path / "r.tif")
    assert image.float_pixels.shape[:2] == (8, 4) and image.dpi == (100.0, 300.0)
    assert imageio.read_pages(tmp_path / "r.tif")[0].dpi == (100.0, 300.0)


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


def test_16bit_grey_alpha_written_as_rgba_drops_its_grey_profile(tmp_path):
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()[:16] + b"GRAY" + (
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()[20:])
    image = LoadedImage(np.full((3, 3, 1), 0.5, np.float32), np.ones((3, 3), np.float32),
                        bit_depth=16, icc_profile=grey_icc)
    for name in ("out.tif", "out.png"):
        write_image(tmp_path / name, image)
        assert read_image(tmp_path / name).icc_profile is None


def test_grey_image_drops_an_rgb_profile(tmp_path):
    image = LoadedImage(np.full((4, 4, 1), 0.25, np.float32), icc_profile=SRGB_ICC)
    write_image(tmp_path / "out.png", image)
    with Image.open(tmp_path / "out.png") as written:
        assert "icc_profile" not in written.info


def test_heic_resolution_follows_its_rotation(tmp_path):
    exif = exif_with_orientation(6)
    exif[282], exif[283], exif[296] = 300.0, 150.0, 2
    Image.new("RGB", (8, 4)).save(tmp_path / "phone.heic", exif=exif.tobytes(), quality=-1)
    image = read_image(tmp_path / "phone.heic")
    assert image.float_pixels.shape[:2] == (8, 4) and image.dpi == (150.0, 300.0)


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
