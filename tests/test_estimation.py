"""Blind level estimation: noise sigma (weak-texture PCA)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli.imaging.degradations import add_gaussian_noise
from formnet_cli.imaging.estimation import (
    NoiseLevelFunction,
    estimate_noise_level_function,
    estimate_noise_sigma,
)


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


def _camera_noisy(a: float = 0.006, b: float = 2 / 255, channels: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A brightness ramp under the textured image, with noise of variance ``a x + b^2``:
    ``(noisy, true sigma on 0-255)``."""
    clean = _textured_image(200, 240, channels)
    ramp = np.linspace(-0.3, 0.3, clean.shape[1])[None, :]
    clean = np.clip(clean + (ramp if clean.ndim == 2 else ramp[..., None]), 0.02, 0.98)
    std = np.sqrt(a * clean + b * b)
    noisy = clean + std * np.random.default_rng(seed).normal(size=clean.shape)
    return noisy, std * 255


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("sigma", [2.0, 5.0, 25.0, 50.0])
def test_white_noise_has_a_flat_noise_level_function(channels, sigma) -> None:
    noisy = add_gaussian_noise(_textured_image(channels=channels), sigma)
    function = estimate_noise_level_function(noisy)
    assert not function.varies
    assert function.sigma == estimate_noise_sigma(noisy)  # the same white-noise estimate


@pytest.mark.parametrize("channels", [None, 3])
def test_noise_level_function_follows_brightness(channels) -> None:
    noisy, true_sigma = _camera_noisy(channels=channels)
    function = estimate_noise_level_function(noisy)
    assert function.varies
    for channel in range(1 if channels is None else channels):
        dark, bright = function.channel_sigma(channel, np.array([0.25, 0.75]))
        assert dark == pytest.approx(255 * np.sqrt(0.006 * 0.25 + (2 / 255) ** 2), rel=0.15)
        assert bright == pytest.approx(255 * np.sqrt(0.006 * 0.75 + (2 / 255) ** 2), rel=0.15)
    sigma_map = function.sigma_map(noisy)
    assert sigma_map.shape == noisy.shape[:2] and sigma_map.dtype == np.float32
    truth = true_sigma if true_sigma.ndim == 2 else true_sigma.mean(axis=2)
    assert np.abs(sigma_map - truth).mean() < 0.15 * truth.mean()
    assert function.sigma_map(noisy[:50, :70]).shape == (50, 70)  # any part of the image
    with pytest.raises(ValueError, match="channel"):
        function.sigma_map(np.zeros((20, 20, 2)))


def test_noise_level_function_ignores_clipped_shadows() -> None:
    # Strong white noise on a dark region, clipped at 0: the noise there reads lower, which
    # is the clipping, not a trend of the noise with brightness.
    image = _textured_image()
    image[:, :100] = 0.06
    noisy = np.round(np.clip(add_gaussian_noise(image, 75), 0, 1) * 255) / 255
    assert not estimate_noise_level_function(noisy).varies


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_photo_texture_under_faint_white_noise_is_not_read_as_varying_noise(sigma) -> None:
    # At low noise, detailed regions of a photo leave texture in their brightness bins'
    # weak-texture patches (they would read noisier): such bins are not measured.
    photo = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "astronaut.png").convert("RGB"))
    noisy = add_gaussian_noise(photo[:256, :256] / 255.0, sigma)
    function = estimate_noise_level_function(noisy)
    assert not function.varies
    assert function.sigma == pytest.approx(sigma, abs=1.0)  # the photo has a little noise of its own


def test_noise_that_varies_by_less_than_two_levels_counts_as_white() -> None:
    # sigma about 0.9 in the shadows and 1.6 in the highlights: a map would change little
    noisy, _true_sigma = _camera_noisy(a=0.00005, b=0.0)
    function = estimate_noise_level_function(noisy)
    dark, bright = function.channel_sigma(0, np.array([0.25, 0.75]))
    assert bright > 1.25 * dark
    assert not function.varies


def test_noisier_shadows_are_read_as_varying_noise() -> None:
    # A saved photo: the sRGB curve amplifies the shadows' noise, highlights are quieter.
    clean = np.clip(_textured_image(200, 240) + np.linspace(-0.3, 0.3, 240)[None, :], 0.02, 0.98)
    std = (14.0 - 10.0 * clean) / 255  # 13.8 in black, 4.2 in white (0-255 scale)
    noisy = clean + std * np.random.default_rng(0).normal(size=clean.shape)
    function = estimate_noise_level_function(noisy)
    assert function.varies
    dark, bright = function.channel_sigma(0, [0.25, 0.55])
    assert dark == pytest.approx(11.5, rel=0.15) and bright == pytest.approx(8.5, rel=0.15)


def test_two_measured_brightness_levels_are_too_few_to_call_the_noise_varying() -> None:
    def function(levels: list[float], sigmas: list[float]) -> NoiseLevelFunction:
        variances = np.square(sigmas)
        fit = np.polyfit(levels, variances, min(2, len(levels) - 1))
        return NoiseLevelFunction((float(np.mean(sigmas)),), (np.array(levels),),
                                  (np.array(sigmas),), (fit,))

    assert not function([0.3, 0.7], [5.0, 10.0]).varies
    assert function([0.3, 0.5, 0.7], [5.0, 7.5, 10.0]).varies
    assert not function([0.3, 0.5, 0.7], [5.0, 5.5, 6.0]).varies  # within 1.25x


def test_a_flat_image_gets_a_constant_noise_level_without_warnings() -> None:
    for sigma in (10.0, 0.01):  # the brightness bins of a flat image all sit at about 0.5
        noisy = add_gaussian_noise(np.full((120, 160), 0.5), sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. numpy's RankWarning from a degenerate fit
            function = estimate_noise_level_function(noisy)
        assert not function.varies and function.sigma == pytest.approx(sigma, abs=0.5)
        assert function.variance_fits[0].size == 1  # a constant: no trend over no brightness
