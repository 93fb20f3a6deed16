"""PSNR and SSIM: known values and agreement with scikit-image (a test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from formnet_cli.imaging.metrics import psnr, sr_psnr, sr_ssim, ssim, y_channel


def _pair(shape: tuple[int, ...], structured: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    if structured:
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
        base = 128 + 80 * np.sin(rows / 6.0) * np.cos(cols / 9.0) + 30 * ((rows // 10 + cols // 10) % 2)
        reference = base if len(shape) == 2 else np.stack([np.roll(base, 4 * c, axis=0) for c in range(shape[2])], 2)
        test = reference + rng.normal(0, 12, shape)
    else:
        reference = rng.integers(0, 256, shape).astype(np.float64)
        test = reference + rng.normal(0, 30, shape)
    return np.clip(reference, 0, 255).astype(np.uint8), np.clip(np.round(test), 0, 255).astype(np.uint8)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=2 if a.ndim == 3 else None,
    )  # fmt: skip


@pytest.mark.parametrize("shape", [(40, 37), (33, 52, 3)])
@pytest.mark.parametrize("structured", [False, True])
def test_ssim_matches_skimage(shape: tuple[int, ...], structured: bool) -> None:
    reference, test = _pair(shape, structured)
    assert ssim(reference, test) == pytest.approx(_skimage_ssim(reference, test), abs=1e-6)
    assert ssim(reference, test, border=3) == pytest.approx(
        _skimage_ssim(reference[3:-3, 3:-3], test[3:-3, 3:-3]), abs=1e-6
    )


def test_ssim_identical_is_one_and_rejects_tiny_images() -> None:
    reference, _ = _pair((30, 30, 3), True)
    assert ssim(reference, reference) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        ssim(np.zeros((10, 10)), np.zeros((10, 10)))


def test_psnr_known_values() -> None:
    reference = np.full((16, 16, 3), 100, dtype=np.uint8)
    assert psnr(reference, reference + 5) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)
    assert psnr(reference, reference) == math.inf
    shifted = reference.astype(np.float64)
    shifted[0, :] += 10  # only the first row differs: cropped away with border=1
    assert psnr(reference, shifted, border=1) == math.inf
    assert psnr(reference / 255.0, (reference + 5) / 255.0, data_range=1.0) == pytest.approx(34.1514, abs=1e-4)
    with pytest.raises(ValueError):
        psnr(reference, reference[:8])


def test_y_channel_and_sr_helpers() -> None:
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    np.testing.assert_array_equal(y_channel(white), 235.0)
    np.testing.assert_array_equal(y_channel(black), 16.0)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(y_channel(gray[..., None]), gray)
    hr, sr = _pair((40, 40, 3), True)
    expected = psnr(y_channel(hr)[4:-4, 4:-4], y_channel(sr)[4:-4, 4:-4])
    assert sr_psnr(hr, sr, 4) == pytest.approx(expected, abs=1e-12)
    expected_ssim = _skimage_ssim(y_channel(hr)[2:-2, 2:-2], y_channel(sr)[2:-2, 2:-2])
    assert sr_ssim(hr, sr, 2) == pytest.approx(expected_ssim, abs=1e-6)


def test_unit_range_images_without_their_data_range_are_refused():
    reference = np.random.default_rng(0).random((16, 16))
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match="pass data_range=1.0"):
            metric(reference, reference * 0.9)
        assert metric(reference, reference * 0.9, data_range=1.0) > 0
        assert metric(reference, reference * 0.9, data_range=255) > 0  # a dark image on the uint8 scale
