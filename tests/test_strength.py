"""``--strength 0..1``: the restoration blended with the input, on the command line as in the API."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cli_helpers import restore
from formnet_cli import api


def test_strength_blends_the_input_and_the_restoration(tiny_models, tmp_path, gray_png):
    source = np.asarray(Image.open(gray_png))
    outputs = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}.png"
        result = restore(tiny_models.denoise_gray, gray_png, "-o", out, "--sigma", "20",
                         "--strength", strength)
        assert result.exit_code == 0, result.output
        outputs[strength] = np.asarray(Image.open(out)).astype(int)
    np.testing.assert_array_equal(outputs["0"], source)  # strength 0: the input
    full = api.restore(source, sigma=20, model=tiny_models.denoise_gray, device="cpu", tile=None)
    np.testing.assert_array_equal(outputs["1"], full)
    half = api.restore(source, sigma=20, model=tiny_models.denoise_gray, device="cpu", tile=None,
                       strength=0.5)
    np.testing.assert_array_equal(outputs["0.5"], half)
    assert np.abs(outputs["0.5"] - (source.astype(int) + full) / 2).max() <= 1  # half way, to rounding
    assert np.abs(outputs["1"] - source).mean() > 2  # and the model did change the image


def test_a_strength_outside_0_to_1_is_a_usage_error(tmp_path, gray_png):
    from cli_helpers import invoke

    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", "--strength", "1.5")
    assert result.exit_code == 2
    assert "strength must be in [0, 1], got 1.5" in result.stderr
    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", "--strength", "lots")
    assert result.exit_code == 2
    assert "Invalid value for '--strength': Input should be a valid number" in result.stderr
