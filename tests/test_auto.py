"""``task="auto"`` (the default): the evidence it measures on small made images, the decisions
it takes from that evidence, and what the API and ``formnet restore`` do with them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke
from formnet_cli import api, auto
from formnet_cli.imaging.blockiness import jpeg_blockiness
from formnet_cli.imaging.degradations import add_camera_noise, add_gaussian_noise, jpeg_compress
from formnet_cli.imaging.estimation import (estimate_coarse_noise_level_function,
                                            estimate_noise_level_function)
from formnet_cli.results import NOTHING


def made_photo(size: int = 96, seed: int = 0, color: bool = False) -> np.ndarray:
    """A seeded uint8 picture: smooth shading, flat discs and a band of fine stripes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3 if color else 1):
        plane = 0.25 + 0.5 * (rng.random() * x + rng.random() * y) / 2
        for _disc in range(4):
            cy, cx, radius = rng.random(3) * [1, 1, 0.25]
            plane = np.where((y - cy) ** 2 + (x - cx) ** 2 < radius ** 2, rng.random(), plane)
        plane = plane + 0.08 * np.sin(2 * np.pi * 9 * x) * (y > 0.8)
        channels.append(plane)
    return np.round(np.clip(np.stack(channels, axis=2), 0, 1) * 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(
        buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def noisy(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.round(np.clip(add_gaussian_noise(pixels / 255.0, sigma, seed), 0, 1) * 255).astype(np.uint8)


def floats(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255.0


# -- what is measured ------------------------------------------------------------------------
@pytest.mark.parametrize("color", [False, True])
def test_blockiness_tells_a_decoded_jpeg_from_an_image_never_compressed(color):
    clean = made_photo(128, seed=1, color=color)
    assert jpeg_blockiness(floats(clean)) < 1.2
    assert jpeg_blockiness(floats(noisy(clean, 8))) < 1.2  # noise has no grid
    for quality in (20, 40):
        blocky = jpeg_compress(clean if color else clean[:, :, 0], quality)
        assert jpeg_blockiness(floats(blocky)) > auto.BLOCKY
    shifted = jpeg_compress(clean, 30)[3:, 5:]  # a crop: the grid at another phase
    assert jpeg_blockiness(floats(shifted)) > auto.BLOCKY


def test_one_long_straight_edge_is_not_a_grid():
    plane = np.full((64, 64), 0.3)
    plane[34:] = 0.7  # a horizon, on phase 2 of the rows
    assert jpeg_blockiness(plane) < 1.1
    clean = made_photo(64, seed=5)  # a band's edge spans its width
    assert jpeg_blockiness(floats(clean)) < auto.BLOCKY
    assert jpeg_blockiness(floats(jpeg_compress(clean, 30))) > auto.BLOCKY


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("size", [64, 128])
def test_the_decision_over_made_images(color, size):
    """Clean: nothing; white noise of sigma 8: denoise; a JPEG file of quality 30: jpeg at 30,
    the same decoded: jpeg blind; a JPEG of quality 90: jpeg, no denoising."""
    def decide(pixels, source=None):
        image = floats(pixels)
        compression = auto.examine(image, source)
        noisy_ = auto.is_noisy(auto.measure_noise(image, compression), compression)
        return auto.jpeg_step(compression, noisy_), noisy_

    for seed in range(4):
        clean = made_photo(size, seed=seed, color=color)
        assert decide(clean) == (None, False), seed
        assert decide(noisy(clean, 8, seed)) == (None, True), seed
        for quality in (30, 90):
            data = jpeg_bytes(clean, quality)
            decoded = np.asarray(Image.open(io.BytesIO(data))).reshape(clean.shape)
            assert decide(decoded, data) == (quality, False), (seed, quality)
        assert decide(np.asarray(Image.open(io.BytesIO(jpeg_bytes(clean, 30)))).reshape(
            clean.shape)) == ("blind", False), seed


def test_blockiness_of_what_cannot_tell_is_one():
    assert jpeg_blockiness(np.zeros((20, 200))) == 1.0  # too small a side
    assert jpeg_blockiness(np.full((64, 64), 0.5)) == 1.0  # flat
    with pytest.raises(TypeError, match="float image"):
        jpeg_blockiness(np.zeros((64, 64), np.uint8))


def test_the_coarse_noise_level_finds_the_noise_a_jpeg_hides():
    clean = made_photo(160, seed=2)
    noisy_pixels, true_sigma = add_camera_noise(clean, 0.004, 2 / 255, "srgb", seed=0)
    true = float(true_sigma.mean() * 255)
    compressed = floats(jpeg_compress(np.round(noisy_pixels * 255).astype(np.uint8), 70))
    fine = estimate_noise_level_function(compressed).sigma
    coarse = estimate_coarse_noise_level_function(compressed).sigma
    assert fine < 0.6 * true  # quantisation removed the noise's finest scales
    assert abs(coarse - true) < 0.25 * true
    plain = floats(noisy(clean, 10))  # white noise: both scales read it
    assert abs(estimate_coarse_noise_level_function(plain).sigma - 10) < 2


def test_measure_noise_reads_a_colour_jpeg_on_its_luminance():
    clean = made_photo(160, seed=3, color=True)
    data = jpeg_bytes(noisy(clean, 10), 80)
    pixels = floats(np.asarray(Image.open(io.BytesIO(data))))
    compression = auto.examine(pixels, data)
    assert compression.file_quality == 80 and compression.is_jpeg
    assert not compression.fine_noise_kept
    reading = auto.measure_noise(pixels, compression)
    assert 7.5 < reading.mean < 12.5 and "luminance" in reading.how
    as_png = auto.measure_noise(pixels, auto.Compression(None, 1.0))  # measured as if never a JPEG
    assert as_png.mean < 0.75 * reading.mean
    assert auto.measure_noise(pixels[:20, :20], compression) is None  # too small


def rough(size: int, seed: int) -> np.ndarray:
    """A gray uint8 picture of texture at every scale, more at coarser ones as in natural
    texture (amplitude falling as frequency^-1.75)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    frequency = np.hypot(fy, fx)
    frequency[0, 0] = 1.0
    plane = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) / frequency ** 1.75))
    plane = 0.5 + 0.3 * (plane - plane.mean()) / plane.std()
    return np.round(np.clip(plane, 0, 1) * 255).astype(np.uint8)[:, :, None]


def test_on_a_textured_jpeg_the_noise_is_read_at_full_resolution():
    """At half resolution texture outweighs the noise (more at a quarter: the ratio); at full
    resolution the noise reads below its sigma (quantisation took part of it) but the texture
    of a clean JPEG reads near nothing, so a noisy one is denoised and a clean one is not."""
    for sigma in (0, 12):
        pixels = noisy(rough(160, seed=1), sigma) if sigma else rough(160, seed=1)
        data = jpeg_bytes(pixels, 75)
        decoded = floats(np.asarray(Image.open(io.BytesIO(data)))[:, :, None])
        compression = auto.examine(decoded, data)
        reading = auto.measure_noise(decoded, compression)
        half = auto.measure_noise(decoded, compression, past_texture=False)
        assert reading.is_texture and half.texture_ratio == reading.texture_ratio
        assert "at full resolution, texture at half" in reading.how
        if sigma:  # read low: quantisation took part of the noise
            assert auto.is_noisy(reading, compression) and 6 < reading.mean < sigma
        else:  # the texture half resolution saw is not in it
            assert not auto.is_noisy(reading, compression) and reading.mean < min(2.5, half.mean - 5)
        after = auto.noise_after_jpeg(reading, decoded[::2, ::2], compression)
        assert after is reading  # the JPEG step smooths what it was read on: it stands
    smooth = auto.measure_noise(floats(noisy(made_photo(128, seed=3), 10)), auto.Compression(75, 2.0))
    assert not smooth.is_texture and "at half resolution" in smooth.how


def test_a_half_resolution_reading_above_what_the_quantisation_hides_is_capped(monkeypatch):
    """Texture with as much at half resolution as at a quarter (the ratio cannot tell it from
    noise) but little at full resolution, where a JPEG of quality 85 could not have hidden noise
    of that strength: the reading is capped, before the JPEG step and after it; noise on a
    smooth picture is read as it is."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    fy, fx = np.meshgrid(np.fft.fftfreq(160), np.fft.fftfreq(160), indexing="ij")
    frequency = np.hypot(fy, fx)
    frequency[0, 0] = 1.0
    plane = gaussian_filter(np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((160, 160)))
                                                 / frequency ** 0.5)), 0.6)
    texture = np.round(np.clip(0.5 + 0.2 * plane / plane.std(), 0, 1) * 255).astype(np.uint8)
    data = jpeg_bytes(texture[:, :, None], 85)
    decoded = floats(np.asarray(Image.open(io.BytesIO(data)))[:, :, None])
    compression = auto.examine(decoded, data)
    reading = auto.measure_noise(decoded, compression)
    assert not reading.is_texture and reading.ceiling is not None
    assert "capped" in reading.how and reading.mean <= reading.ceiling + 1e-3
    after = auto.noise_after_jpeg(reading, decoded, compression)
    assert after.ceiling == reading.ceiling and after.mean <= reading.ceiling + 1e-3
    monkeypatch.setattr(auto, "QUANTISATION_HIDES", float("inf"))  # no cap: what it read
    assert auto.measure_noise(decoded, compression).mean > 1.5 * reading.mean
    monkeypatch.undo()
    smooth = auto.measure_noise(floats(noisy(made_photo(128, seed=3), 10)), auto.Compression(75, 2.0))
    assert smooth.ceiling is None and 8 < smooth.mean < 14


# -- what is decided -------------------------------------------------------------------------
@pytest.mark.parametrize("compression, noisy, step", [
    (auto.Compression(85, 1.0), False, 85),
    (auto.Compression(85, 1.0), True, 85),
    (auto.Compression(auto.JPEG_QUALITY_MAX, 1.0), False, auto.JPEG_QUALITY_MAX),
    (auto.Compression(auto.FINE_QUALITY, 1.0), True, None),  # its noise hides its blocks
    (auto.Compression(auto.JPEG_QUALITY_MAX + 1, 3.0), False, None),  # its tables say more than its blocks
    (auto.Compression(None, auto.BLOCKY), True, "blind"),
    (auto.Compression(None, auto.BLOCKY - 0.01), False, None),
])
def test_the_jpeg_step_comes_from_the_file_else_from_the_blocks(compression, noisy, step):
    assert auto.jpeg_step(compression, noisy) == step


def test_noise_counts_above_the_threshold_of_its_kind():
    function = estimate_noise_level_function(np.zeros((32, 32)))

    def reading(mean: float) -> auto.NoiseReading:
        return auto.NoiseReading(function, mean, mean, mean, "")

    plain, jpeg = auto.Compression(None, 1.0), auto.Compression(80, 2.0)
    assert auto.is_noisy(reading(auto.NOISY + 0.1), plain)
    assert not auto.is_noisy(reading(auto.NOISY - 0.1), plain)
    assert not auto.is_noisy(reading(auto.NOISY_IN_JPEG - 0.1), jpeg)
    assert auto.is_noisy(reading(auto.NOISY_IN_JPEG + 0.1), jpeg)
    assert not auto.is_noisy(None, plain)
    past_texture = auto.NoiseReading(function, 1.5, 1.5, 1.5, "", texture_ratio=auto.TEXTURE_RATIO)
    assert past_texture.is_texture and not auto.is_noisy(past_texture, jpeg)
    assert (auto.explain(jpeg, 80, past_texture, False)
            == "JPEG quality 80 from its tables; no noise, sigma 1.5, read past texture")
    assert not auto.NoiseReading(function, 9.0, 9.0, 9.0, "", texture_ratio=1.9).is_texture
    assert (auto.explain(auto.Compression(95, 1.0), None, reading(9.0), True)
            == "JPEG quality 95 from its tables, its noise hides its blocks; noisy")
    assert auto.explain(jpeg, 80, reading(6.0), True) == "JPEG quality 80 from its tables; noisy"
    assert (auto.explain(plain, None, reading(0.6), False)
            == "no JPEG blocks, blockiness 1.00; no noise, sigma 0.6")
    assert (auto.explain(auto.Compression(None, 2.5), "blind", None, False)
            == "blocky like a decoded JPEG, blockiness 2.50; noise not measured, the image is too small")


# -- the API ---------------------------------------------------------------------------------
def test_auto_leaves_a_clean_image_as_it_is():
    clean = made_photo(96, seed=4)[:, :, 0]
    result = api.restore_with_info(clean, device="cpu")
    assert result.task == NOTHING and result.steps == ()
    np.testing.assert_array_equal(result.image, clean)
    assert result.describe().startswith("nothing to restore (no JPEG blocks, blockiness ")


def test_auto_denoises_a_noisy_image_and_deblocks_a_jpeg_file():
    clean = made_photo(96, seed=5)
    sigma_10 = noisy(clean, 10)
    result = api.restore_with_info(sigma_10, device="cpu")
    assert result.task == "denoise" and 8 < result.sigma < 12
    expected = api.restore(sigma_10, "denoise", sigma="auto", device="cpu")
    np.testing.assert_array_equal(result.image, expected)  # what --sigma auto does

    data = jpeg_bytes(clean, 25)
    decoded = np.asarray(Image.open(io.BytesIO(data)))[:, :, None]
    from_file = api.restore_with_info(decoded, source_path=data, device="cpu")
    assert from_file.task == "jpeg" and from_file.quality == 25 and from_file.estimated
    assert from_file.reason.startswith("JPEG quality 25 from its tables; no noise")
    blind = api.restore_with_info(decoded, device="cpu")  # the pixels only: blind
    assert blind.task == "jpeg" and blind.quality is None
    assert blind.reason.startswith("blocky like a decoded JPEG")
    error = lambda image: np.abs(image.astype(float) - clean).mean()  # noqa: E731
    assert error(from_file.image) < error(decoded)


def test_auto_on_a_noisy_jpeg_removes_its_blocks_then_the_noise_left():
    clean = made_photo(128, seed=6, color=True)
    data = jpeg_bytes(noisy(clean, 12), 75)
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    result = api.restore_with_info(decoded, source_path=data, device="cpu")
    assert [step.task for step in result.steps] == ["jpeg", "denoise"]
    assert result.quality == 75 and 8 < result.sigma < 16
    assert result.describe().startswith("jpeg q75, then denoise sigma ")
    by_hand = api.restore_with_info(decoded, tasks=["jpeg", "denoise"], source_path=data,
                                    device="cpu")  # the same chain, given
    np.testing.assert_array_equal(result.image, by_hand.image)
    assert by_hand.reason == "" and result.reason == "JPEG quality 75 from its tables; noisy"


def test_auto_with_a_model_runs_that_model(tiny_models, random_image):
    image = random_image((24, 24), np.uint8)
    result = api.restore_with_info(image, model=tiny_models.jpeg_gray, device="cpu")
    assert result.task == "jpeg" and result.model_name == "tiny-jpeg-gray"


# -- the command line ------------------------------------------------------------------------
def test_restore_without_a_task_says_what_it_did_and_why(tmp_path):
    clean = made_photo(96, seed=7)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clean.png").write_bytes(_png(clean))
    (tmp_path / "in" / "old.jpg").write_bytes(jpeg_bytes(clean, 20))
    result = invoke("restore", tmp_path / "in", "-o", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'in' / 'clean.png'}: nothing to restore (no JPEG blocks" in result.stderr
    assert f"{tmp_path / 'in' / 'old.jpg'}: jpeg q20 (JPEG quality 20 from its tables; no noise" in result.stderr
    # nothing to restore: the very bytes of the input
    assert (tmp_path / "out" / "clean.png").read_bytes() == (tmp_path / "in" / "clean.png").read_bytes()
    assert (tmp_path / "out" / "old.jpg").read_bytes() != (tmp_path / "in" / "old.jpg").read_bytes()


def test_skip_clean_writes_nothing_for_a_clean_image_and_json_records_the_steps(tmp_path):
    clean = made_photo(96, seed=8)
    source = tmp_path / "clean.png"
    source.write_bytes(_png(clean))
    out = tmp_path / "out" / "clean.png"
    result = invoke("restore", source, "-o", out, "--device", "cpu", "--skip-clean", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["status"] == "skipped" and entry["task"] == "none"
    assert entry["reason"] == "nothing to restore (--skip-clean)"
    assert entry["decision"].startswith("no JPEG blocks, blockiness ")
    assert not out.exists() and not out.parent.exists()

    data = jpeg_bytes(noisy(made_photo(128, seed=9), 12), 80)
    (tmp_path / "phone.jpg").write_bytes(data)
    result = invoke("restore", tmp_path / "phone.jpg", "-o", tmp_path / "phone_out.jpg",
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["task"] == "jpeg,denoise" and entry["status"] == "done"
    jpeg, denoise = entry["steps"]
    assert jpeg["task"] == "jpeg" and jpeg["quality"] == 80 and jpeg["estimated"]
    assert denoise["task"] == "denoise" and 8 < denoise["sigma"] < 16 and denoise["model"]
    assert entry["decision"] == "JPEG quality 80 from its tables; noisy"


def test_the_task_option_reads_auto_and_refuses_what_it_cannot(tmp_path, gray_png):
    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", "--task", "deblur")
    assert result.exit_code == 2
    assert "'deblur' is not auto, denoise, jpeg, sr or several joined by commas" in result.stderr
    result = invoke("restore", gray_png, "-o", tmp_path / "o.png", "--task", "jpeg,jpeg")
    assert result.exit_code == 2 and "task 'jpeg' is given twice in jpeg,jpeg" in result.stderr


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()
