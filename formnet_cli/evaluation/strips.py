"""Comparison strips for people: ``formnet compare`` and the images ``formnet eval --save-images``
writes (labelled panels side by side, with a zoom on the most detailed region)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from formnet_cli.errors import InvalidOptionError
from formnet_cli.evaluation.methods import Method
from formnet_cli.evaluation.protocol import Sample, score, to_uint8
from formnet_cli.evaluation.report import format_psnr

__all__ = ["STRIP_GAP", "compare_strip", "detail_window", "save_degraded", "save_outputs",
           "strip_width", "write_png"]

STRIP_GAP = 8
"""Pixels between panels (and around them) in a comparison strip."""
_LABEL_HEIGHT = 14
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_MARK = (255, 64, 64)


def strip_width(panel_width: int, panels: int) -> int:
    """Width in pixels of a strip of ``panels`` panels each ``panel_width`` wide."""
    return panels * panel_width + (panels + 1) * STRIP_GAP


def detail_window(clean: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side x side`` window with the most gradient energy.

    Energy is the sum of squared finite differences of the gray image, summed over the window
    with an integral image, so the search is exhaustive and ``O(H W)``.
    """
    gray = np.asarray(clean, dtype=np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    height, width = gray.shape
    side = min(side, height, width)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.diff(gray, axis=1) ** 2
    energy[1:, :] += np.diff(gray, axis=0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
            + integral[:-side, :-side])
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def _as_rgb8(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Any float [0, 1] or uint8 image as uint8 RGB of ``shape`` (nearest-neighbour resize)."""
    array = np.asarray(image)
    array = to_uint8(array) if array.dtype != np.uint8 else array
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[:2] != tuple(shape):
        array = np.asarray(Image.fromarray(array).resize((shape[1], shape[0]), Image.NEAREST))
    return array


def compare_strip(panels: Sequence[tuple[str, np.ndarray]], *, detail_from: np.ndarray | None = None,
                  crop: int | None = None) -> np.ndarray:
    """A labelled side-by-side strip with a zoomed crop of each panel underneath (uint8 RGB).

    ``panels`` are ``(label, image)`` pairs, float [0, 1] or uint8, ``H x W`` or ``H x W x C``;
    all are shown at the size of the largest panel (smaller ones, such as an SR input, are
    enlarged with nearest-neighbour). The zoomed window is where ``detail_from`` (default:
    the last panel, normally the clean image) has the most gradient energy; it is marked
    with a red box on every panel.

    >>> strip = compare_strip([("a", np.zeros((32, 40))), ("b", np.ones((32, 40)))])
    >>> strip.shape[1] == strip_width(40, 2)
    True
    """
    if not panels:
        raise InvalidOptionError("nothing to compare")
    reference = np.asarray(panels[-1][1])
    height, width = max((np.shape(image)[:2] for _, image in panels), key=lambda size: size[0] * size[1])
    images = [_as_rgb8(image, (height, width)) for _, image in panels]
    side = crop or max(8, min(height, width) // 4)
    side = min(side, height, width)
    top, left = detail_window(_as_rgb8(detail_from if detail_from is not None else reference,
                                       (height, width)), side)
    zoom = max(1, width // side)
    zoomed_side = side * zoom
    count = len(images)
    canvas_height = STRIP_GAP + _LABEL_HEIGHT + height + STRIP_GAP + zoomed_side + STRIP_GAP
    canvas = Image.new("RGB", (strip_width(width, count), canvas_height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, ((label, _), image) in enumerate(zip(panels, images)):
        x = STRIP_GAP + index * (width + STRIP_GAP)
        y = STRIP_GAP + _LABEL_HEIGHT
        draw.text((x, STRIP_GAP - 1), label, fill=_TEXT, font=font)
        canvas.paste(Image.fromarray(image), (x, y))
        draw.rectangle([x + left, y + top, x + left + side - 1, y + top + side - 1], outline=_MARK)
        detail = Image.fromarray(image[top:top + side, left:left + side]).resize(
            (zoomed_side, zoomed_side), Image.NEAREST)
        canvas.paste(detail, (x, y + height + STRIP_GAP))
    return np.asarray(canvas)


def write_png(path: Path, image: np.ndarray) -> None:
    """A float [0, 1] or uint8 image as a PNG (atomically), its folder made if needed."""
    from formnet_cli.io import LoadedImage, write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(image)
    pixels = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else np.clip(pixels, 0, 1)
    write_image(path, LoadedImage(pixels))


def _method_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")


def save_degraded(root: Path, sample: Sample) -> None:
    """``root/<setting>/<image>_degraded.png``: the method's input, as 8 bits."""
    folder = root / sample.setting.slug
    write_png(folder / f"{sample.name}_degraded.png", to_uint8(sample.degraded))


def save_outputs(root: Path, sample: Sample, method: Method, label: str, restored: np.ndarray) -> None:
    """``root/<setting>/<image>_<method>.png`` (the restored image, as 8 bits) and its
    ``_strip.png``: input, formatted (FormResNet), restored with its PSNR, clean."""
    folder = root / sample.setting.slug
    slug = _method_slug(label)
    restored8 = to_uint8(restored)
    write_png(folder / f"{sample.name}_{slug}.png", restored8)
    value_psnr, _ = score(sample, restored)
    degraded_label = "input (LR, enlarged)" if sample.setting.task == "sr" else "input"
    panels: list[tuple[str, np.ndarray]] = [(f"{degraded_label} {sample.setting.label}", sample.degraded)]
    formatted = method.formatted(sample)
    if formatted is not None:
        panels.append(("formatted", formatted))
    panels.append((f"{label} {format_psnr(value_psnr)} dB", restored8))
    panels.append(("clean", sample.clean))
    write_png(folder / f"{sample.name}_{slug}_strip.png", compare_strip(panels))
