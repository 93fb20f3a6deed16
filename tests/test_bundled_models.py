"""The bundled models: outputs match the committed references within one grey level, and each
restores its own degradation clearly better than doing nothing (or than bicubic for SR)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli import restore
from formnet_cli.imaging.degradations import add_gaussian_noise, imresize, jpeg_compress
from formnet_cli.imaging.metrics import psnr

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("make_reference_outputs", DATA / "make_reference_outputs.py")
references = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(references)
CASES = references.cases()

# the least gain (dB) over the degraded input (SR: over bicubic) on these 64 x 64 crops
MINIMUM_GAIN = {"denoise-gray": 6.0, "denoise-color": 6.0, "jpeg-gray": 0.5, "sr-y": 0.5}


def to_uint8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_model_matches_its_reference_and_restores(name):
    clean, degraded, options = CASES[name]
    output = to_uint8(restore(degraded, device="cpu", **options))
    expected = np.asarray(Image.open(DATA / f"{name}.expected.png"))
    assert output.shape == expected.shape == clean.shape
    assert np.abs(output.astype(int) - expected.astype(int)).max() <= 1
    if options["task"] == "sr":
        baseline = to_uint8(imresize(degraded, output_shape=clean.shape[:2]))
    else:
        baseline = to_uint8(degraded)
    assert psnr(clean, output) > psnr(clean, baseline) + MINIMUM_GAIN[name]


def _crop() -> tuple[np.ndarray, np.ndarray]:
    photo = np.asarray(Image.open(DATA.parents[1] / "examples" / "astronaut.png").convert("RGB"))
    color = photo[100:196, 120:216]
    return color, np.asarray(Image.fromarray(color).convert("L"))


@pytest.mark.parametrize("quality", [5, 50, 95, "blind"])
def test_one_jpeg_model_restores_every_quality_and_blind(quality):
    color, gray = _crop()
    for clean in (gray, color):  # color: Y, Cb and Cr each through the gray model
        compressed = jpeg_compress(clean, 30 if quality == "blind" else quality)
        output = to_uint8(restore(compressed, task="jpeg", quality=quality, device="cpu"))
        assert output.shape == clean.shape
        # at quality 95 little is left to remove (color: its 4:2:0 chroma is not recoverable)
        assert psnr(clean, output) > psnr(clean, compressed) + (0.1 if quality == 95 else 0.3)


@pytest.mark.parametrize("sigma", [5, 60, 75])
def test_denoiser_restores_off_the_benchmark_levels(sigma):
    _, gray = _crop()
    noisy = add_gaussian_noise(gray / 255.0, sigma, seed=0)
    output = to_uint8(restore(noisy, task="denoise", sigma=sigma, device="cpu"))
    assert psnr(gray, output) > psnr(gray, to_uint8(noisy)) + 4.0


@pytest.mark.parametrize("scale", [3, 4])
def test_sr_beats_bicubic_at_every_scale(scale):
    _, gray = _crop()
    low = np.clip(imresize(gray / 255.0, 1 / scale), 0, 1).astype(np.float32)
    output = to_uint8(restore(low, task="sr", scale=scale, device="cpu"))
    assert output.shape == gray.shape
    assert psnr(gray, output) > psnr(gray, to_uint8(imresize(low, output_shape=gray.shape))) + 1.0


def test_bm3d_formatted_model_improves_on_bm3d_alone():
    from formnet_cli.models.formresnet import bm3d_denoise

    _, gray = _crop()
    noisy = add_gaussian_noise(gray / 255.0, 25, seed=0)
    output = to_uint8(restore(noisy, task="denoise", sigma=25, model="denoise-gray-bm3d", device="cpu"))
    formatted = to_uint8(bm3d_denoise(noisy[..., None].astype(np.float64), 25 / 255)[..., 0])
    assert psnr(gray, output) > psnr(gray, formatted) + 0.05


def test_sigma_auto_restores_brightness_dependent_noise_better_than_one_sigma():
    from formnet_cli.imaging.estimation import estimate_noise_sigma

    photo = np.asarray(Image.open(DATA.parents[1] / "examples" / "astronaut.png").convert("L"))
    clean = photo[:192, 160:352].astype(np.float64) / 255  # dark suit, bright face and wall
    noisy = clean + np.sqrt(0.006 * clean + (2 / 255) ** 2) * np.random.default_rng(0).normal(size=clean.shape)
    one_sigma = restore(noisy.astype(np.float32), sigma=estimate_noise_sigma(noisy), device="cpu")
    auto = restore(noisy.astype(np.float32), sigma="auto", device="cpu")
    reference = np.round(clean * 255).astype(np.uint8)
    assert psnr(reference, to_uint8(auto)) > psnr(reference, to_uint8(one_sigma)) + 0.2
