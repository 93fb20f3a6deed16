"""Extensions, format names and what this installation writes (formnet_cli.io.formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli import io as imageio
from formnet_cli.errors import ImageWriteError
from formnet_cli.io import IMAGE_EXTENSIONS, LoadedImage, is_image_path, read_image, write_image


def test_is_image_path_and_extensions():
    assert is_image_path("a/B.PNG") and is_image_path("x.JpEg") and is_image_path(Path("y.tiff"))
    assert not is_image_path("notes.txt") and not is_image_path("png")
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".avif",
                                ".heic", ".heif", ".jp2"}


def test_output_format_names():
    assert imageio.output_format("x.JPG") == "JPEG"
    assert imageio.output_format("x.png", ".tif") == "TIFF"
    assert imageio.output_format("x", "WebP") == "WEBP"


def test_explicit_format_overrides_the_extension(tmp_path):
    target = tmp_path / "no_extension"
    write_image(target, LoadedImage(np.zeros((2, 2, 3), np.float32)), format="jpg")
    with Image.open(target) as written:
        assert written.format == "JPEG"
    assert read_image(target).source_format == "JPEG"


def test_a_format_this_installation_cannot_write_is_refused_before_any_work(monkeypatch):
    monkeypatch.delitem(Image.SAVE, "AVIF")
    with pytest.raises(ImageWriteError, match="cannot write AVIF files"):
        imageio.output_format("out.avif")


@pytest.mark.parametrize("source_format, extension", [
    ("JPEG", ".jpg"), ("MPO", ".jpg"), ("TIFF", ".tif"), ("HEIF", ".heic"), ("JPEG2000", ".jp2"),
    ("GIF", ".png"), (None, ".png")])
def test_a_streamed_image_goes_back_in_its_own_format(source_format, extension):
    assert imageio.extension_of(source_format) == extension
