"""LoadedImage and the sample conversions (formnet_cli.io.image)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from formnet_cli import io as imageio
from formnet_cli.io import LoadedImage, read_image, to_uint, write_image
from formnet_cli.io.metadata import upright_exif
from image_samples import exif_with_orientation


def test_to_uint_rounds_and_clips():
    pixels = np.array([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 2.0, np.nan], np.float32)
    assert to_uint(pixels, 8).tolist() == [0, 0, 0, 1, 255, 255, 0]
    assert to_uint(np.float32([0.5]), 16).tolist() == [32768]  # 32767.5 rounds half to even
    assert to_uint(np.float32([257 / 65535]), 16).dtype == np.uint16
    assert to_uint(np.array([np.inf, -np.inf, np.nan]), 16).tolist() == [65535, 0, 0]  # float64 too


def test_loaded_image_validates_shapes():
    assert LoadedImage(np.zeros((2, 3))).pixels.shape == (2, 3, 1)
    with pytest.raises(ValueError):
        LoadedImage(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError):
        LoadedImage(np.zeros((2, 3, 3)), alpha=np.zeros((3, 2)))


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
    again.load(upright_exif(plain.tobytes()))
    assert 0x8769 not in again


def test_samples_are_kept_as_decoded_and_read_as_floats_on_demand():
    from formnet_cli.io.image import LoadedImage, to_uint

    samples = np.array([[0, 128, 255]], np.uint8)[:, :, None]
    image = LoadedImage(samples, alpha=np.array([[1.0, 0.5, 0.0]], np.float32))
    assert image.pixels.dtype == np.uint8 and image.pixels is samples
    assert image.alpha.dtype == np.uint8 and image.alpha.tolist() == [[255, 128, 0]]
    assert image.float_pixels.dtype == np.float32 and image.float_pixels[0, 1, 0] == np.float32(128 / 255)
    assert image.transparent and not LoadedImage(samples).transparent
    assert not LoadedImage(samples, alpha=np.full((1, 3), 255, np.uint8)).transparent
    assert to_uint(samples, 8) is samples
    assert to_uint(samples, 16).tolist() == [[[0], [32896], [65535]]]
    assert to_uint(np.array([65535, 257, 0], np.uint16), 8).tolist() == [255, 1, 0]
