"""Blind level estimation: noise sigma (weak-texture PCA) and JPEG quality from tables."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli.degradations import add_gaussian_noise
from formnet_cli.estimation import estimate_jpeg_quality, estimate_noise_sigma


def _textured_image(height: int = 160, width: int = 200, channels: int | None = None) -> np.ndarray:
    """Smooth shading, hard edges and a fine stripe texture, in [0.1, 0.9]."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    image = 0.5 + 0.2 * np.sin(rows / 17.0) * np.cos(cols / 23.0)
    image += 0.15 * ((rows // 40 + cols // 40) % 2) - 0.075
    image[:, width // 2 :] += 0.08 * np.sin(cols[:, width // 2 :] * 1.3)
    image = np.clip(image, 0.1, 0.9)
    if channels is None:
        return image
    return np.stack([np.roll(image, 11 * c, axis=1) for c in range(channels)], axis=2)


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 50.0])
def test_noise_sigma_on_textured_gray(sigma: float) -> None:
    estimate = estimate_noise_sigma(add_gaussian_noise(_textured_image(), sigma))
    assert estimate == pytest.approx(sigma, abs=1.0)


@pytest.mark.parametrize("sigma", [10.0, 30.0])
def test_noise_sigma_on_color(sigma: float) -> None:
    estimate = estimate_noise_sigma(add_gaussian_noise(_textured_image(channels=3), sigma, seed=3))
    assert estimate == pytest.approx(sigma, abs=1.0)


def test_noise_sigma_on_clean_and_clipped_uint8_images() -> None:
    clean = _textured_image()
    assert estimate_noise_sigma(clean) < 1.0
    # A real photo: saturated (noise-free) sky and 8-bit rounding; the clipped patches are left out.
    saturated = clean.copy()
    saturated[:60] = 1.0
    noisy = add_gaussian_noise(saturated, 20)
    as_uint8 = np.round(np.clip(noisy, 0, 1) * 255) / 255
    assert estimate_noise_sigma(as_uint8) == pytest.approx(20.0, abs=1.5)
    with pytest.raises(ValueError):
        estimate_noise_sigma(np.zeros((5, 5)))


def _jpeg(quality: int, mode: str) -> Image.Image:
    array = np.round(_textured_image(64, 64, None if mode == "L" else 3) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
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


@pytest.mark.parametrize("layout", ["gray as RGB", "luminance noise"])
def test_noise_sigma_when_the_noise_is_the_same_in_every_channel(layout: str) -> None:
    """Noise correlated across channels must not read as none (the channels are measured apart)."""
    rng = np.random.default_rng(4)
    if layout == "gray as RGB":
        clean = np.repeat(_textured_image()[:, :, None], 3, axis=2)
    else:
        clean = _textured_image(channels=3)
    noisy = clean + rng.normal(0, 20 / 255, clean.shape[:2])[:, :, None]
    assert estimate_noise_sigma(noisy) == pytest.approx(20.0, abs=1.0)


def test_noise_sigma_refuses_images_too_small_to_measure() -> None:
    with pytest.raises(ValueError, match="too small.*15 x 15"):
        estimate_noise_sigma(np.zeros((15, 15)))
    estimate_noise_sigma(np.random.default_rng(0).random((16, 16)))
