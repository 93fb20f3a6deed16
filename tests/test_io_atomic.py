"""Atomic writes (formnet_cli.io.atomic): a failed write leaves the old file and no temporary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from formnet_cli.errors import ImageWriteError
from formnet_cli.io import LoadedImage, write_image


def failing_save(exception: BaseException):
    def save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise exception

    return save

@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, exception):
    monkeypatch.setattr(Image.Image, "save", failing_save(exception))
    image = LoadedImage(np.zeros((4, 4, 3), np.float32))
    expected = ImageWriteError if isinstance(exception, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_image(tmp_path / "out.png", image)
    assert list(tmp_path.iterdir()) == []

def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, LoadedImage(np.zeros((4, 4, 3), np.float32)))
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", failing_save(ValueError("encoder broke")))
    with pytest.raises(ImageWriteError, match="cannot encode as PNG"):
        write_image(target, LoadedImage(np.ones((4, 4, 3), np.float32)))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]

def test_successful_write_leaves_no_temporary_file(tmp_path):
    write_image(tmp_path / "out.tif", LoadedImage(np.zeros((4, 4, 3), np.float32), bit_depth=16))
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
