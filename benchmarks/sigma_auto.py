"""``--sigma auto`` end to end: the estimate, and what restoring with it costs against the true sigma.

    python benchmarks/sigma_auto.py --data ../shared/data/BSD68 --sigmas 15,25,50 [--limit N] [--clip]

Noise follows ``../shared/BENCHMARK.md`` (RandomState(0) per image, not clipped; with ``--clip``
the noisy image is clipped to [0, 1] and rounded to 8 bits, as a saved file is). For each sigma:
mean and worst absolute error of the estimate, and the mean PSNR of the default denoiser run with
the true sigma and with ``sigma='auto'`` (through :func:`formnet_cli.api.restore_with_info`), and
how many images ``sigma='auto'`` gave a per-pixel sigma map (white noise: it should be none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from formnet_cli import api
from formnet_cli.imaging.degradations import add_gaussian_noise
from formnet_cli.evaluation.protocol import to_uint8
from formnet_cli.io import is_image_path
from formnet_cli.imaging.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/BSD68"))
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--color", action="store_true", help="read the images as RGB (default gray)")
    parser.add_argument("--clip", action="store_true", help="clip and round the noisy images to 8 bits")
    args = parser.parse_args()
    paths = sorted(p for p in args.data.iterdir() if is_image_path(p))[: args.limit or None]
    print(f"{args.data.name}, {len(paths)} images{', 8-bit (clipped)' if args.clip else ''}")
    print("| sigma | mean estimate | mean abs error | worst abs error | PSNR true sigma | PSNR auto "
          "| cost (dB) | sigma maps |")
    print("|---|---|---|---|---|---|---|---|")
    for sigma in (float(s) for s in args.sigmas.split(",")):
        errors, true_scores, auto_scores, estimates, maps = [], [], [], [], 0
        for path in paths:
            with Image.open(path) as image:
                clean = np.asarray(image.convert("RGB" if args.color else "L"))
            noisy = add_gaussian_noise(clean / 255.0, sigma, seed=0)
            if args.clip:
                noisy = to_uint8(noisy) / 255.0
            known = api.restore(noisy, "denoise", sigma=sigma, device="cpu")
            auto = api.restore_with_info(noisy, "denoise", sigma="auto", device="cpu")
            estimates.append(auto.sigma)
            maps += auto.sigma_map_range is not None
            errors.append(abs(auto.sigma - sigma))
            true_scores.append(psnr(clean, to_uint8(known)))
            auto_scores.append(psnr(clean, to_uint8(auto.image)))
        cost = np.mean(true_scores) - np.mean(auto_scores)
        print(f"| {sigma:g} | {np.mean(estimates):.2f} | {np.mean(errors):.2f} | {np.max(errors):.2f} | "
              f"{np.mean(true_scores):.3f} | {np.mean(auto_scores):.3f} | {cost:.3f} | {maps} |", flush=True)


if __name__ == "__main__":
    main()
