"""Regenerate the reference outputs of the bundled models (after retraining them on purpose).

    python tests/data/make_reference_outputs.py

Inputs are 64 x 64 crops of examples/astronaut.png (public domain), degraded with the
benchmark protocol; outputs are what the bundled models make of them through formnet_cli.restore.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from formnet_cli import restore
from formnet_cli.imaging.degradations import add_gaussian_noise, imresize, jpeg_compress

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """name -> (clean uint8, degraded input, restore keyword arguments)."""
    photo = np.asarray(Image.open(ROOT / "examples" / "astronaut.png").convert("RGB"))
    color = photo[100:164, 120:184]
    gray = np.asarray(Image.fromarray(color).convert("L"))
    low = imresize(gray / 255.0, 0.5)
    return {
        "denoise-gray": (gray, add_gaussian_noise(gray / 255.0, 25, seed=0), dict(task="denoise", sigma=25)),
        "denoise-color": (color, add_gaussian_noise(color / 255.0, 25, seed=0), dict(task="denoise", sigma=25)),
        "jpeg-gray": (gray, jpeg_compress(gray, 20), dict(task="jpeg", quality=20)),
        "sr-y": (gray, np.clip(low, 0, 1).astype(np.float32), dict(task="sr", scale=2)),
    }


if __name__ == "__main__":
    for name, (clean, degraded, options) in cases().items():
        output = restore(degraded, device="cpu", **options)
        if output.dtype != np.uint8:
            output = np.round(np.clip(output, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(np.squeeze(output)).save(HERE / f"{name}.expected.png")
        print(name, output.shape)
