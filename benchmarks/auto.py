"""The default ``formnet restore in -o out`` (``--task auto``, no level) on phone-like photos and
clean JPEGs, against the input, the best task or chain chosen by hand with the true levels,
DnCNN-3 (blind) and BM3D / CBM3D at the estimated sigma.

    python benchmarks/auto.py                         # 4 crops of 128 px per set, 1 thread
    python benchmarks/auto.py --limit 8 --crop 192    # more, slower

Sets, made (seeded) from the shared evaluation sets (``--data-root``, default ``../shared/data``):
the first ``--limit`` images of CBSD68 (colour) and of BSD68 and Set12 (gray), each cropped
to ``--crop`` pixels at a seeded place, then

- **phone photos**: camera noise, Poisson-Gaussian in linear light and written as 8-bit sRGB
  (:func:`formnet_cli.imaging.degradations.add_camera_noise`, variance ``shot x + read^2``), at
  three ISO-like levels (``--iso``: a bright day, indoors, a dim room), then saved as a JPEG
  file at a seeded quality in 60-95 (Pillow, 4:2:0 in colour);
- **clean JPEGs**: the crop saved as a JPEG file at quality 10, 20, 30 and 40.

Methods, PSNR against the clean crop (8-bit, whole image):

- ``input``: the decoded JPEG;
- ``auto``: ``formnet restore <folder of the JPEG files> -o <folder> --ext png --threads 1``,
  the command line itself, in a subprocess: no task, no level (``--ext png`` so that the
  output is scored, not a JPEG re-encoding of it);
- by hand, with the true levels: ``jpeg`` (the quality it was saved at), ``denoise`` (the
  noise's true per-pixel sigma, as ``benchmarks/camera_noise.py``), ``jpeg, then denoise``;
  ``best by hand`` is the one of these with the highest mean over the set;
- ``DnCNN-3``: the published blind model (gray; on Y, Cb and Cr of a colour image), from
  ``--peers-root`` (default ``../shared/peers``);
- ``BM3D`` (CBM3D in colour) at the sigma :func:`formnet_cli.imaging.estimation.estimate_noise_sigma`
  reads on the decoded JPEG.

The bars (issue 22): ``auto`` gains >= 1 dB over the input on clean JPEGs of quality <= 30 and
>= 3 dB on the phone-photo sets, and is within 0.2 dB of the best by hand.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from formnet_cli import api
from formnet_cli.evaluation.datasets import read_dataset
from formnet_cli.evaluation.peers import dncnn_path, load_dncnn
from formnet_cli.imaging import degradations
from formnet_cli.imaging.degradations import add_camera_noise
from formnet_cli.imaging.estimation import estimate_noise_sigma
from formnet_cli.imaging.metrics import psnr
from formnet_cli.inference import engine
from formnet_cli.models.formresnet import bm3d_denoise

ISO = {"ISO 200": (0.001, 1.0), "ISO 1600": (0.006, 2.5), "ISO 6400": (0.02, 4.0)}
"""(shot, read on the 0-255 scale) of each ISO-like level."""
CLEAN_QUALITIES = (10, 20, 30, 40)


@dataclass
class Case:
    """One degraded image: its JPEG file and what made it."""

    name: str
    clean: np.ndarray
    data: bytes
    quality: int
    sigma_map: np.ndarray | None
    """The noise's true per-pixel sigma on the 0-255 scale (``None``: no noise)."""

    @property
    def decoded(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.data)) as image:
            pixels = np.asarray(image.convert("L" if self.clean.shape[2] == 1 else "RGB"))
        return pixels.reshape(self.clean.shape)


@dataclass
class SetResult:
    label: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)

    def add(self, method: str, value: float) -> None:
        self.scores.setdefault(method, []).append(value)

    def mean(self, method: str) -> float:
        return float(np.mean(self.scores[method])) if self.scores.get(method) else float("nan")


BY_HAND = ("jpeg", "denoise", "jpeg, then denoise")


def crops(folder: Path, channels: str, limit: int, side: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = []
    for name, image in read_dataset(folder, channels=channels, limit=limit):
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        images.append((name, np.ascontiguousarray(image[top:top + side, left:left + side])))
    return images


def jpeg_file(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(
        buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def phone_cases(images: list[tuple[str, np.ndarray]], seed: int, iso: list[str]) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for index, (name, clean) in enumerate(images):
        for level in iso:
            shot, read = ISO[level]
            noisy, sigma = add_camera_noise(clean, shot, read / 255.0, "srgb", seed=index)
            quality = int(rng.integers(60, 96))
            noisy8 = np.round(noisy * 255.0).astype(np.uint8).reshape(clean.shape)
            cases.append(Case(f"{Path(name).stem}_{level.replace(' ', '')}_q{quality}", clean,
                              jpeg_file(noisy8, quality), quality, sigma * 255.0))
    return cases


def clean_jpeg_cases(images: list[tuple[str, np.ndarray]]) -> list[Case]:
    return [Case(f"{Path(name).stem}_q{quality}", clean, jpeg_file(clean, quality), quality, None)
            for name, clean in images for quality in CLEAN_QUALITIES]


def run_auto(cases: list[Case], work: Path) -> tuple[dict[str, np.ndarray], dict[str, str], float]:
    """The command line on a folder of the cases' JPEG files: outputs, tasks, seconds."""
    inputs, outputs = work / "in", work / "out"
    inputs.mkdir()
    for case in cases:
        (inputs / f"{case.name}.jpg").write_bytes(case.data)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "formnet_cli", "restore", str(inputs), "-o", str(outputs),
         "--ext", "png", "--threads", "1", "--device", "cpu", "--json"],
        capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    tasks = {Path(entry["input"]).stem: entry["task"] for entry in json.loads(completed.stdout)["files"]}
    restored = {}
    for case in cases:
        with Image.open(outputs / f"{case.name}.png") as image:
            restored[case.name] = np.asarray(image).reshape(case.clean.shape)
    return restored, tasks, seconds


class ByHand:
    """The tasks chosen by hand at the true levels, with the default models."""

    def __init__(self) -> None:
        self.denoisers = {channels: api.load_model(task="denoise", channels=channels, device="cpu")
                          for channels in (1, 3)}

    def jpeg(self, case: Case, pixels: np.ndarray) -> np.ndarray:
        return api.restore(pixels, "jpeg", quality=case.quality, device="cpu")

    def denoise(self, case: Case, pixels: np.ndarray) -> np.ndarray:
        if case.sigma_map is None:
            return pixels
        loaded = self.denoisers[pixels.shape[2]]
        level = torch.from_numpy(np.clip(case.sigma_map, 0.0, 75.0)[None].astype(np.float32) / 255.0)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / 255.0)
        out = engine.restore_tensor(loaded.model, tensor, level,
                                    ensemble=api.ensemble_passes("auto", loaded))
        return to_uint8(out.numpy().transpose(1, 2, 0))


class DnCNN3:
    """The blind DnCNN-3: on the gray image, or on each of Y, Cb and Cr."""

    def __init__(self, peers: Path) -> None:
        path = dncnn_path(peers, "jpeg", 1)
        self.network = load_dncnn(path) if path is not None else None

    def __call__(self, pixels: np.ndarray) -> np.ndarray | None:
        if self.network is None:
            return None
        image = pixels.astype(np.float32) / 255.0
        planes = degradations.rgb_to_ycbcr(image).astype(np.float32) if image.shape[2] == 3 else image
        with torch.inference_mode():
            restored = np.concatenate([
                self.network(torch.from_numpy(np.ascontiguousarray(planes[None, None, :, :, index])))[0]
                .numpy().transpose(1, 2, 0) for index in range(planes.shape[2])], axis=2)
        if image.shape[2] == 3:
            restored = degradations.ycbcr_to_rgb(restored)
        return to_uint8(restored)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def score_set(label: str, cases: list[Case], by_hand: ByHand, dncnn: DnCNN3,
              bm3d: bool) -> tuple[SetResult, float]:
    result = SetResult(label)
    with tempfile.TemporaryDirectory() as work:
        restored, tasks, seconds = run_auto(cases, Path(work))
    for case in cases:
        decoded = case.decoded
        score = lambda image: psnr(case.clean, image)  # noqa: E731
        result.add("input", score(decoded))
        result.add("auto", score(restored[case.name]))
        result.steps[tasks[case.name]] = result.steps.get(tasks[case.name], 0) + 1
        deblocked = by_hand.jpeg(case, decoded)
        result.add("jpeg", score(deblocked))
        if case.sigma_map is not None:
            result.add("denoise", score(by_hand.denoise(case, decoded)))
            result.add("jpeg, then denoise", score(by_hand.denoise(case, deblocked)))
        peer = dncnn(decoded)
        if peer is not None:
            result.add("DnCNN-3", score(peer))
        if bm3d:
            sigma = estimate_noise_sigma(decoded.astype(np.float32) / 255.0)
            result.add("BM3D (est. sigma)", score(to_uint8(
                bm3d_denoise(decoded.astype(np.float64) / 255.0, sigma / 255.0))))
    return result, seconds


def table(results: list[SetResult]) -> list[str]:
    lines = ["| set | images | input | auto | auto - input | best by hand | auto - best "
             "| DnCNN-3 | BM3D (est. sigma) | auto's steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        hand = {method: result.mean(method) for method in BY_HAND if result.scores.get(method)}
        best = max(hand, key=hand.get)
        auto, source = result.mean("auto"), result.mean("input")
        steps = ", ".join(f"{task} {count}" for task, count in sorted(result.steps.items()))
        lines.append(f"| {result.label} | {len(result.scores['auto'])} | {source:.2f} | {auto:.2f} "
                     f"| {auto - source:+.2f} | {hand[best]:.2f} ({best}) | {auto - hand[best]:+.2f} "
                     f"| {_cell(result.mean('DnCNN-3'))} | {_cell(result.mean('BM3D (est. sigma)'))} "
                     f"| {steps} |")
    return lines


def _cell(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--peers-root", type=Path, default=None,
                        help="folder with DnCNN3.mat (default: peers/ beside the data root)")
    parser.add_argument("--limit", type=int, default=4, help="images per set")
    parser.add_argument("--crop", type=int, default=128, help="side of the crop, in pixels")
    parser.add_argument("--iso", default=",".join(ISO), help=f"levels among {', '.join(ISO)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bm3d", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    iso = [level.strip() for level in args.iso.split(",")]
    by_hand = ByHand()
    dncnn = DnCNN3(args.peers_root or args.data_root.parent / "peers")
    sets = [("CBSD68", "color", "colour"), ("BSD68", "gray", "gray"), ("Set12", "gray", "gray")]
    results, seconds, count = [], 0.0, 0
    for folder, channels, kind in sets:
        images = crops(args.data_root / folder, channels, args.limit, args.crop, args.seed)
        for label, cases in ((f"{folder} phone photos ({kind})", phone_cases(images, args.seed, iso)),
                             (f"{folder} clean JPEG q10-40 ({kind})", clean_jpeg_cases(images))):
            result, elapsed = score_set(label, cases, by_hand, dncnn, not args.no_bm3d)
            results.append(result)
            seconds, count = seconds + elapsed, count + len(cases)
            print(table([result])[-1], flush=True)
    print()
    print(f"{args.limit} images per set, {args.crop} px crops (seed {args.seed}), ISO levels "
          f"{', '.join(f'{level} = {ISO[level]}' for level in iso)}; one CPU thread; `auto` "
          f"ran {count} files in {seconds:.0f} s (the command's wall time, model loading included)")
    print()
    for line in table(results):
        print(line)
    by_quality = {quality: [] for quality in CLEAN_QUALITIES}
    print()
    print("Clean JPEGs by quality (all sets): input -> auto")
    for result in results:
        if "clean JPEG" in result.label:
            for index, quality in enumerate(CLEAN_QUALITIES * (len(result.scores["auto"]) // len(CLEAN_QUALITIES))):
                by_quality[quality].append((result.scores["input"][index], result.scores["auto"][index]))
    for quality, pairs in by_quality.items():
        before, after = np.mean([pair[0] for pair in pairs]), np.mean([pair[1] for pair in pairs])
        print(f"- q{quality}: {before:.2f} -> {after:.2f} ({after - before:+.2f} dB)")


if __name__ == "__main__":
    main()
