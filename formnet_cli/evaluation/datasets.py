"""Evaluation data sets: folders of clean images, found by path or by name under a data root.

Gray sets are read as gray and colour sets as RGB; the protocol's JPEG sets use the gray
(Pillow ``L``) version of colour images (``channels="gray"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from formnet_cli.errors import InvalidOptionError

__all__ = ["ChannelMode", "convert_channels", "default_data_root", "read_dataset", "resolve_dataset"]

ChannelMode = Literal["auto", "gray", "color"]
"""``auto`` (as stored), ``gray`` (Pillow ``L``) or ``color`` (RGB)."""


def default_data_root() -> Path:
    """``$FORMNET_DATA``, else ``../shared/data`` (the project's shared data folder)."""
    return Path(os.environ.get("FORMNET_DATA", "../shared/data"))


def resolve_dataset(dataset: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None) -> Path:
    """A data set folder: the path itself when it exists, else ``data_root / dataset``."""
    path = Path(dataset)
    if path.is_dir():
        return path
    candidate = Path(data_root) / dataset if data_root is not None else default_data_root() / dataset
    if candidate.is_dir():
        return candidate
    raise InvalidOptionError(f"data set {dataset!s} not found (looked in {path} and {candidate}; "
                             "set --data-root or FORMNET_DATA)")


def read_dataset(folder: str | os.PathLike[str], *, channels: ChannelMode = "auto",
                 limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 H x W x C)`` for the images of a folder, sorted by name (hidden files
    left out). Each file's header is checked before it is decoded (the pixel limit, the memory,
    the data it holds); an unreadable image is one :class:`ImageReadError` line naming it.

    ``channels``: ``auto`` keeps each file's own gray or color, ``gray`` converts color with
    Pillow's ``L`` (the protocol's gray version), ``color`` repeats gray into RGB.
    """
    from formnet_cli.io import is_image_path, read_image, to_uint

    if channels not in ("auto", "gray", "color"):
        raise InvalidOptionError(f"channels must be auto, gray or color, got {channels!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidOptionError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.iterdir()  # hidden files (macOS's ._photo.png) left out
                   if p.is_file() and is_image_path(p) and not p.name.startswith("."))
    if not paths:
        raise InvalidOptionError(f"{folder}: no images found")
    if limit is not None:
        paths = paths[: max(int(limit), 0)]
    images = []
    for path in paths:
        pixels = to_uint(read_image(path).pixels, 8)
        images.append((path.stem, convert_channels(pixels, channels)))
    return images


def convert_channels(image: np.ndarray, channels: ChannelMode) -> np.ndarray:
    """uint8 ``H x W x C`` to gray (Pillow ``L``, ITU-R 601 luma) or RGB, or unchanged (``auto``)."""
    if channels == "gray" and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image, "RGB").convert("L"))[:, :, None]
    if channels == "color" and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image
