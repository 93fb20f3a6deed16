"""training/data.py's files: training images read as restore reads them (formnet_cli.io), caches
written atomically."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from formnet_cli.errors import FormnetError
from formnet_cli.imaging.degradations import rgb_to_y
from formnet_cli.training import data as training_data
from formnet_cli.training.data import bicubic_pairs, bm3d_outputs, load_images


def _pillow_decoding(path, channels: int, luma: bool) -> np.ndarray:
    """What load_images returned when it decoded with Pillow itself: the reference for ordinary
    8-bit files."""
    with Image.open(path) as image:
        if channels == 3:
            array = np.asarray(image.convert("RGB"))
        elif luma and image.mode not in ("L", "I;16", "I"):
            array = np.round(rgb_to_y(np.asarray(image.convert("RGB")) / 255.0) * 255).astype(np.uint8)
        else:
            array = np.asarray(image.convert("L"))
    return array[..., None] if array.ndim == 2 else array


@pytest.fixture(scope="module")
def ordinary_images(tmp_path_factory):
    """8-bit PNG and JPEG training images of every common mode: grey, colour, colour with
    alpha, palette (with a transparent entry), in a folder."""
    folder = tmp_path_factory.mktemp("ordinary")
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:40, 0:48]
    smooth = np.stack([(rows * 5 + cols * 2) % 256, (cols * 5) % 256, (rows * 3 + 60) % 256], axis=2)
    colour = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
    grey = colour[:, :, 1]
    Image.fromarray(grey).save(folder / "grey.png")
    Image.fromarray(colour).save(folder / "colour.png")
    alpha = rng.integers(0, 256, grey.shape, np.uint8)
    Image.fromarray(np.dstack([colour, alpha])).save(folder / "alpha.png")
    Image.fromarray(colour).quantize(colors=16).save(folder / "palette.png", transparency=0)
    Image.fromarray(grey).save(folder / "grey.jpg", quality=85)
    Image.fromarray(colour).save(folder / "colour.jpg", quality=85)
    return folder


@pytest.mark.parametrize(("channels", "luma"), [(1, False), (1, True), (3, False)])
def test_ordinary_8bit_images_load_as_they_did_with_pillow(ordinary_images, channels, luma):
    paths = sorted(ordinary_images.iterdir())
    loaded = load_images([ordinary_images], channels, luma=luma)
    assert len(loaded) == len(paths) == 6
    for path, image in zip(paths, loaded, strict=True):
        expected = _pillow_decoding(path, channels, luma)
        assert image.dtype == np.uint8 and image.shape == expected.shape, path.name
        np.testing.assert_array_equal(image, expected, err_msg=path.name)


def test_16bit_images_are_rounded_to_8_bits_and_turned_upright(tmp_path):
    grey = np.random.default_rng(1).integers(0, 65536, (6, 8), dtype=np.uint16)
    grey[0, :4] = [65535, 257, 128, 129]  # 255, 1, 0 (0.498), 1 (0.502)
    Image.fromarray(grey).save(tmp_path / "a_grey16.png")
    colour = np.random.default_rng(2).integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "b_colour16.png"), np.ascontiguousarray(colour[:, :, ::-1]))
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise
    upright = np.zeros((4, 10), np.uint8)
    upright[0, 0] = 255  # top left as stored
    Image.fromarray(upright).save(tmp_path / "c_turned.png", exif=exif)

    grey8, colour8, turned = load_images([tmp_path], 1)
    np.testing.assert_array_equal(grey8[:, :, 0], np.round(grey / 257).astype(np.uint8))
    assert grey8[0, :4, 0].tolist() == [255, 1, 0, 1]
    expected = np.asarray(Image.fromarray(np.round(colour / 257).astype(np.uint8)).convert("L"))
    np.testing.assert_array_equal(colour8[:, :, 0], expected)
    assert turned.shape == (10, 4, 1) and turned[0, 3, 0] == 255  # now top right
    colour_rgb = load_images([tmp_path], 3)[1]
    np.testing.assert_array_equal(colour_rgb, np.round(colour / 257).astype(np.uint8))


def test_an_unreadable_training_image_is_one_line_naming_it(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(FormnetError) as caught:
        load_images([tmp_path], 1)
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot read this training image (truncated or corrupt PNG")
    assert message.endswith("; move it out of the data folder") and "\n" not in message
    assert message.count(str(bad)) == 1


def test_caches_are_written_atomically_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(training_data, "bm3d_denoise", lambda image, sigma: image * 0.5)
    images = [np.full((12, 12, 1), 100, np.uint8), np.full((24, 12, 1), 200, np.uint8)]
    outputs = bm3d_outputs(images, [25.0], seed=3, cache_dir=tmp_path / "bm3d")
    assert len(list((tmp_path / "bm3d").iterdir())) == 2  # the two .npz files, nothing else
    again = bm3d_outputs(images, [25.0], seed=3, cache_dir=tmp_path / "bm3d")
    for key, (noisy, formatted) in outputs.items():
        np.testing.assert_array_equal(formatted, noisy * np.float32(0.5))
        np.testing.assert_array_equal(again[key][1], formatted)
    pairs = bicubic_pairs(images, [2, 3], tmp_path / "bicubic")
    assert sorted(path.suffix for path in (tmp_path / "bicubic").iterdir()) == [".npy"] * 4
    cached = bicubic_pairs(images, [2, 3], tmp_path / "bicubic")
    for first, second in zip(pairs, cached, strict=True):
        assert first.keys() == second.keys() == {2, 3}
        for scale in (2, 3):
            np.testing.assert_array_equal(first[scale], second[scale])
