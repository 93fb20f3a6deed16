"""GPU check of the bundled models: fp32 vs fp16 vs bf16 inference, quality and throughput.

    python benchmarks/gpu_precision.py --data ../shared/data [--megapixels 4]

For each bundled model, a test image (Set5/Set12 images tiled to the size asked) is degraded
with the benchmark protocol and restored through the engine at each precision. Printed: PSNR
against the clean image, the largest difference from the fp32 output (in grey levels), and
megapixels per second (median of 3 timed runs after a warm-up, device synchronised).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from formnet_cli.checkpoint import load_checkpoint
from formnet_cli.degradations import add_gaussian_noise, imresize, jpeg_compress
from formnet_cli.engine import restore_tensor
from formnet_cli.metrics import psnr
from formnet_cli.models import condition_level
from formnet_cli.registry import list_models


def test_image(data: Path, channels: int, megapixels: float) -> np.ndarray:
    source = data / ("Set12/05.png" if channels == 1 else "Set5/baby.png")
    with Image.open(source) as image:
        tile = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    side = int((megapixels * 1e6) ** 0.5)
    reps = (side // tile.shape[0] + 1, side // tile.shape[1] + 1) + ((1,) if tile.ndim == 3 else ())
    mosaic = np.tile(tile, reps)[:side, :side]
    return mosaic[..., None] if mosaic.ndim == 2 else mosaic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--megapixels", type=float, default=4.0)
    parser.add_argument("--tile", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.megapixels} MP, tile {args.tile}")
    print("| model | precision | PSNR (dB) | max abs diff vs fp32 (grey levels) | MP/s |")
    print("|---|---|---|---|---|")
    for listing in list_models():
        if listing.path is None:  # listed in the manifest but not on this machine
            continue
        model, info = load_checkpoint(listing.path, device=device)
        task, channels = info.model.task, info.model.channels
        clean = test_image(args.data, channels, args.megapixels)
        if task == "denoise":
            degraded, level = add_gaussian_noise(clean / 255.0, 25.0, seed=0), condition_level(task, sigma=25)
        elif task == "jpeg":
            degraded, level = jpeg_compress(clean, 20) / 255.0, condition_level(task, quality=20)
        else:  # sr models restore the MATLAB-bicubic-upscaled image (scale 1 inside the model)
            low = imresize(clean / 255.0, 0.5)
            degraded, level = imresize(low, output_shape=clean.shape[:2]).reshape(clean.shape), condition_level(task, scale=2)
        tensor = torch.from_numpy(np.ascontiguousarray(degraded, dtype=np.float32)).permute(2, 0, 1)
        tile = None if args.tile == "none" else (args.tile if args.tile == "auto" else int(args.tile))
        reference = None
        for precision in ("fp32", "fp16", "bf16"):
            run = lambda: restore_tensor(model, tensor, level, tile=tile, device=device, precision=precision)  # noqa: E731
            run()
            times = []
            for _ in range(3):
                torch.cuda.synchronize()
                start = time.perf_counter()
                output = run()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            restored = np.round(np.clip(output.permute(1, 2, 0).numpy(), 0, 1) * 255)
            if reference is None:
                reference = restored
            difference = float(np.abs(restored - reference).max())
            quality = psnr(clean, restored.astype(np.uint8))
            megapixels = clean.shape[0] * clean.shape[1] / 1e6
            print(f"| {listing.name} | {precision} | {quality:.2f} | {difference:.0f} | "
                  f"{megapixels / statistics.median(times):.1f} |", flush=True)


if __name__ == "__main__":
    main()
