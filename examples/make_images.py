"""Make ``examples/images/``: a small image set for a first ``formnet eval`` and ``formnet
train``, with no download (the standard sets are in the README, "Data sets").

``train/`` (8 images, 96 x 96) and ``test/`` (4 images, 128 x 128), gray and colour mixed:
crops of ``examples/astronaut.png`` (NASA, public domain; the training crops from its top 192
rows, the test crops from the rows below, so that they do not overlap) and seeded synthetic
scenes (smooth gradients, flat shapes with sharp edges, fine stripes: what denoisers must keep
apart from noise). Seeded and pure numpy and Pillow, so that the same files come out anywhere::

    python examples/make_images.py              # writes examples/images/{train,test}/
    python examples/make_images.py --out DIR    # elsewhere

The set is committed; ``tests/test_example_images.py`` checks that this script makes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "astronaut.png"
TRAIN_CROPS = [(0, 0), (0, 112), (0, 224), (96, 0), (96, 112), (96, 224)]
"""Top-left corners of the 96 x 96 training crops (rows 0-191 of the photo)."""
TEST_CROPS = [(192, 16), (192, 176)]
"""Top-left corners of the 128 x 128 test crops (rows 192-319)."""


def scene(seed: int, size: int) -> np.ndarray:
    """A synthetic ``size x size`` RGB scene (uint8): a gradient, flat shapes, stripes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / size
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.random() * np.pi
    ramp = (np.cos(angle) * rows + np.sin(angle) * cols + 1) / 2
    image = start + (end - start) * ramp[..., None]
    for _ in range(5):
        centre, radius = rng.random(2), 0.1 + 0.25 * rng.random(2)
        colour = rng.integers(0, 256, 3)
        if rng.random() < 0.5:  # an ellipse
            distance = ((rows - centre[0]) / radius[0]) ** 2 + ((cols - centre[1]) / radius[1]) ** 2
            inside = distance <= 1
        else:  # a rectangle
            inside = (abs(rows - centre[0]) <= radius[0]) & (abs(cols - centre[1]) <= radius[1] / 2)
        image[inside] = colour
    top, left = rng.integers(0, size // 2, 2)
    period = 3 + rng.integers(0, 4)
    stripes = (np.arange(size // 3) // (period // 2 + 1)) % 2 * 96 - 48
    patch = image[top:top + size // 3, left:left + size // 3]
    patch += stripes[: patch.shape[1]][None, :, None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def as_mode(pixels: np.ndarray, gray: bool) -> Image.Image:
    """An RGB uint8 array as a Pillow image, converted to gray (Pillow ``L``) where asked."""
    image = Image.fromarray(pixels, "RGB")
    return image.convert("L") if gray else image


def make_images(out: Path) -> list[Path]:
    """Write the set under ``out`` (``train/``, ``test/``); returns the files written."""
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    images: dict[str, Image.Image] = {}
    for index, (top, left) in enumerate(TRAIN_CROPS):
        crop = photo[top:top + 96, left:left + 96]
        images[f"train/astronaut{index}.png"] = as_mode(crop, gray=index % 2 == 0)
    for index in range(2):
        images[f"train/scene{index}.png"] = as_mode(scene(index, 96), gray=index % 2 == 1)
    for index, (top, left) in enumerate(TEST_CROPS):
        crop = photo[top:top + 128, left:left + 128]
        images[f"test/astronaut{index}.png"] = as_mode(crop, gray=index % 2 == 1)
    for index in range(2):
        images[f"test/scene{index}.png"] = as_mode(scene(100 + index, 128), gray=index % 2 == 0)
    written = []
    for name, image in images.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "images",
                        help="folder to write (default: examples/images)")
    for path in make_images(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
