"""The numpy API: layouts and dtypes round-trip, channel routing, validation, model loading."""

from __future__ import annotations

import numpy as np
import pytest

import formnet_cli
from formnet_cli import api
from formnet_cli.errors import InvalidOptionError, ModelNotFoundError


def test_package_reexports_the_api():
    assert formnet_cli.restore is api.restore
    assert formnet_cli.load_model is api.load_model
    assert formnet_cli.clear_model_cache is api.clear_model_cache
    assert "clear_model_cache" in formnet_cli.__all__
    assert isinstance(formnet_cli.__version__, str)


def test_uint8_gray_keeps_dtype_and_shape(tiny_models, random_image):
    image = random_image((21, 34), np.uint8)
    out = formnet_cli.restore(image, task="denoise", sigma=25, model=tiny_models.denoise_gray,
                              device="cpu")
    assert out.dtype == np.uint8 and out.shape == (21, 34)


def test_gray_with_channel_axis_keeps_it(tiny_models, random_image):
    image = random_image((16, 16, 1), np.float32)
    out = formnet_cli.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu")
    assert out.dtype == np.float32 and out.shape == (16, 16, 1)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_uint16_rgb_with_a_gray_model_keeps_dtype_and_shape(tiny_models, random_image):
    image = random_image((19, 23, 3), np.uint16)
    out = formnet_cli.restore(image, sigma=5, model=tiny_models.denoise_gray, device="cpu")
    assert out.dtype == np.uint16 and out.shape == (19, 23, 3)
    assert out.max() > 255  # 16-bit output, not 8-bit values in a 16-bit array


def test_rgb_through_gray_model_equals_per_channel(tiny_models, random_image):
    image = random_image((16, 20, 3), np.float32)
    both = formnet_cli.restore(image, sigma=15, model=tiny_models.denoise_gray, device="cpu")
    for channel in range(3):
        alone = formnet_cli.restore(image[:, :, channel], sigma=15,
                                    model=tiny_models.denoise_gray, device="cpu")
        np.testing.assert_allclose(both[:, :, channel], alone, atol=1e-6)


def test_color_model_runs_on_rgb(tiny_models, random_image):
    image = random_image((12, 12, 3), np.uint8)
    out = formnet_cli.restore(image, sigma=15, model=tiny_models.denoise_color, device="cpu")
    assert out.shape == image.shape and out.dtype == np.uint8


def test_rgba_alpha_passes_through_unchanged(tiny_models, random_image):
    image = random_image((17, 15, 4), np.uint8, seed=3)
    out = formnet_cli.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu")
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 3], image[:, :, 3])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_output_is_scale_times_the_input(tiny_models, random_image, scale):
    image = random_image((9, 11, 3), np.uint8)
    out = formnet_cli.restore(image, task="sr", scale=scale, model=tiny_models.sr_gray,
                              device="cpu")
    assert out.shape == (9 * scale, 11 * scale, 3) and out.dtype == np.uint8


def test_sr_resizes_alpha(tiny_models):
    image = np.zeros((8, 8, 4), np.uint8)
    image[..., 3] = 200
    out = formnet_cli.restore(image, task="sr", scale=2, model=tiny_models.sr_gray, device="cpu")
    assert out.shape == (16, 16, 4)
    np.testing.assert_array_equal(out[..., 3], 200)  # bicubic keeps a constant alpha


def test_jpeg_on_rgb_runs_gray_model_on_ycbcr(tiny_models, random_image):
    image = random_image((16, 16, 3), np.uint8)
    result = api.restore_with_info(image, "jpeg", quality=20, model=tiny_models.jpeg_gray,
                                   device="cpu")
    assert result.image.shape == image.shape and result.quality == 20
    blind = api.restore_with_info(image, "jpeg", quality="blind", model=tiny_models.jpeg_gray,
                                  device="cpu")
    assert blind.quality is None and blind.describe_level() == "blind quality"


def test_quality_auto_reads_the_jpeg_tables(tiny_models, tmp_path, random_image):
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.fromarray(random_image((16, 16), np.uint8)).save(path, quality=30)
    pixels = np.asarray(Image.open(path))
    result = api.restore_with_info(pixels, "jpeg", quality="auto", model=tiny_models.jpeg_gray,
                                   device="cpu", source_path=path)
    assert result.estimated and result.quality == 30
    no_file = api.restore_with_info(pixels, "jpeg", model=tiny_models.jpeg_gray, device="cpu")
    assert no_file.quality is None  # no source file: blind


def test_sigma_auto_estimates_and_reports(tiny_models):
    rng = np.random.default_rng(0)
    noisy = np.clip(0.5 + rng.normal(0, 20 / 255, (64, 64)), 0, 1).astype(np.float32)
    result = api.restore_with_info(noisy, sigma="auto", model=tiny_models.denoise_gray,
                                   device="cpu")
    assert result.estimated and result.sigma == pytest.approx(20, abs=2)
    assert result.describe_level().startswith("estimated sigma ")


def test_sigma_auto_on_a_thin_strip_names_the_image_size(tiny_models):
    strip = np.full((4, 3000), 128, np.uint8)  # measured on a 768 px sample of its length
    with pytest.raises(InvalidOptionError, match=r"3000 x 4 pixels, about \d+ x \d+ needed"):
        api.restore(strip, sigma="auto", model=tiny_models.denoise_gray, device="cpu")


@pytest.mark.parametrize("options", [
    {"sigma": 80}, {"sigma": -1}, {"sigma": float("nan")}, {"sigma": "loud"},
    {"task": "jpeg", "quality": 0}, {"task": "jpeg", "quality": 101},
    {"task": "jpeg", "quality": 2.5}, {"task": "sr", "scale": 5}, {"task": "sr"},
    {"task": "deblur"}, {"ensemble": 3}, {"ensemble": "all"}, {"ensemble": True},
    {"task": "jpeg", "quality": True}, {"sigma": True},
    {"strength": 1.5}, {"strength": -0.1}, {"strength": float("nan")}, {"strength": "full"},
    {"strength": True},
])
def test_invalid_options_raise_one_line_errors(tiny_models, options):
    model = {"denoise": tiny_models.denoise_gray, "jpeg": tiny_models.jpeg_gray,
             "sr": tiny_models.sr_gray}.get(options.get("task", "denoise"))
    with pytest.raises(InvalidOptionError) as caught:
        api.restore(np.zeros((8, 8), np.uint8), model=model, device="cpu", **options)
    assert "\n" not in str(caught.value)


def test_ensemble_auto_runs_what_the_model_card_recommends(tiny_models, random_image, tmp_path):
    import json
    import shutil

    folder = tmp_path / "recommends-4"
    shutil.copytree(tiny_models.denoise_gray, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "ensemble": 4}))
    image = random_image((21, 34), np.float32)
    auto = api.restore_with_info(image, sigma=25, model=folder, device="cpu")
    four = api.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu", ensemble=4)
    one = api.restore(image, sigma=25, model=folder, device="cpu", ensemble="1")
    assert auto.ensemble == 4
    np.testing.assert_array_equal(auto.image, four)
    assert np.abs(auto.image - one).max() > 1e-3
    assert api.restore_with_info(image, sigma=25, model=tiny_models.denoise_gray).ensemble == 1


def test_invalid_ensemble_in_config_json_is_a_checkpoint_error(tiny_models, tmp_path):
    import json
    import shutil

    from formnet_cli.hub.checkpoint import CheckpointError, read_info

    folder = tmp_path / "bad"
    shutil.copytree(tiny_models.denoise_gray, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "ensemble": 3}))
    with pytest.raises(CheckpointError, match="ensemble"):
        read_info(folder)


@pytest.mark.parametrize("image", [
    np.zeros((8, 8), np.int32), np.full((8, 8), 255.0, np.float32), np.zeros((8, 8, 5), np.uint8),
    np.zeros((0, 8), np.uint8),
])
def test_unsupported_images_raise(tiny_models, image):
    with pytest.raises(InvalidOptionError):
        api.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu")


def test_model_for_another_task_is_refused(tiny_models):
    with pytest.raises(InvalidOptionError, match="restores 'sr'"):
        api.restore(np.zeros((8, 8), np.uint8), sigma=10, model=tiny_models.sr_gray, device="cpu")


def _bundle_only(tmp_path, monkeypatch, *checkpoints) -> None:
    """Make ``checkpoints`` the only models there are, each the default of its task/channels."""
    import json
    import shutil

    from formnet_cli.hub.manifest import manifest_entry_for

    bundled = tmp_path / "weights"
    bundled.mkdir()
    entries = [manifest_entry_for(shutil.copytree(folder, bundled / folder.name), default=True)
               for folder in checkpoints]
    (bundled / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "hub": {"repo": "formnet/formnet-weights", "revision": None},
        "models": entries}))
    monkeypatch.setattr("formnet_cli.hub.manifest.bundled_weights_dir", lambda: bundled)
    monkeypatch.setenv("FORMNET_WEIGHTS_DIR", str(tmp_path))


def test_missing_weights_raise_model_not_found(tmp_path, monkeypatch):
    _bundle_only(tmp_path, monkeypatch)
    with pytest.raises(ModelNotFoundError):
        api.restore(np.zeros((8, 8), np.uint8), sigma=10, device="cpu")  # no default weights
    with pytest.raises(ModelNotFoundError):
        api.restore(np.zeros((8, 8), np.uint8), sigma=10, model=tmp_path / "nope", device="cpu")


def test_load_model_is_cached_and_usable(tiny_models, random_image):
    first = api.load_model(tiny_models.denoise_gray, task="denoise", device="cpu")
    again = api.load_model(str(tiny_models.denoise_gray), task="denoise", device="cpu")
    assert first is again and first.source == "path" and first.channels == 1
    out = api.restore(random_image((8, 8), np.uint8), sigma=25, model=first)
    assert out.shape == (8, 8)


def test_load_model_by_name_or_path_loads_it_whatever_its_task(tiny_models):
    loaded = api.load_model(tiny_models.sr_gray, device="cpu")
    assert loaded.task == "sr"
    with pytest.raises(InvalidOptionError, match="restores 'sr', not 'denoise'"):
        api.load_model(tiny_models.sr_gray, task="denoise", device="cpu")


def test_default_model_falls_back_to_the_other_channel_count_as_restore_does(
        tiny_models, tmp_path, monkeypatch, random_image):
    _bundle_only(tmp_path, monkeypatch, tiny_models.sr_gray)  # no color sr model
    loaded = api.load_model(task="sr", channels=3, device="cpu")
    assert loaded.channels == 1 and loaded.name == tiny_models.sr_gray.name
    result = api.restore_with_info(random_image((8, 8, 3)), "sr", scale=2, device="cpu")
    assert result.model_name == loaded.name
    with pytest.raises(ModelNotFoundError, match="task 'jpeg' \\(gray\\)"):  # neither: the preferred
        api.load_model(task="jpeg", device="cpu")


def test_load_model_reloads_a_checkpoint_rewritten_in_place(tiny_models, tmp_path):
    import shutil

    import torch

    from formnet_cli.hub.checkpoint import save_checkpoint
    from formnet_cli.models import FormResNet

    folder = shutil.copytree(tiny_models.denoise_gray, tmp_path / "run" / "model")
    first = api.load_model(folder, device="cpu")
    torch.manual_seed(7)
    retrained = FormResNet(first.config)
    save_checkpoint(retrained, folder, "retrained")  # a training run exporting again
    second = api.load_model(folder, device="cpu")
    assert second is not first and second.name == "retrained"
    for key, value in retrained.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value)
    assert api.load_model(folder, device="cpu") is second  # unchanged since: cached


def test_restore_checks_and_honours_device_with_a_loaded_model(tiny_models, monkeypatch):
    import dataclasses

    import torch

    loaded = api.load_model(tiny_models.denoise_gray, device="cpu")
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(InvalidOptionError, match="unknown device 'bogus'"):
        api.restore(image, sigma=10, model=loaded, device="bogus")
    devices = []

    def recording(model, array, level, *, out=None, **options):
        devices.append(options["device"])
        out[...] = 0
        return out

    from formnet_cli.inference import engine  # imported by the torch backend, not by api

    monkeypatch.setattr(engine, "restore_numpy", recording)
    elsewhere = dataclasses.replace(loaded, device=torch.device("meta"))  # as if on a GPU
    api.restore(image, sigma=10, model=elsewhere, device="cpu")
    api.restore(image, sigma=10, model=elsewhere)  # auto: where the model was loaded
    assert devices == [torch.device("cpu"), torch.device("meta")]


def test_a_loaded_model_runs_on_another_device_when_asked(tiny_models, random_image):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    loaded = api.load_model(tiny_models.denoise_gray, device="cpu")
    image = random_image((40, 36), np.float32)
    on_gpu = api.restore(image, sigma=25, model=loaded, device="cuda", precision="fp32")
    on_cpu = api.restore(image, sigma=25, model=loaded, device="cpu")
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    assert next(loaded.model.parameters()).device.type == "cpu"  # the loaded model stays put


def test_tiled_equals_untiled_and_progress_is_reported(tiny_models, random_image):
    image = random_image((170, 190), np.float32)
    calls = []
    tiled = api.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu", tile=48,
                        tile_overlap=4, progress=lambda done, total: calls.append((done, total)))
    untiled = api.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu",
                          tile=None)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)
    assert calls and calls[-1][0] == calls[-1][1] > 1


def test_gray_with_alpha_keeps_both(tiny_models, random_image):
    image = random_image((10, 12, 2), np.uint16, seed=5)
    out = formnet_cli.restore(image, sigma=5, model=tiny_models.denoise_gray, device="cpu")
    assert out.shape == image.shape and out.dtype == np.uint16
    np.testing.assert_array_equal(out[:, :, 1], image[:, :, 1])


def test_unclipped_noisy_floats_are_accepted_but_8_bit_floats_are_not(tiny_models):
    rng = np.random.default_rng(0)
    noisy = (0.5 + rng.normal(0, 75 / 255, (16, 16))).astype(np.float32)  # the protocol's sigma 75
    noisy[0, 0], noisy[0, 1] = 2.4, -1.4
    out = api.restore(noisy, sigma=75, model=tiny_models.denoise_gray, device="cpu")
    assert out.shape == noisy.shape and out.dtype == np.float32
    with pytest.raises(InvalidOptionError, match="divide 8-bit values by 255"):
        api.restore(noisy * 255, sigma=75, model=tiny_models.denoise_gray, device="cpu")


def test_gray_photo_saved_as_rgb_is_restored_as_gray(tiny_models, random_image):
    gray = random_image((40, 36))
    as_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = api.restore(gray, sigma=25, model=tiny_models.denoise_gray, device="cpu")
    result = api.restore_with_info(as_rgb, sigma=25, model=tiny_models.denoise_gray, device="cpu")
    assert result.image.shape == as_rgb.shape
    np.testing.assert_array_equal(result.image, np.repeat(expected[:, :, None], 3, axis=2))
    # Through a color model too the channels stay equal (no tint).
    tinted = api.restore(as_rgb, sigma=25, model=tiny_models.denoise_color, device="cpu")
    assert (tinted[:, :, 0] == tinted[:, :, 1]).all() and (tinted[:, :, 0] == tinted[:, :, 2]).all()


def test_default_model_for_gray_saved_as_rgb_is_the_gray_one(random_image):
    as_rgb = np.repeat(random_image((24, 24))[:, :, None], 3, axis=2)
    result = api.restore_with_info(as_rgb, sigma=15, device="cpu", ensemble=1)
    assert result.model_name == "denoise-gray"


def _brightness_dependent_noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark-to-bright ramp with noise of variance ``0.006 x + (2/255)^2``: (clean, noisy)."""
    rows, cols = np.mgrid[0:128, 0:160]
    clean = 0.05 + 0.9 * cols / 159 + 0.04 * np.sin(rows / 5.0)
    std = np.sqrt(0.006 * clean + (2 / 255) ** 2)
    noisy = clean + std * np.random.default_rng(seed).normal(size=clean.shape)
    return clean, noisy.astype(np.float32)


def test_sigma_auto_uses_a_sigma_map_when_noise_grows_with_brightness(tiny_models):
    _clean, noisy = _brightness_dependent_noise()
    result = api.restore_with_info(noisy, sigma="auto", model=tiny_models.denoise_gray, device="cpu")
    assert result.estimated and result.sigma_map_range is not None
    low, high = result.sigma_map_range
    assert low < 0.6 * high and low < result.sigma < high
    assert "varies with brightness" in result.describe_level()
    one_sigma = api.restore(noisy, sigma=result.sigma, model=tiny_models.denoise_gray, device="cpu")
    assert not np.allclose(result.image, one_sigma)  # the map reached the model
    white = np.clip(0.5 + np.random.default_rng(1).normal(0, 10 / 255, (128, 160)), 0, 1)
    flat = api.restore_with_info(white.astype(np.float32), sigma="auto",
                                 model=tiny_models.denoise_gray, device="cpu")
    assert flat.sigma_map_range is None and flat.sigma == pytest.approx(10, abs=1)
    assert "varies" not in flat.describe_level()


def test_gray_model_on_colour_denoises_each_channel_at_its_own_sigma_map(tiny_models, monkeypatch):
    _clean, noisy = _brightness_dependent_noise()
    # Red carries the brightness-dependent noise; green and blue are flat and nearly clean.
    flat = np.full(noisy.shape, 0.5, np.float32) + np.random.default_rng(3).normal(0, 1 / 255, noisy.shape)
    image = np.clip(np.stack([noisy, flat, flat], axis=2), 0, 1).astype(np.float32)
    levels = []
    from formnet_cli.inference import engine  # imported by the torch backend, not by api

    restore_numpy = engine.restore_numpy

    def recording(model, array, level, **options):
        levels.append(level)
        return restore_numpy(model, array, level, **options)

    monkeypatch.setattr(engine, "restore_numpy", recording)
    result = api.restore_with_info(image, sigma="auto", model=tiny_models.denoise_gray, device="cpu",
                                   ensemble=1)
    assert result.sigma_map_range is not None and len(levels) == 3
    red, green, blue = (float(level.mean()) * 255 for level in levels)
    assert red > 2 * green and green == pytest.approx(blue, rel=0.05)  # not one averaged map


def test_noise_is_measured_over_the_whole_of_a_large_photo():
    from formnet_cli.inference.steps import estimate_noise, estimation_sample

    small = np.zeros((500, 700, 3))
    assert estimation_sample(small).shape == small.shape  # measured whole
    rows, cols = np.mgrid[0:1200, 0:2000]
    sample = estimation_sample(rows * 10_000 + cols)
    assert sample.shape == (768, 768)
    assert sample[0, 0] == 0 and sample[-1, -1] == 1199 * 10_000 + 1999  # corners included
    # Mid-gray in the middle, dark to the left, bright to the right: the centre alone shows
    # one brightness, so no trend of the noise with it.
    offset = cols / 1999.0 - 0.5
    clean = 0.5 + 1.5 * np.sign(offset) * np.maximum(np.abs(offset) - 0.2, 0.0)
    noisy = (clean + np.sqrt(0.006 * clean) * np.random.default_rng(0).normal(size=clean.shape))
    assert estimate_noise(noisy.astype(np.float32)).varies


@pytest.mark.parametrize("layout", ["gray+alpha", "uint16", "rgba", "color-model-on-gray", "2-passes"])
def test_sigma_map_through_every_image_layout(tiny_models, layout):
    _clean, noisy = _brightness_dependent_noise()
    options = {"model": tiny_models.denoise_gray, "device": "cpu", "sigma": "auto"}
    image = np.clip(noisy, 0, 1)
    if layout == "gray+alpha":
        image = np.stack([image, np.linspace(0, 1, image.size).reshape(image.shape)], axis=2)
    elif layout == "uint16":
        image = np.round(image * 65535).astype(np.uint16)
    elif layout == "rgba":  # through the color model, each channel with the same noise
        rgb = np.stack([image, np.roll(image, 3, axis=0), np.roll(image, 5, axis=1)], axis=2)
        image = np.concatenate([rgb, np.full(image.shape + (1,), 0.5)], axis=2).astype(np.float32)
        options["model"] = tiny_models.denoise_color
    elif layout == "color-model-on-gray":
        options["model"] = tiny_models.denoise_color
    else:
        options["ensemble"] = 2
    result = api.restore_with_info(image, **options)
    assert result.sigma_map_range is not None
    assert result.image.shape == image.shape and result.image.dtype == image.dtype
    if image.ndim == 3 and image.shape[2] in (2, 4):
        np.testing.assert_array_equal(result.image[:, :, -1], image[:, :, -1])  # alpha untouched


def test_the_package_lists_its_api_and_takes_the_clis_spellings(tiny_models):
    assert {"restore", "restore_with_info", "load_model"} <= set(dir(formnet_cli))
    image = np.zeros((16, 16), np.uint8)
    untiled = api.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu", tile=None)
    as_cli = api.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu", tile="none")
    np.testing.assert_array_equal(untiled, as_cli)
    assert api.restore(image, sigma=10, model=tiny_models.denoise_gray, device="cpu", tile="256").shape == (16, 16)
    assert api.restore(image, "sr", scale="2", model=tiny_models.sr_gray, device="cpu").shape == (32, 32)


def test_a_loaded_model_keeps_the_cpu_layout_between_images(tiny_models):
    import torch

    from formnet_cli.inference import device as device_module

    loaded = api.load_model(tiny_models.denoise_gray, device="cpu")
    assert device_module.memory_format_of(loaded.model) == torch.channels_last  # converted once, at load
    api.restore(np.zeros((16, 16), np.uint8), sigma=5, model=loaded, device="cpu")
    assert device_module.memory_format_of(loaded.model) == torch.channels_last  # not back and forth per image


def test_strength_blends_the_input_and_the_restoration(tiny_models, random_image):
    image = random_image((24, 20), np.uint8)
    full = api.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu")
    none = api.restore(image, sigma=25, model=tiny_models.denoise_gray, device="cpu", strength=0)
    np.testing.assert_array_equal(none, image)  # strength 0: the input, bit-exact
    assert np.abs(full.astype(int) - image).mean() > 5  # the tiny model changes it a lot
    floats = image.astype(np.float32) / 255
    restored = api.restore(floats, sigma=25, model=tiny_models.denoise_gray, device="cpu")
    half = api.restore(floats, sigma=25, model=tiny_models.denoise_gray, device="cpu",
                       strength="0.25")  # a form field's text, as sigma="25" is taken
    np.testing.assert_allclose(half, np.clip(floats + 0.25 * (restored - floats), 0, 1),
                               atol=1e-6)


def test_strength_zero_for_sr_is_the_bicubic_upscale(tiny_models, random_image):
    from formnet_cli.imaging.degradations import imresize

    image = random_image((10, 12), np.float32)
    out = api.restore(image, task="sr", scale=2, model=tiny_models.sr_gray, device="cpu",
                      strength=0.0)
    np.testing.assert_allclose(out, np.clip(imresize(image[:, :, None], scale=2)[:, :, 0], 0, 1),
                               atol=1e-6)


# -- 8- and 16-bit images without a whole-image float copy -----------------------------------
@pytest.mark.parametrize("case", ["gray", "gray-hw1", "colour", "rgba", "gray-as-rgb", "uint16"])
def test_an_integer_image_restores_as_its_float_copy_would(tiny_models, random_image, case):
    """The last step writes an 8- or 16-bit output band by band; the result is the float
    path's, quantised (the same float result, tiled, with the self-ensemble)."""
    shape, dtype, model = {
        "gray": ((70, 90), np.uint8, tiny_models.denoise_gray),
        "gray-hw1": ((70, 90, 1), np.uint8, tiny_models.denoise_gray),
        "colour": ((70, 90, 3), np.uint8, tiny_models.denoise_color),
        "rgba": ((70, 90, 4), np.uint8, tiny_models.denoise_color),
        "gray-as-rgb": ((70, 90), np.uint8, tiny_models.denoise_gray),
        "uint16": ((70, 90, 3), np.uint16, tiny_models.denoise_color),
    }[case]
    image = random_image(shape, dtype)
    if case == "gray-as-rgb":
        image = np.repeat(image[:, :, None], 3, axis=2)
    maximum = np.iinfo(dtype).max
    as_float = image.astype(np.float32) / np.float32(maximum)
    options = dict(sigma=25, model=model, device="cpu", tile=48, tile_overlap=4, ensemble=2)
    restored = api.restore(image, **options)
    expected = api.restore(as_float, **options)
    assert restored.dtype == image.dtype and restored.shape == image.shape
    np.testing.assert_array_equal(restored, np.rint(expected * maximum).astype(dtype))
    if case == "rgba":
        np.testing.assert_array_equal(restored[:, :, 3], image[:, :, 3])


def test_an_8_bit_image_is_restored_without_a_float_copy_of_it(tiny_models, random_image):
    """Peak numpy memory of a tiled restore stays well under one float32 copy of the image."""
    import tracemalloc

    image = random_image((1024, 1024, 3), np.uint8)
    options = dict(sigma=25, model=tiny_models.denoise_color, device="cpu", tile=96, ensemble=2)
    api.restore(image[:64, :64], **options)  # load the model outside the measurement
    tracemalloc.start()
    try:
        restored = api.restore(image, **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float_copy = image.size * 4
    assert restored.shape == image.shape
    assert peak < 0.5 * float_copy, f"peak {peak} bytes against {float_copy} for a float copy"


def test_auto_examines_an_8_bit_colour_image_without_float_copies_of_it(random_image):
    """``task="auto"`` measures JPEG blocking on a luminance plane made in strips: the
    examination's peak numpy memory stays under 3 float32 copies of the image (about 5 with the
    colour image converted to float32 and then float64). (The noise is measured on a sample of
    at most 768 x 768 pixels, whatever the image's size.)"""
    import tracemalloc

    from formnet_cli.options import RestoreOptions

    image = random_image((1024, 1024, 3), np.uint8)
    steps = api._Steps(RestoreOptions(), None, None)
    tracemalloc.start()
    try:
        compression = steps._examine(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compression.blockiness == api.auto.jpeg_blockiness(image.astype(np.float32) / 255)
    assert peak < 3 * image.size * 4, f"peak {peak} bytes against {image.size * 4} for a float copy"
