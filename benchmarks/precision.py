"""fp32 vs fp16 vs bf16 inference of the bundled models: quality and throughput, GPU or CPU.

    python benchmarks/precision.py --data ../shared/data --device cuda [--megapixels 4]
    python benchmarks/precision.py --data ../shared/data --device cpu --megapixels 0.5 --threads 1

For each bundled model, a test image (Set12/Set5 images tiled to the size asked) is degraded
with the benchmark protocol and restored through the engine at each precision the device runs
(:func:`formnet_cli.inference.device.resolve_precision` refuses a half precision a CPU would only
emulate). Printed: PSNR against the clean image, the largest difference from the fp32 output
(in grey levels), and megapixels per second (median of the timed runs after a warm-up, device
synchronised). DnCNN-S (sigma 25, gray) is timed at the same precisions in the same run, so
the speed-up of a precision can be read against the peer's under the same treatment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli.hub.checkpoint import load_checkpoint  # noqa: E402
from formnet_cli.imaging.degradations import add_gaussian_noise, imresize, jpeg_compress  # noqa: E402
from formnet_cli.inference.device import PRECISIONS, check_precision, resolve_precision  # noqa: E402
from formnet_cli.inference.engine import restore_tensor  # noqa: E402
from formnet_cli.errors import InvalidOptionError  # noqa: E402
from formnet_cli.evaluation.protocol import to_uint8  # noqa: E402
from formnet_cli.imaging.metrics import psnr  # noqa: E402
from formnet_cli.evaluation.peers import default_peers_root, dncnn_path, load_dncnn  # noqa: E402
from formnet_cli.hub.registry import list_models  # noqa: E402


def test_image(data: Path, channels: int, megapixels: float) -> np.ndarray:
    source = data / ("Set12/05.png" if channels == 1 else "Set5/baby.png")
    with Image.open(source) as image:
        tile = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    side = int((megapixels * 1e6) ** 0.5)
    reps = (side // tile.shape[0] + 1, side // tile.shape[1] + 1) + ((1,) if tile.ndim == 3 else ())
    mosaic = np.tile(tile, reps)[:side, :side]
    return mosaic[..., None] if mosaic.ndim == 2 else mosaic


def degrade(clean: np.ndarray, task: str) -> tuple[np.ndarray, float]:
    """The protocol's degraded image (float, H x W x C) and the model's conditioning level."""
    from formnet_cli.models import condition_level

    if task == "denoise":
        return add_gaussian_noise(clean / 255.0, 25.0, seed=0), condition_level(task, sigma=25)
    if task == "jpeg":
        return jpeg_compress(clean, 20) / 255.0, condition_level(task, quality=20)
    # sr models restore the MATLAB-bicubic-upscaled image (scale 1 inside the model)
    low = imresize(clean / 255.0, 0.5)
    return imresize(low, output_shape=clean.shape[:2]).reshape(clean.shape), condition_level(task, scale=2)


def timed(run: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[torch.Tensor, float]:
    """The output of ``run`` and the median of ``repeats`` timed calls after a warm-up."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        output = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return output, statistics.median(times)


def run_peer(network: torch.nn.Module, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast(tensor.device.type, dtype=dtype,
                                                enabled=dtype != torch.float32):
        return network(tensor).float()


def runnable(precision: str, device: torch.device, model: torch.nn.Module | None = None) -> bool:
    """Whether the engine runs ``model`` (without one: any half-capable model) at ``precision``
    on ``device``."""
    try:
        if model is None:
            check_precision(precision, device)
        else:
            resolve_precision(precision, device, model.descriptor.supports_half)
    except InvalidOptionError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--megapixels", type=float, default=4.0)
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--peers", type=Path, default=None, help="folder of the DnCNN .mat files")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}, torch {torch.__version__}, {args.megapixels} MP, tile {args.tile}")
    print("| model | precision | PSNR (dB) | max abs diff vs fp32 (grey levels) | MP/s |")
    print("|---|---|---|---|---|")
    tile = None if args.tile == "none" else (args.tile if args.tile == "auto" else int(args.tile))
    for listing in list_models():
        if listing.path is None:  # listed in the manifest but not on this machine
            continue
        model, info = load_checkpoint(listing.path, device=device)
        clean = test_image(args.data, info.model.channels, args.megapixels)
        degraded, level = degrade(clean, info.model.task)
        tensor = torch.from_numpy(np.ascontiguousarray(degraded, dtype=np.float32)).permute(2, 0, 1)
        reference = None
        for precision in PRECISIONS:
            if not runnable(precision, device, model):
                continue
            run = partial(restore_tensor, model, tensor, level, tile=tile, device=device, precision=precision)
            output, seconds = timed(run, device, args.repeats)
            restored = to_uint8(output.permute(1, 2, 0).numpy())
            reference = restored if reference is None else reference
            difference = int(np.abs(restored.astype(int) - reference).max())
            print(f"| {listing.name} | {precision} | {psnr(clean, restored):.2f} | {difference} | "
                  f"{clean.shape[0] * clean.shape[1] / 1e6 / seconds:.3g} |", flush=True)
    peer = dncnn_path(args.peers or default_peers_root(), "denoise", 1, 25)
    if peer is None or not peer.exists():
        print("(no DnCNN-S sigma 25 file: peer not timed)")
        return
    network = load_dncnn(peer, device)
    clean = test_image(args.data, 1, args.megapixels)
    tensor = torch.from_numpy(np.ascontiguousarray(degrade(clean, "denoise")[0], dtype=np.float32))
    tensor = tensor.permute(2, 0, 1)[None].to(device)
    for precision, dtype in PRECISIONS.items():
        if not runnable(precision, device):
            continue

        output, seconds = timed(partial(run_peer, network, tensor, dtype), device, args.repeats)
        restored = to_uint8(output[0].permute(1, 2, 0).cpu().numpy())
        print(f"| DnCNN-S sigma 25 | {precision} | {psnr(clean, restored):.2f} | - | "
              f"{clean.shape[0] * clean.shape[1] / 1e6 / seconds:.3g} |", flush=True)


if __name__ == "__main__":
    main()
