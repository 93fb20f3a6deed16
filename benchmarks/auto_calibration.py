"""What the thresholds of ``--task auto`` (:mod:`formnet_cli.auto`) rest on.

    python benchmarks/auto_calibration.py --part readings    # blockiness and noise readings (seconds)
    python benchmarks/auto_calibration.py --part gains       # PSNR of each choice (minutes)
    python benchmarks/auto_calibration.py --source train --limit 24 --color   # training crops
    python benchmarks/auto_calibration.py --part texture --source train --limit 16   # noise past texture
    python benchmarks/auto_calibration.py --part ceiling --source train --color --hides 0.4,0.6,0.8

Made images only, never the benchmark sets: seeded crops (``--crop`` pixels a side) of
scikit-image's sample photos (astronaut, coffee, chelsea, rocket, camera, coins, brick,
gravel, immunohistochemistry), or with ``--source train`` of the first ``--limit`` images of
the training sets (``--data-root``: Train400 for gray, CBSD432 for colour, whose files are
JPEGs of quality 95, below what :data:`formnet_cli.auto.BLOCKY` and the JPEG step take for
compressed), gray and colour, degraded with the
protocol's own functions (:mod:`formnet_cli.imaging.degradations`): white noise of small
sigma, camera noise (Poisson-Gaussian in linear light, saved as 8-bit sRGB) at the
``(shot, read)`` pairs below, and Pillow JPEG (4:2:0 in colour).

``readings`` prints, per degradation, the lowest / median / highest over the images of the
blockiness (:func:`formnet_cli.imaging.blockiness.jpeg_blockiness`) and of the mean sigma
:func:`formnet_cli.auto.measure_noise` reads (as a JPEG file of that quality where there is
one, else as a decoded image), next to the true one. ``gains`` prints the mean PSNR of the
input and of each choice auto could make, with the bundled models: nothing, denoise at the
noise read, the JPEG step (at the file's quality), the JPEG step then denoise at the noise
read after it, and what auto chose. ``texture`` takes the JPEG files of camera noise below
quality :data:`formnet_cli.auto.FINE_QUALITY` and, grouped by their texture ratio (below 2, from
2 to :data:`formnet_cli.auto.TEXTURE_RATIO`, above), prints the mean PSNR of the JPEG step alone and of the
JPEG step then denoising at: the noise read at half resolution after it, the noise read at full
resolution on the file, the true sigma. ``ceiling`` takes the JPEG files (clean and of camera
noise) below :data:`formnet_cli.auto.FINE_QUALITY` and prints, per degradation, how far the
half-resolution reading of the noisy ones exceeds :data:`formnet_cli.auto.FULL_READING_FACTOR`
times the full-resolution reading, in mean steps of the file's luminance table (what
:data:`formnet_cli.auto.QUANTISATION_HIDES` rests on), and the mean and worst PSNR of auto with
and without that cap.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks.auto import crops, jpeg_file  # noqa: E402
from formnet_cli import api, auto  # noqa: E402
from formnet_cli.imaging.degradations import add_camera_noise, add_gaussian_noise  # noqa: E402
from formnet_cli.imaging.metrics import psnr  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "gravel",
          "immunohistochemistry")
CAMERA = ((0.001, 1.0), (0.004, 2.0), (0.012, 3.0), (0.03, 4.0))
"""(shot, read on the 0-255 scale): ISO-like levels, from a bright day to a dim room."""


def made_images(crop: int, color: bool, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """A seeded ``crop x crop`` crop of each sample photo, as gray or colour uint8."""
    from skimage import data

    rng = np.random.default_rng(seed)
    images = []
    for name in PHOTOS:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        top = int(rng.integers(0, photo.shape[0] - crop + 1))
        left = int(rng.integers(0, photo.shape[1] - crop + 1))
        pixels = photo[top:top + crop, left:left + crop, :3]
        if not color:
            pixels = np.round(pixels @ np.array([0.299, 0.587, 0.114]))[:, :, None].astype(np.uint8)
        images.append((name, np.ascontiguousarray(pixels)))
    return images


def decoded(data: bytes, channels: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def degradations(clean: np.ndarray, seed: int, only: tuple[str, ...] = ()
                 ) -> list[tuple[str, np.ndarray, bytes | None, float]]:
    """``(label, degraded uint8, JPEG file bytes or None, true mean sigma)`` of one image (those
    whose label starts with one of ``only``, if given)."""
    cases: list[tuple[str, np.ndarray, bytes | None, float]] = [("clean", clean, None, 0.0)]
    for sigma in (1.0, 2.0, 3.0, 5.0):
        noisy = add_gaussian_noise(clean / 255.0, sigma, seed=seed)
        cases.append((f"white {sigma:g}", _to_uint8(noisy), None, sigma))
    for quality in (10, 30, 50, 70, 85, 90, 95):
        data = jpeg_file(clean, quality)
        cases.append((f"jpeg q{quality}", decoded(data, clean.shape[2]), data, 0.0))
    for shot, read in CAMERA:
        noisy, sigma_map = add_camera_noise(clean, shot, read / 255.0, "srgb", seed=seed)
        noisy8 = _to_uint8(noisy)
        true = float(sigma_map.mean() * 255.0)
        cases.append((f"camera {shot:g}/{read:g}", noisy8, None, true))
        for quality in (60, 80, 95):
            data = jpeg_file(noisy8, quality)
            cases.append((f"camera {shot:g}/{read:g} q{quality}", decoded(data, clean.shape[2]),
                          data, true))
    return [case for case in cases if not only or case[0].startswith(only)]


def readings(images: list[tuple[str, np.ndarray]], only: tuple[str, ...]) -> None:
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {}
    decided: dict[str, dict[str, int]] = {}
    for index, (_name, clean) in enumerate(images):
        for label, pixels, data, true in degradations(clean, index, only):
            floats = pixels.astype(np.float32) / 255.0
            compression = auto.examine(floats, data)
            reading = auto.measure_noise(floats, compression)
            as_decoded = auto.measure_noise(floats, auto.Compression(None, compression.blockiness))
            ratio = reading.texture_ratio if reading and reading.texture_ratio else np.nan
            rows.setdefault(label, []).append((compression.blockiness, reading.mean if reading else np.nan,
                                               ratio, as_decoded.mean if as_decoded else np.nan, true))
            noisy = auto.is_noisy(reading, compression)
            steps = ",".join(name for name, done in (("jpeg", auto.jpeg_step(compression, noisy)),
                                                     ("denoise", noisy)) if done) or "none"
            decided.setdefault(label, {}).setdefault(steps, 0)
            decided[label][steps] += 1
    print("| degradation | blockiness (min / median / max) | sigma read (as its file) "
          "| texture ratio | sigma read (decoded, no file) | true sigma | auto decides |")
    print("|---|---|---|---|---|---|---|")
    for label, values in rows.items():
        columns = np.array(values).T
        steps = ", ".join(f"{name} {count}" for name, count in sorted(decided[label].items()))
        print(f"| {label} | {_spread(columns[0], 2)} | {_spread(columns[1], 1)} "
              f"| {_spread(columns[2], 1)} | {_spread(columns[3], 1)} | {np.mean(columns[4]):.1f} "
              f"| {steps} |", flush=True)


def gains(images: list[tuple[str, np.ndarray]], only: tuple[str, ...]) -> None:
    print("| degradation | input | denoise (sigma read) | jpeg | jpeg, then denoise (read after) "
          "| auto | auto's steps |")
    print("|---|---|---|---|---|---|---|")
    rows: dict[str, list[list[float]]] = {}
    chosen: dict[str, dict[str, int]] = {}
    for index, (_name, clean) in enumerate(images):
        for label, pixels, data, _true in degradations(clean, index, only):
            score = lambda restored: psnr(clean, restored)  # noqa: E731
            floats = pixels.astype(np.float32) / 255.0
            compression = auto.examine(floats, data)
            reading = auto.measure_noise(floats, compression)
            scores = [score(pixels), np.nan, np.nan, np.nan]
            if reading is not None and reading.mean > 0.3:
                scores[1] = score(api.restore(pixels, "denoise", sigma=min(reading.mean, 75.0),
                                              device="cpu"))
            if data is not None or compression.blockiness >= auto.BLOCKY:
                quality = compression.file_quality or "blind"
                quality = min(quality, 95) if quality != "blind" else quality
                deblocked = api.restore(pixels, "jpeg", quality=quality, device="cpu")
                scores[2] = score(deblocked)
                after = auto.measure_noise(deblocked.astype(np.float32) / 255.0, compression)
                if after is not None and after.mean > 0.3:
                    scores[3] = score(api.restore(deblocked, "denoise",
                                                  sigma=min(after.mean, 75.0), device="cpu"))
            result = api.restore_with_info(pixels, source_path=data, device="cpu")
            rows.setdefault(label, []).append([*scores, score(result.image)])
            steps = chosen.setdefault(label, {})
            steps[result.task] = steps.get(result.task, 0) + 1
    for label, values in rows.items():
        means = np.nanmean(np.array(values, dtype=np.float64), axis=0)
        cells = " | ".join("-" if np.isnan(mean) else f"{mean:.2f}" for mean in means)
        steps = ", ".join(f"{task} {count}" for task, count in sorted(chosen[label].items()))
        print(f"| {label} | {cells} | {steps} |", flush=True)


def texture(images: list[tuple[str, np.ndarray]], only: tuple[str, ...]) -> None:
    print("| texture ratio | files | jpeg | then denoise: half resolution, after | "
          "full resolution, before | true sigma |")
    print("|---|---|---|---|---|---|")
    bins = {"< 2": 2.0, f"2 to {auto.TEXTURE_RATIO:g}": auto.TEXTURE_RATIO,
            f">= {auto.TEXTURE_RATIO:g}": np.inf}  # the upper end of each
    groups: dict[str, list[list[float]]] = {label: [] for label in bins}
    for index, (_name, clean) in enumerate(images):
        for label, pixels, data, true in degradations(clean, index, only or ("camera",)):
            floats = pixels.astype(np.float32) / 255.0
            compression = auto.examine(floats, data)
            if data is None or compression.file_quality >= auto.FINE_QUALITY:
                continue
            half = auto.measure_noise(floats, compression, past_texture=False)
            full = auto.measure_noise(floats, auto.Compression(None, 1.0))
            if half is None or full is None:
                continue
            deblocked = api.restore(pixels, "jpeg", quality=compression.file_quality, device="cpu")
            after = auto.measure_noise(deblocked.astype(np.float32) / 255.0, compression,
                                       past_texture=False)
            scores = [psnr(clean, deblocked)]
            for sigma in (after.mean if after else half.mean, full.mean, true):
                scores.append(psnr(clean, api.restore(deblocked, "denoise", sigma=min(sigma, 75.0),
                                                      device="cpu")))
            ratio = half.texture_ratio or 0.0
            groups[next(label for label, upper in bins.items() if ratio < upper)].append(scores)
    for label, rows in groups.items():
        if rows:
            means = " | ".join(f"{mean:.2f}" for mean in np.mean(rows, axis=0))
            print(f"| {label} | {len(rows)} | {means} |", flush=True)


def ceiling(images: list[tuple[str, np.ndarray]], only: tuple[str, ...],
            hides: tuple[float, ...] = (auto.QUANTISATION_HIDES,)) -> None:
    from formnet_cli.imaging import estimation
    from formnet_cli.io.jpeg_quality import luminance_table

    labels = [f"auto, cap {value:g}" for value in hides]
    print("| degradation | files | half - factor x full, in steps (median / 95th pct / max) "
          "| auto without the cap | " + " | ".join(labels) + " | "
          + " | ".join(f"worst file: {label} - without" for label in labels) + " |")
    print("|---|---|---|---|" + "---|" * 2 * len(hides))
    chosen = auto.QUANTISATION_HIDES
    rows: dict[str, list[list[float]]] = {}
    for index, (_name, clean) in enumerate(images):
        for label, pixels, data, _true in degradations(clean, index, only):
            floats = pixels.astype(np.float32) / 255.0
            compression = auto.examine(floats, data)
            if data is None or compression.file_quality >= auto.FINE_QUALITY:
                continue
            plane = floats @ auto.LUMA if clean.shape[2] == 3 else floats
            try:
                half = estimation.estimate_coarse_noise_level_function(plane).sigma
                full = estimation.estimate_noise_level_function(plane).sigma
            except estimation.TooSmallToMeasure:
                continue
            step = float(luminance_table(compression.file_quality).mean())
            scores = [(half - auto.FULL_READING_FACTOR * full) / step]
            for value in (float("inf"), *hides):
                auto.QUANTISATION_HIDES = value
                restored = api.restore_with_info(pixels, source_path=data, device="cpu").image
                scores.append(psnr(clean, restored))
            auto.QUANTISATION_HIDES = chosen
            rows.setdefault(label, []).append(scores)
    for label, values in rows.items():
        excess, without, *capped = np.array(values).T
        spread = " / ".join(f"{value:.2f}" for value in np.percentile(excess, [50, 95, 100]))
        print(f"| {label} | {len(values)} | {spread if label.startswith('camera') else '-'} "
              f"| {without.mean():.2f} | " + " | ".join(f"{each.mean():.2f}" for each in capped)
              + " | " + " | ".join(f"{np.min(each - without):+.2f}" for each in capped) + " |",
              flush=True)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def _spread(values: np.ndarray, digits: int) -> str:
    if np.isnan(values).all():
        return "-"
    return " / ".join(f"{value:.{digits}f}" for value in
                      (np.nanmin(values), np.nanmedian(values), np.nanmax(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("readings", "gains", "texture", "ceiling"),
                        default="readings")
    parser.add_argument("--color", action="store_true", help="colour images (default gray)")
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--limit", type=int, default=0,
                        help="only the first N photos (--source train: default 24)")
    parser.add_argument("--source", choices=("skimage", "train"), default="skimage")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--only", default="",
                        help="comma-separated starts of the degradations to run (e.g. 'clean,jpeg q30')")
    parser.add_argument("--hides", default=str(auto.QUANTISATION_HIDES),
                        help="--part ceiling: comma-separated values of QUANTISATION_HIDES to compare")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.source == "train":
        images = crops(args.data_root / ("CBSD432" if args.color else "Train400"),
                       "color" if args.color else "gray", args.limit or 24, args.crop, seed=0)
    else:
        images = made_images(args.crop, args.color)[:args.limit or None]
    print(f"{len(images)} made images ({args.source}), {args.crop} px, "
          f"{'colour' if args.color else 'gray'}")
    only = tuple(args.only.split(",")) if args.only else ()
    if args.part == "ceiling":
        ceiling(images, only, tuple(float(value) for value in args.hides.split(",")))
        return
    parts = {"readings": readings, "gains": gains, "texture": texture}
    parts[args.part](images, only)


if __name__ == "__main__":
    main()
