"""Accuracy of the white-noise estimate behind ``--sigma auto`` on BSD68 (gray) and CBSD68 (colour).

Noise made as the benchmark protocol makes it (``add_gaussian_noise``, seed 0 per image), and
with ``--clip`` also clipped and rounded to 8 bits, as a saved file is. Runs
``estimate_noise_level_function`` (what ``--sigma auto`` runs) and prints, per set and sigma:
mean estimate, mean and worst absolute error, how many images are off by more than 2, how many
it reads as noise that varies with brightness (white noise should be none: those images would
get a sigma map), and the mean time per image.

    python benchmarks/noise_estimation.py [--data ../shared/data] [--sigmas 5 15 25 50 75]
        [--sets BSD68 CBSD68] [--clip]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from formnet_cli.imaging.degradations import add_gaussian_noise
from formnet_cli.imaging.estimation import estimate_noise_level_function
from formnet_cli.evaluation.protocol import to_uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sigmas", type=float, nargs="+", default=[5, 15, 25, 50, 75])
    parser.add_argument("--tolerance", type=float, default=2.0)
    parser.add_argument("--sets", nargs="+", default=["BSD68", "CBSD68"], choices=["BSD68", "CBSD68"])
    parser.add_argument("--clip", action="store_true", help="clip and round the noisy images to 8 bits")
    args = parser.parse_args()

    print(
        "| set | sigma | mean estimate | mean abs error | worst abs error "
        f"| images off by > {args.tolerance:g} | read as varying | s / image |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for set_name, mode in (("BSD68", "L"), ("CBSD68", "RGB")):
        if set_name not in args.sets:
            continue
        suffixes = {".png", ".bmp", ".jpg", ".tif"}
        paths = sorted(p for p in (args.data / set_name).iterdir() if p.suffix.lower() in suffixes)
        cleans = [np.asarray(Image.open(p).convert(mode), dtype=np.float64) / 255.0 for p in paths]
        for sigma in args.sigmas:
            estimates, varying, seconds = [], 0, 0.0
            for clean in cleans:
                noisy = add_gaussian_noise(clean, sigma, seed=0)
                if args.clip:
                    noisy = to_uint8(noisy) / 255.0
                start = time.perf_counter()
                function = estimate_noise_level_function(noisy)
                seconds += time.perf_counter() - start
                estimates.append(function.sigma)
                varying += function.varies
            errors = np.abs(np.array(estimates) - sigma)
            print(
                f"| {set_name} ({len(paths)}) | {sigma:g} | {np.mean(estimates):.2f} | {errors.mean():.2f} | "
                f"{errors.max():.2f} | {int(np.sum(errors > args.tolerance))} | {varying} "
                f"| {seconds / len(paths):.3f} |"
            )


if __name__ == "__main__":
    main()
