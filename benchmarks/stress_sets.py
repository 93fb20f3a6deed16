"""Stress sets: seeded images unlike the training photos, for measuring (never for training or
choosing checkpoints).

    python benchmarks/stress_sets.py --out /tmp/stress            # every set
    python benchmarks/stress_sets.py --out /tmp/stress --sets color-saturated,gray-text

Each set is a folder of 8-bit PNGs, ``SIZE x SIZE`` (256 by default), made from a fixed seed, so
that anyone rebuilds the same pixels. Colour sets come from CBSD68 crops recoloured (saturation
boosted, channels permuted, hues rotated), from scikit-image's bundled colour photos, and from
synthetic saturated charts and textures; gray sets are rendered text, line art, screen-like
graphics, high-contrast patterns, very dark and very bright crops of BSD68 and Set12, and
scikit-image's gray photos and textures. CBSD68, BSD68 and Set12 are benchmark sets (the models
never saw them); scikit-image's images are neither training nor benchmark images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LUMA = np.array([0.299, 0.587, 0.114])
SIZE = 256
PER_SET = 6


def _crops(folder: Path, count: int, rng: np.random.Generator, mode: str) -> list[np.ndarray]:
    """``count`` random ``SIZE`` crops of distinct images of ``folder`` (sorted names)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp", ".tif"))
    chosen = rng.choice(len(paths), size=count, replace=False)
    crops = []
    for index in chosen:
        with Image.open(paths[index]) as image:
            array = np.asarray(image.convert(mode))
        top = int(rng.integers(array.shape[0] - SIZE + 1)) if array.shape[0] > SIZE else 0
        left = int(rng.integers(array.shape[1] - SIZE + 1)) if array.shape[1] > SIZE else 0
        crops.append(array[top:top + SIZE, left:left + SIZE])
    return crops


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _saturate(rgb: np.ndarray, factor: float) -> np.ndarray:
    grey = (rgb @ LUMA)[..., None]
    return grey + factor * (rgb - grey)


def _hue_rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    axis = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(axis, axis)
    return rgb @ rotation.T


# -- colour sets -----------------------------------------------------------------------------
def color_saturated(rng: np.random.Generator) -> list[np.ndarray]:
    return [_to_uint8(_saturate(c / 255.0, rng.uniform(2.0, 3.0)))
            for c in _crops(DATA / "CBSD68", PER_SET, rng, "RGB")]


def color_permuted(rng: np.random.Generator) -> list[np.ndarray]:
    permutations = [(1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)]
    return [c[..., list(permutations[int(rng.integers(len(permutations)))])]
            for c in _crops(DATA / "CBSD68", PER_SET, rng, "RGB")]


def color_hue(rng: np.random.Generator) -> list[np.ndarray]:
    return [_to_uint8(_saturate(_hue_rotate(c / 255.0, rng.uniform(0.5, 2 * np.pi - 0.5)), 1.5))
            for c in _crops(DATA / "CBSD68", PER_SET, rng, "RGB")]


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated RGB colour: one channel high, one low, one anywhere."""
    colour = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.2), rng.uniform(0.0, 1.0)])
    return colour[rng.permutation(3)]


def color_charts(rng: np.random.Generator) -> list[np.ndarray]:
    """Grids of saturated patches, each with a faint grating of its own (fine texture)."""
    images = []
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    for _ in range(PER_SET):
        cells = int(rng.choice([4, 6, 8]))
        cell = SIZE // cells
        image = np.zeros((SIZE, SIZE, 3))
        for row in range(cells):
            for column in range(cells):
                window = (slice(row * cell, (row + 1) * cell), slice(column * cell, (column + 1) * cell))
                period, angle = rng.uniform(3, 9), rng.uniform(0, np.pi)
                grating = 0.08 * np.sin(2 * np.pi * (x[window] * np.cos(angle) + y[window] * np.sin(angle)) / period)
                image[window] = _saturated_colour(rng) * (1 + grating[..., None]) - 0.02
        images.append(_to_uint8(image))
    return images


def color_textures(rng: np.random.Generator) -> list[np.ndarray]:
    """Stained glass (saturated Voronoi cells with grain, dark leading) and woven fabric."""
    images = []
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    for index in range(PER_SET):
        if index % 2 == 0:
            seeds = rng.uniform(0, SIZE, size=(int(rng.integers(12, 30)), 2))
            distance = np.sqrt((y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2)
            order = np.sort(distance, axis=2)
            label = np.argmin(distance, axis=2)
            colours = np.stack([_saturated_colour(rng) for _ in seeds])
            grain = rng.normal(0, 1, (SIZE // 4, SIZE // 4))
            grain = np.kron(grain, np.ones((4, 4)))  # coarse grain, smoothed below
            grain = (grain + np.roll(grain, 2, 0) + np.roll(grain, 2, 1)) / 3 * 0.06
            image = colours[label] * (1 + grain[..., None])
            leading = (order[..., 1] - order[..., 0]) < 2.5
            image[leading] = 0.08
        else:
            warp, weft = _saturated_colour(rng), _saturated_colour(rng)
            period = rng.uniform(4, 8)
            over = (np.floor(x / period) + np.floor(y / period)) % 2 == 0
            thread = 0.5 + 0.5 * np.cos(np.pi * ((x % period) / period - 0.5)) ** 2
            image = np.where(over[..., None], warp, weft) * (0.6 + 0.4 * thread[..., None])
        images.append(_to_uint8(image))
    return images


def color_photos(rng: np.random.Generator) -> list[np.ndarray]:
    """Centre crops of scikit-image's colour photos (bundled with the package)."""
    import skimage.data

    names = ["coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel"]
    images = []
    for name in names:
        image = getattr(skimage.data, name)()[..., :3]
        top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
        images.append(np.ascontiguousarray(image[max(top, 0):max(top, 0) + SIZE, max(left, 0):max(left, 0) + SIZE]))
    return images


# -- gray sets -------------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def gray_text(rng: np.random.Generator) -> list[np.ndarray]:
    """Printed text: black on white (and white on dark), several sizes; scikit-image's page scan."""
    import skimage.data

    words = ("restoration formatted residual learning archive scan photograph denoise texture "
             "quality 0123456789 The quick brown fox jumps over the lazy dog").split()
    images = []
    for index in range(PER_SET - 1):
        background, ink = (255, 0) if index % 2 == 0 else (40, 230)
        canvas = Image.new("L", (SIZE, SIZE), background)
        draw = ImageDraw.Draw(canvas)
        size = int(rng.choice([9, 11, 14, 18, 24]))
        for line in range(0, SIZE, int(size * 1.4)):
            text = " ".join(rng.choice(words, size=8))
            draw.text((2, line), text, fill=ink, font=_font(size))
        images.append(np.asarray(canvas))
    page = skimage.data.page()
    images.append(np.pad(page, ((0, max(0, SIZE - page.shape[0])), (0, 0)), mode="edge")[:SIZE, :SIZE])
    return images


def gray_lineart(rng: np.random.Generator) -> list[np.ndarray]:
    """Line drawings: strokes, circles and hatching, black on white."""
    images = []
    for _ in range(PER_SET):
        canvas = Image.new("L", (SIZE, SIZE), 255)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(15, 40))):
            kind = rng.integers(3)
            box = sorted(rng.integers(0, SIZE, 2)), sorted(rng.integers(0, SIZE, 2))
            width = int(rng.integers(1, 4))
            if kind == 0:
                draw.line([tuple(rng.integers(0, SIZE, 2)), tuple(rng.integers(0, SIZE, 2))], fill=0, width=width)
            elif kind == 1:
                draw.ellipse([box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1], outline=0, width=width)
            else:
                step = int(rng.integers(3, 8))
                for offset in range(box[0][0], box[0][1], step):
                    draw.line([(offset, box[1][0]), (offset + 10, box[1][1])], fill=0, width=1)
        images.append(np.asarray(canvas))
    return images


def gray_screens(rng: np.random.Generator) -> list[np.ndarray]:
    """Screenshot-like graphics: flat panels, buttons with labels, a gradient bar, thin rules."""
    images = []
    for _ in range(PER_SET):
        canvas = Image.new("L", (SIZE, SIZE), int(rng.integers(200, 250)))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(4, 9))):
            x0, y0 = rng.integers(0, SIZE - 40, 2)
            x1, y1 = x0 + rng.integers(30, 120), y0 + rng.integers(14, 40)
            draw.rectangle([int(x0), int(y0), int(x1), int(y1)], fill=int(rng.integers(60, 220)),
                           outline=int(rng.integers(0, 80)))
            draw.text((int(x0) + 3, int(y0) + 2), "OK Cancel File"[int(rng.integers(0, 8)):], fill=0, font=_font(11))
        gradient = np.tile(np.linspace(0, 255, SIZE), (12, 1))
        array = np.asarray(canvas).copy()
        array[SIZE - 14:SIZE - 2] = gradient
        array[::32, :] = 128
        images.append(array)
    return images


def gray_graphics(rng: np.random.Generator) -> list[np.ndarray]:
    """High-contrast patterns: checkerboards, bars, a Siemens star, concentric rings."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) - SIZE / 2
    images = []
    for index in range(PER_SET):
        kind = index % 3
        if kind == 0:
            period = int(rng.integers(4, 24))
            image = ((np.floor((x + SIZE) / period) + np.floor((y + SIZE) / period)) % 2)
        elif kind == 1:
            spokes = int(rng.integers(12, 40))
            image = (np.sin(spokes * np.arctan2(y, x)) > 0).astype(np.float64)
        else:
            period = rng.uniform(6, 16)
            image = (np.sin(2 * np.pi * np.hypot(x, y) / period) > 0).astype(np.float64)
        images.append(_to_uint8(0.05 + 0.9 * image))
    return images


def _gray_photo_crops(rng: np.random.Generator) -> list[np.ndarray]:
    half = PER_SET // 2
    return _crops(DATA / "BSD68", PER_SET - half, rng, "L") + _crops(DATA / "Set12", half, rng, "L")


def gray_dark(rng: np.random.Generator) -> list[np.ndarray]:
    """Photos exposed very dark: BSD68/Set12 crops mapped into [0, 40]."""
    return [np.round(c / 255.0 * 40).astype(np.uint8) for c in _gray_photo_crops(rng)]


def gray_bright(rng: np.random.Generator) -> list[np.ndarray]:
    """Photos exposed very bright: BSD68/Set12 crops mapped into [215, 255]."""
    return [np.round(215 + c / 255.0 * 40).astype(np.uint8) for c in _gray_photo_crops(rng)]


def gray_photos(rng: np.random.Generator) -> list[np.ndarray]:
    """scikit-image's gray photos and textures (bundled with the package)."""
    import skimage.data

    images = []
    for name in ["camera", "moon", "coins", "brick", "grass", "gravel"]:
        image = getattr(skimage.data, name)()
        top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
        images.append(np.ascontiguousarray(image[top:top + SIZE, left:left + SIZE]))
    return images


SETS: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
    "color-saturated": color_saturated, "color-permuted": color_permuted, "color-hue": color_hue,
    "color-charts": color_charts, "color-textures": color_textures, "color-photos": color_photos,
    "gray-text": gray_text, "gray-lineart": gray_lineart, "gray-screens": gray_screens,
    "gray-graphics": gray_graphics, "gray-dark": gray_dark, "gray-bright": gray_bright,
    "gray-photos": gray_photos,
}


def make_sets(out: Path, names: list[str], seed: int = 0) -> None:
    """Write each named set into ``out/<name>/`` (00.png, 01.png, ...)."""
    for offset, name in enumerate(SETS):
        if name not in names:
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(SETS[name](np.random.default_rng([seed, offset]))):
            Image.fromarray(image).save(folder / f"{index:02d}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = args.sets.split(",")
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown sets: {', '.join(unknown)}; known: {', '.join(SETS)}")
    make_sets(args.out, names, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
