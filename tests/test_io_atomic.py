"""Atomic writes (formnet_cli.io.atomic): a failed write leaves the old file and no temporary."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest
from PIL import Image

from formnet_cli.errors import ImageWriteError
from formnet_cli.io import LoadedImage, write_atomically, write_image


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


def _listing_while_writing(folder):
    """A ``write`` callback for :func:`write_atomically` that writes ``new`` and records the
    folder's names while the file is open (the temporary file among them)."""
    seen = []

    def write(handle):
        handle.write(b"new")
        seen.extend(path.name for path in folder.iterdir())

    return write, seen


@pytest.mark.parametrize("name", ["state.pt", "L" * 251 + ".png"])  # 255 bytes: the longest name
def test_the_temporary_file_is_hidden_beside_the_target_and_its_name_fits(tmp_path, name):
    write, seen = _listing_while_writing(tmp_path)
    write_atomically(tmp_path / name, write)
    [temporary] = [entry for entry in seen if entry != name]
    assert temporary.startswith(".") and temporary.endswith(".part")
    assert temporary[1:].startswith(name[:200]) and len(os.fsencode(temporary)) <= 255
    assert [path.name for path in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == b"new"


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     KeyboardInterrupt(), ValueError("encoder broke")])
def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, failure):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old contents")

    def write(handle):
        handle.write(b"half of the new cont")
        handle.flush()
        raise failure

    with pytest.raises(type(failure)) as caught:
        write_atomically(target, write)
    assert caught.value is failure  # as it came: a full disk keeps its errno (ENOSPC)
    assert target.read_bytes() == b"old contents"
    assert [path.name for path in tmp_path.iterdir()] == ["model.safetensors"]


def test_the_file_is_on_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda *a: calls.append("replace") or real_replace(*a))
    write_atomically(str(tmp_path / "out.bin"), lambda handle: handle.write(b"\n\r\n\x00"))
    assert calls == ["fsync", "replace"]
    assert (tmp_path / "out.bin").read_bytes() == b"\n\r\n\x00"  # bytes as written, no newline translation


def test_a_new_file_gets_the_mode_of_any_new_file(tmp_path):
    previous = os.umask(0o027)
    try:
        write_atomically(tmp_path / "shared.png", lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "shared.png").stat().st_mode) == 0o640  # 0o666 less the umask


# -- the writers that use it ----------------------------------------------------------------


def _tiny_model():
    from formnet_cli.config import ModelConfig, NetworkConfig
    from formnet_cli.models import FormResNet

    return FormResNet(ModelConfig(residual=NetworkConfig(kind="plain", widths=(4,), depth=3, unshuffle=1)))


def test_a_checkpoint_is_written_atomically_as_safetensors_writes_it(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from formnet_cli.hub import checkpoint

    model = _tiny_model()
    previous = os.umask(0o022)
    try:
        folder = checkpoint.save_checkpoint(model, tmp_path / "m", "m", card="# m ✓\n")
    finally:
        os.umask(previous)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, tmp_path / "ref")
    assert (folder / "model.safetensors").read_bytes() == (tmp_path / "ref").read_bytes()
    assert (folder / "README.md").read_text(encoding="utf-8") == "# m ✓\n"
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {
        "model.safetensors": 0o644, "config.json": 0o644, "README.md": 0o644}  # shareable, not 0o600
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    def disk_full(tensors):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save", disk_full)
    with pytest.raises(OSError) as caught:
        checkpoint.save_checkpoint(_tiny_model(), folder, "m2")
    assert caught.value.errno == errno.ENOSPC
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_a_failed_training_state_save_keeps_the_state_to_resume_from(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import torch

    from formnet_cli.training.trainer import STATE_FILE, Trainer

    run = SimpleNamespace(run_dir=tmp_path, state_dict=lambda: {"step": 7, "weights": torch.ones(3)})
    Trainer.save_state(run)
    saved = (tmp_path / STATE_FILE).read_bytes()
    assert torch.load(tmp_path / STATE_FILE, weights_only=True)["step"] == 7

    def disk_full_half_way(state, handle):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_half_way)
    with pytest.raises(OSError, match="No space left"):
        Trainer.save_state(run)
    assert (tmp_path / STATE_FILE).read_bytes() == saved
    assert [path.name for path in tmp_path.iterdir()] == [STATE_FILE]
