"""Training speed of the bundled architectures: seconds per step with and without bf16 autocast.

    python benchmarks/train_speed.py --threads 1 [--device cpu] [--batch 4] [--patch 128]

Each architecture of ``examples/configs`` (denoise-gray, denoise-color) runs ``--steps`` timed
optimiser steps (forward, L1 loss, backward, Adam) on random patches after two warm-up steps,
once in fp32 and once under bf16 autocast, on the same device in the same run: the ratio is
what ``train.amp`` buys (on the CPU only where :func:`formnet_cli.inference.device.cpu_has_fast` says the
CPU computes in bf16). Random weights: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli.config import ModelConfig  # noqa: E402
from formnet_cli.inference.device import cpu_has_fast, resolve_device  # noqa: E402
from formnet_cli.models import FormResNet  # noqa: E402


def seconds_per_step(model: FormResNet, device: torch.device, amp: bool, batch: int, patch: int,
                     steps: int) -> float:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-6)
    images = torch.rand(batch, model.config.channels, patch, patch, device=device)
    level = torch.full((batch,), 25 / 255, device=device)
    times = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            restored = model(images, level)
        loss = (restored.float() - images).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    bf16 = device.type == "cuda" or cpu_has_fast(torch.bfloat16)
    print(f"device: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch "
          f"{args.batch} x {args.patch} px, median of {args.steps} steps")
    print("| architecture | fp32 s/step | bf16 autocast s/step | speed-up |")
    print("|---|---:|---:|---:|")
    for name in ("denoise-gray", "denoise-color"):
        config = tomllib.loads((ROOT / "examples" / "configs" / f"{name}.toml").read_text())
        torch.manual_seed(0)
        model = FormResNet(ModelConfig.from_dict(config["model"])).to(device).train()
        fp32 = seconds_per_step(model, device, False, args.batch, args.patch, args.steps)
        if not bf16:
            print(f"| {name} | {fp32:.3f} | - (no bf16 arithmetic) | - |", flush=True)
            continue
        half = seconds_per_step(model, device, True, args.batch, args.patch, args.steps)
        print(f"| {name} | {fp32:.3f} | {half:.3f} | {fp32 / half:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
