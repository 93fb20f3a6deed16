"""``formnet compare`` and the comparison strips (formnet_cli.evaluation.strips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from formnet_cli.cli.app import app
from formnet_cli.evaluation.strips import compare_strip, detail_window, strip_width

runner = CliRunner()


def test_compare_strip_width(tmp_path: Path, textured_image) -> None:
    clean = textured_image(1)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    paths = []
    for name, image in (("noisy", noisy), ("restored", clean), ("clean", clean)):
        Image.fromarray(image[:, :, 0], "L").save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    target = tmp_path / "side.png"
    result = runner.invoke(app, ["compare", *map(str, paths[:2]), "--reference", str(paths[2]),
                                 "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    strip = Image.open(target)
    assert strip.width == strip_width(48, 3) and strip.mode == "RGB"


def test_compare_strip_shows_every_panel_at_the_largest_size() -> None:
    small, large = np.zeros((16, 20), np.uint8), np.full((32, 40), 255, np.uint8)
    strip = compare_strip([("x2 output", large), ("input", small)])  # the small one last
    assert strip.shape[1] == strip_width(40, 2)


def test_detail_window_finds_texture(textured_image) -> None:
    image = textured_image(0, (64, 64))
    top, left = detail_window(image, 16)
    assert 4 <= top <= 12 and 16 <= left <= 24  # the textured square at rows 8-24, cols 20-36


def test_compare_refuses_to_overwrite_an_input(tmp_path: Path, textured_image) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(textured_image(1)[:, :, 0], "L").save(path)
    before = path.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(path)
    for target in (path, link):  # the same file under another name, too
        result = runner.invoke(app, ["compare", str(path), "-o", str(target)])
        assert result.exit_code == 2 and "would overwrite an input" in result.stderr
    assert path.read_bytes() == before
