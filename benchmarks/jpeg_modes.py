"""JPEG restoration with the quality known, blind, and in color.

    python benchmarks/jpeg_modes.py --data ../shared/data/Classic5 [--color] [--limit N]

Each image (gray ``L``, or RGB with ``--color``: Pillow's 4:2:0 encoder) is compressed at
q 10 / 20 / 30 / 40 and restored by the default JPEG model with the quality given and blind
(``quality=None``: no level, the model's blind mode). PSNR on uint8 against the clean image,
over all pixels and channels, as ``../shared/BENCHMARK.md`` says.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from formnet_cli import api
from formnet_cli.imaging.degradations import jpeg_compress
from formnet_cli.io import is_image_path
from formnet_cli.imaging.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/Classic5"))
    parser.add_argument("--qualities", default="10,20,30,40")
    parser.add_argument("--color", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    paths = sorted(p for p in args.data.iterdir() if is_image_path(p))[: args.limit or None]
    mode = "RGB" if args.color else "L"
    print(f"{args.data.name} ({mode}), {len(paths)} images; PSNR (dB)")
    print("| q | JPEG input | formnet, quality given | formnet, blind |")
    print("|---|---|---|---|")
    for quality in (int(q) for q in args.qualities.split(",")):
        scores: dict[str, list[float]] = {"input": [], "given": [], "blind": []}
        for path in paths:
            with Image.open(path) as image:
                clean = np.asarray(image.convert(mode))
            compressed = jpeg_compress(clean, quality)
            scores["input"].append(psnr(clean, compressed))
            scores["given"].append(psnr(clean, api.restore(compressed, "jpeg", quality=quality, device="cpu")))
            scores["blind"].append(psnr(clean, api.restore(compressed, "jpeg", quality="blind", device="cpu")))
        print(f"| {quality} | {np.mean(scores['input']):.2f} | {np.mean(scores['given']):.2f} | "
              f"{np.mean(scores['blind']):.2f} |", flush=True)


if __name__ == "__main__":
    main()
