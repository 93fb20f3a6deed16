"""``formnet restore`` through standard input and standard output (``-``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import restore, runner
from formnet_cli.batch import plan as batch_plan
from formnet_cli.batch import run as batch_run
from formnet_cli.batch.plan import BatchOptions
from formnet_cli.cli.app import app
from formnet_cli.errors import ImageWriteError
from formnet_cli import io as imageio


def test_standard_input_to_standard_output_keeps_the_input_format(tiny_models, tmp_path, gray_png):
    as_file = tmp_path / "as_file.png"
    assert restore(tiny_models.denoise_gray, gray_png, "-o", as_file, "--sigma", "25").exit_code == 0
    result = runner.invoke(app, ["restore", "-", "-o", "-", "--sigma", "25", "--model",
                                 str(tiny_models.denoise_gray), "--device", "cpu"],
                           input=gray_png.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\x89PNG")  # the image alone: the summary is on stderr
    assert "restored 1" in result.stderr
    written = imageio.read_image_bytes(result.stdout_bytes, "stdout")
    np.testing.assert_array_equal(written.pixels, imageio.read_image(as_file).pixels)


def test_file_to_standard_output_in_the_format_ext_names(tiny_models, gray_png):
    result = restore(tiny_models.denoise_gray, gray_png, "-o", "-", "--ext", "jpg", "--sigma", "25")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\xff\xd8")  # JPEG
    assert imageio.read_image_bytes(result.stdout_bytes, "stdout").pixels.shape == (20, 28, 1)


def test_standard_input_to_a_file_estimates_the_jpeg_quality(tiny_models, tmp_path, random_image):
    buffer = io.BytesIO()
    Image.fromarray(random_image((16, 24), np.uint8)).save(buffer, format="JPEG", quality=37)
    output = tmp_path / "out" / "clean.tif"
    result = runner.invoke(app, ["restore", "-", "-o", str(output), "--task", "jpeg", "--quality",
                                 "auto", "--model", str(tiny_models.jpeg_gray), "--device", "cpu"],
                           input=buffer.getvalue())
    assert result.exit_code == 0, result.stderr
    assert "-: estimated quality 37" in result.stderr  # read from the bytes, as from a file
    with Image.open(output) as image:
        assert image.format == "TIFF" and image.size == (24, 16)


@pytest.mark.parametrize("arguments, message", [
    (["-", "{png}", "-o", "{tmp}/out/"], "takes one image"),
    (["-", "-o", "{tmp}/out/"], "needs an output file"),
    (["{tmp}", "-o", "-"], "writes one image to standard output"),
    (["{png}", "-o", "-", "--json"], "--json and -o - would both write to standard output"),
])
def test_standard_streams_misused_are_usage_errors(tiny_models, tmp_path, gray_png, arguments, message):
    arguments = [arg.format(png=gray_png, tmp=tmp_path) for arg in arguments]
    result = restore(tiny_models.denoise_gray, *arguments, "--sigma", "25")
    assert result.exit_code == 2 and message in result.stderr
    assert result.stdout_bytes == b""


def test_empty_standard_input_fails_that_file(tiny_models):
    result = restore(tiny_models.denoise_gray, "-", "-o", "-", "--sigma", "25")
    assert result.exit_code == 1
    assert "failed: -: nothing on standard input (0 bytes)" in result.stderr
    assert result.stdout_bytes == b""


def test_image_data_is_not_written_to_or_read_from_a_terminal(monkeypatch):
    from formnet_cli.cli.app import _check_standard_streams
    from formnet_cli.errors import InvalidOptionError

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    with pytest.raises(InvalidOptionError, match="standard output is a terminal"):
        _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=False)
    _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=True)  # writes none
    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(InvalidOptionError, match="standard input, which is a terminal"):
        _check_standard_streams([Path("-")], "out.png", json_output=False, list_only=False)
    monkeypatch.setattr(sys, "stdout", None)  # started with >&-
    with pytest.raises(InvalidOptionError, match="standard output is closed"):
        _check_standard_streams([Path("a.png")], "-", json_output=False, list_only=False)


def test_a_full_disk_behind_standard_output_fails_that_file_in_one_line(monkeypatch):
    import errno
    import types

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=types.SimpleNamespace(write=full)))
    page = imageio.LoadedImage(np.zeros((4, 4, 1), np.float32))
    with pytest.raises(ImageWriteError, match=r"cannot write to standard output \(No space left"):
        batch_run._write_output(batch_plan.Job(Path("a.png"), batch_plan.STREAM), [page], BatchOptions(),
                                ".png")
