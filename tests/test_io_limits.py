"""The pixel limit (formnet_cli.io.limits): decompression bombs, the default, threads."""

from __future__ import annotations

import pytest
from PIL import Image

from formnet_cli import io as imageio
from formnet_cli.errors import ImageReadError, ImageTooLargeError, InvalidOptionError
from formnet_cli.io import read_image


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


def test_threads_reading_at_once_leave_pillow_as_it_was(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    limit = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: read_image(tmp_path / "x.png"), range(40)))
    assert Image.MAX_IMAGE_PIXELS == limit
