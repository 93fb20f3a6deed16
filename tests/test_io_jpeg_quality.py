"""A JPEG's quality from its quantisation tables (formnet_cli.io.jpeg_quality)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli.io import estimate_jpeg_quality


def _jpeg(quality: int, mode: str) -> Image.Image:
    """A 64 x 64 photo-like JPEG (a gradient with noise), opened from memory; the tables Pillow
    writes depend on the quality only."""
    ramp = np.linspace(40, 200, 64)[None, :] + np.linspace(0, 30, 64)[:, None]
    if mode == "RGB":
        ramp = np.stack([ramp, ramp[::-1], ramp.T], axis=2)
    noisy = ramp + np.random.default_rng(quality).normal(0, 12, ramp.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("quality", [10, 20, 30, 40, 75, 95])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_quality_is_exact_for_pillow_files(quality: int, mode: str) -> None:
    assert estimate_jpeg_quality(_jpeg(quality, mode)) == quality


def test_jpeg_quality_every_level_and_from_path(tmp_path: Path) -> None:
    assert [estimate_jpeg_quality(_jpeg(q, "L")) for q in range(1, 101)] == list(range(1, 101))
    path = tmp_path / "image.jpg"
    _jpeg(35, "RGB").save(path, quality=35)
    assert estimate_jpeg_quality(path) == 35
    png = tmp_path / "image.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert estimate_jpeg_quality(png) is None
    assert estimate_jpeg_quality(Image.new("L", (8, 8))) is None
    assert estimate_jpeg_quality(path.read_bytes()) == 35  # the file's bytes (standard input)


@pytest.mark.filterwarnings("error")  # not even Pillow's decompression-bomb warning
def test_the_quality_of_a_photo_beyond_pillows_own_limit_is_read(tmp_path, monkeypatch):
    path = tmp_path / "large.jpg"
    _jpeg(60, "RGB").save(path, quality=60)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is then a "bomb" to Pillow,
    assert estimate_jpeg_quality(path) == 60  # as a 200 MP photo is to its default limit
    assert estimate_jpeg_quality(path.read_bytes()) == 60
    assert Image.MAX_IMAGE_PIXELS == 100
