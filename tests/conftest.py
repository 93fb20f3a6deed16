"""Shared fixtures: tiny checkpoint folders and small image files.

The tiny models are randomly initialised FormResNets saved with
:func:`formnet_cli.hub.checkpoint.save_checkpoint`: real checkpoints in the trained format, good
for testing loading, routing, tiling and file handling (not restoration quality). They live
in temporary folders and are never shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


_TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")
"""Variables that make rich draw colour and live progress into a captured stream (a CI runner
may set them); the tests compare formnet's plain one-line messages."""


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _TERMINAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class TinyModels:
    """Checkpoint folders of tiny untrained models, one per (task, channels) the tests use."""

    denoise_gray: Path
    denoise_color: Path
    jpeg_gray: Path
    sr_gray: Path


def _save_tiny(folder: Path, task: str, channels: int, kind: str, seed: int) -> Path:
    import torch

    from formnet_cli.hub.checkpoint import save_checkpoint
    from formnet_cli.config import ModelConfig, NetworkConfig
    from formnet_cli.models import FormResNet

    if kind == "unet":  # size_multiple 4: exercises the engine's padding
        network = NetworkConfig(kind="unet", widths=(4, 8), blocks_per_level=1, unshuffle=2)
    else:
        network = NetworkConfig(kind="plain", widths=(4,), depth=3, unshuffle=1)
    torch.manual_seed(seed)
    model = FormResNet(ModelConfig(task=task, channels=channels, residual=network))
    name = folder.name
    return save_checkpoint(model, folder, name, card=f"# {name}\n\nTiny untrained test model.\n",
                           description="tiny untrained test model")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny gray denoise, color denoise, gray jpeg and gray sr checkpoints (session-wide)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return TinyModels(
        denoise_gray=_save_tiny(root / "tiny-denoise-gray", "denoise", 1, "unet", 0),
        denoise_color=_save_tiny(root / "tiny-denoise-color", "denoise", 3, "plain", 1),
        jpeg_gray=_save_tiny(root / "tiny-jpeg-gray", "jpeg", 1, "plain", 2),
        sr_gray=_save_tiny(root / "tiny-sr-gray", "sr", 1, "plain", 3),
    )


@pytest.fixture
def random_image():
    """``random_image(shape, dtype=np.uint8, seed=0)``: a reproducible random image."""
    return _random_image


@pytest.fixture
def write_png():
    """``write_png(path, uint8 pixels) -> path``: a PNG written with Pillow (test setup)."""
    return _write_png


@pytest.fixture
def gray_png(tmp_path: Path) -> Path:
    """A 28 x 20 random gray PNG, ``in/photo.png`` under the test's folder."""
    return _write_png(tmp_path / "in" / "photo.png", _random_image((20, 28), np.uint8))


def _random_image(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """A reproducible random image of ``shape`` and ``dtype`` (integers span the full range)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write a uint8 (H x W or H x W x 3/4) array as a PNG (test setup, not the code under test)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def textured_image():
    """``textured_image(seed, size=(40, 48), color=False)``: a uint8 ramp with a noisy square at
    rows 8-24, columns 20-36 (a clear region of detail), ``H x W x C``."""
    return _textured_image


def _textured_image(seed: int, size: tuple[int, int] = (40, 48), color: bool = False) -> np.ndarray:
    height, width = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, width)[None, :] + np.linspace(0, 30, height)[:, None]
    image = np.repeat(ramp[:, :, None], 3 if color else 1, axis=2)
    image[8:24, 20:36] += rng.normal(0, 40, (16, 16, image.shape[2]))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def cpu_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 on the CPU whatever this machine has: for tests of logic, not speed."""
    from formnet_cli.inference import device

    monkeypatch.setattr(device, "cpu_has_fast", lambda dtype: True)
