"""Protocol degradations: seeded noise, Pillow JPEG, MATLAB bicubic imresize, YCbCr."""

from __future__ import annotations

import math

import numpy as np
import pytest

from formnet_cli.imaging.degradations import (
    add_camera_noise,
    add_gaussian_noise,
    imresize,
    jpeg_compress,
    modcrop,
    rgb_to_y,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from formnet_cli.imaging.metrics import psnr


def _smooth_image(height: int = 48, width: int = 40, channels: int | None = None) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.3 * np.sin(rows / 5.0) * np.cos(cols / 7.0) + 0.1 * ((rows // 8 + cols // 8) % 2)
    if channels is None:
        return base
    return np.stack([np.roll(base, c * 3, axis=1) for c in range(channels)], axis=2)


def _keys_cubic(t: float) -> float:
    """MATLAB's cubic kernel (a = -0.5), written out independently for the tests."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def _reference_resize_1d(signal: np.ndarray, out_length: int) -> np.ndarray:
    """Direct 1-D MATLAB bicubic: 0-based centre u = (i + 0.5) / s - 0.5, symmetric padding."""
    scale = out_length / signal.size
    stretch = min(scale, 1.0)  # antialiasing stretches the kernel when shrinking
    padded = np.pad(signal, 20, mode="symmetric")
    out = np.empty(out_length)
    for i in range(out_length):
        centre = (i + 0.5) / scale - 0.5
        taps = range(math.floor(centre - 2 / stretch) - 1, math.ceil(centre + 2 / stretch) + 2)
        weights = np.array([stretch * _keys_cubic(stretch * (centre - j)) for j in taps])
        values = np.array([padded[j + 20] for j in taps])
        out[i] = weights @ values / weights.sum()
    return out


def test_noise_matches_hand_written_protocol() -> None:
    clean = _smooth_image(channels=3)
    noisy = add_gaussian_noise(clean, 25)
    expected = (clean + np.random.RandomState(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    assert noisy.dtype == np.float32
    np.testing.assert_array_equal(noisy, expected)
    assert noisy.min() < 0 or noisy.max() > 1  # not clipped
    assert abs(float(np.std(noisy - clean)) * 255 - 25) < 1.0
    assert not np.array_equal(add_gaussian_noise(clean, 25, seed=1), noisy)


def test_jpeg_is_deterministic_and_degrades_with_quality() -> None:
    clean = np.round(_smooth_image(96, 96) * 255).astype(np.uint8)
    low, high = jpeg_compress(clean, 10), jpeg_compress(clean, 90)
    assert low.dtype == np.uint8 and low.shape == clean.shape
    np.testing.assert_array_equal(low, jpeg_compress(clean, 10))
    assert psnr(clean, low) < psnr(clean, high) - 5
    color = np.round(_smooth_image(64, 64, 3) * 255).astype(np.uint8)
    assert jpeg_compress(color, 30).shape == (64, 64, 3)
    assert jpeg_compress(clean[..., None], 30).shape == (96, 96, 1)
    with pytest.raises(ValueError):
        jpeg_compress(clean, 0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_shapes_and_constants(scale: int) -> None:
    image = modcrop(_smooth_image(50, 46, 3), scale)
    assert image.shape[:2] == (50 - 50 % scale, 46 - 46 % scale)
    small = imresize(image, 1 / scale)
    assert small.shape == (image.shape[0] // scale, image.shape[1] // scale, 3)
    assert imresize(small, scale).shape == image.shape
    assert imresize(image[..., 0], scale).shape == (image.shape[0] * scale, image.shape[1] * scale)
    constant = np.full((24, 36), 0.37)
    np.testing.assert_allclose(imresize(constant, 1 / scale), 0.37, atol=1e-12)
    np.testing.assert_allclose(imresize(constant, scale), 0.37, atol=1e-12)


def test_imresize_matches_hand_computed_kernel_1d() -> None:
    signal = np.array([0.1, 0.9, 0.3, 0.6, 0.2, 0.8, 0.4, 0.0, 0.7])
    for out_length in (18, 27, 3, 4, 5, 13):  # x2, x3, /3, and non-integer factors
        got = imresize(signal[None, :], output_shape=(1, out_length))[0]
        np.testing.assert_allclose(got, _reference_resize_1d(signal, out_length), atol=1e-12)
    # One value by hand: x2 upscale, output 0 sits at u = -0.25 between pixel 0 and its mirror.
    w = [_keys_cubic(t) for t in (1.75, 0.75, 0.25, 1.25)]  # taps -2, -1, 0, 1 -> pixels 1, 0, 0, 1
    expected = (w[0] * 0.9 + w[1] * 0.1 + w[2] * 0.1 + w[3] * 0.9) / sum(w)
    assert imresize(signal[None, :], output_shape=(1, 18))[0, 0] == pytest.approx(expected, abs=1e-12)


def test_imresize_is_separable_and_keeps_ramps() -> None:
    column, row = np.linspace(0, 1, 12), np.cos(np.arange(10) / 3.0)
    outer = imresize(np.outer(column, row), 3)
    expected = np.outer(_reference_resize_1d(column, 36), _reference_resize_1d(row, 30))
    np.testing.assert_allclose(outer, expected, atol=1e-12)
    ramp = np.tile(np.arange(20, dtype=np.float64), (4, 1))
    up = imresize(ramp, 4)[0]
    centres = (np.arange(80) + 0.5) / 4 - 0.5
    np.testing.assert_allclose(up[8:-8], centres[8:-8], atol=1e-12)  # linear exact away from borders
    assert imresize(ramp.astype(np.float32), 2).dtype == np.float32


def test_ycbcr_known_values_and_round_trip() -> None:
    white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
    np.testing.assert_allclose(rgb_to_ycbcr(white)[0, 0] * 255, [235, 128, 128], atol=1e-3)
    np.testing.assert_allclose(rgb_to_ycbcr(black)[0, 0] * 255, [16, 128, 128], atol=1e-12)
    image = _smooth_image(channels=3)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(image), rgb_to_ycbcr(image)[..., 0], atol=1e-12)


def test_modcrop() -> None:
    assert modcrop(np.zeros((10, 11, 3)), 4).shape == (8, 8, 3)
    assert modcrop(np.zeros((9, 9)), 3).shape == (9, 9)


def test_camera_noise_grows_with_brightness_and_is_seeded():
    clean = np.repeat(np.linspace(0, 255, 64).astype(np.uint8)[None, :], 4000, axis=0)
    noisy, sigma = add_camera_noise(clean, 0.01, 2 / 255)
    assert noisy.dtype == np.float32 and noisy.shape == (4000, 64, 1) and sigma.shape == (4000, 64)
    measured = (noisy[:, :, 0] - clean / 255.0).std(axis=0)
    expected = np.sqrt(0.01 * clean[0] / 255.0 + (2 / 255) ** 2)
    np.testing.assert_allclose(measured, expected, rtol=0.06)
    np.testing.assert_allclose(sigma[0], expected)
    again, _ = add_camera_noise(clean, 0.01, 2 / 255)
    np.testing.assert_array_equal(noisy, again)


def test_camera_noise_in_srgb_is_an_8_bit_photo_with_noisier_shadows():
    clean = np.repeat(np.linspace(20, 235, 64).astype(np.uint8)[None, :, None], 4000, axis=0)
    noisy, sigma = add_camera_noise(np.repeat(clean, 3, axis=2), 0.004, 1 / 255, "srgb")
    assert noisy.shape == (4000, 64, 3) and noisy.min() >= 0 and noisy.max() <= 1
    np.testing.assert_allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)
    measured = (noisy[:, :, 0] - clean[:, :, 0] / 255.0).std(axis=0)
    assert measured[2] > measured[-3]  # shadows noisier than highlights
    np.testing.assert_allclose(measured[8:-8], sigma[0, 8:-8], rtol=0.15)
    with pytest.raises(ValueError, match="encoding"):
        add_camera_noise(clean, 0.004, 0.0, "log")
    with pytest.raises(ValueError, match="uint8"):
        add_camera_noise(clean / 255.0, 0.004, 0.0)


def test_integer_images_are_refused_where_the_scale_is_0_to_1():
    from formnet_cli.imaging.estimation import estimate_noise_sigma

    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(TypeError, match=r"expects a float image in \[0, 1\], got uint8 \(divide by 255\)"):
        add_gaussian_noise(image, 25)
    with pytest.raises(TypeError, match="divide by 255"):
        estimate_noise_sigma(image)
