"""The bundled models: outputs match the committed references within one grey level, and each
restores its own degradation clearly better than doing nothing (or than bicubic for SR)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formnet_cli import restore
from formnet_cli.degradations import imresize
from formnet_cli.metrics import psnr

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
