"""Channels-last against contiguous (NCHW) convolutions: CPU time of the default denoisers.

    python benchmarks/memory_format.py --threads 1              # BSD68 and CBSD68, 12 images each

The engine runs convolutions channels-last (NHWC) on the CPU and CUDA. This measures what that
gains on the CPU: ``formnet_cli.api.restore`` with the model card's passes (sigma 25, protocol
noise) on the first images of BSD68 (denoise-gray) and CBSD68 (denoise-color), once with the
engine's memory format and once with it forced to contiguous, interleaved over two rounds;
DnCNN-S / CDnCNN-S (sigma 25) is timed in the same rounds as the reference. Also printed: the
largest output difference between the two layouts and the PSNR of each. Writes the
``<!-- memory-format:start -->`` ... ``<!-- memory-format:end -->`` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli import api  # noqa: E402
from formnet_cli.evaluation.baselines import DnCNNMethod  # noqa: E402
from formnet_cli.evaluation.datasets import read_dataset, resolve_dataset  # noqa: E402
from formnet_cli.evaluation.protocol import Setting, degrade, score  # noqa: E402
from formnet_cli.evaluation.peers import default_peers_root  # noqa: E402
from formnet_cli.inference import device as inference_device  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BLOCK = "memory-format"
SUITES = (("denoise-gray", "BSD68", "gray"), ("denoise-color", "CBSD68", "color"))
SIGMA = 25.0


def measure(model: str, dataset: str, channels: str, limit: int, rounds: int) -> dict[str, float]:
    """Seconds per megapixel of each layout and of DnCNN, output difference and PSNRs."""
    images = read_dataset(resolve_dataset(dataset), channels=channels, limit=limit)
    samples = [degrade(name, clean, Setting("denoise", SIGMA)) for name, clean in images]
    loaded = api.load_model(model)
    peer = DnCNNMethod.from_folder(default_peers_root(), "denoise", loaded.channels, [SIGMA])
    engine_format = inference_device.fast_memory_format
    layouts = {"channels-last": engine_format, "contiguous": lambda device: torch.contiguous_format}
    seconds = dict.fromkeys([*layouts, "dncnn"], 0.0)
    outputs: dict[str, list[np.ndarray]] = {}
    api.restore(samples[0].degraded, sigma=SIGMA, model=loaded)  # warm-up, untimed
    peer.restore(samples[0])
    try:
        for _ in range(rounds):
            for name, layout in layouts.items():
                inference_device.fast_memory_format = layout
                start = time.perf_counter()
                outputs[name] = [api.restore(s.degraded, sigma=SIGMA, model=loaded) for s in samples]
                seconds[name] += time.perf_counter() - start
            start = time.perf_counter()
            for sample in samples:
                peer.restore(sample)
            seconds["dncnn"] += time.perf_counter() - start
    finally:
        inference_device.fast_memory_format = engine_format
    megapixels = rounds * sum(sample.input_megapixels for sample in samples)
    result = {f"{name} s/MP": value / megapixels for name, value in seconds.items()}
    result["max difference"] = max(float(np.abs(a - b).max())
                                   for a, b in zip(outputs["channels-last"], outputs["contiguous"]))
    for name in layouts:
        result[f"{name} PSNR"] = float(np.mean([score(s, o)[0] for s, o in zip(samples, outputs[name])]))
    return result


def render(rows: dict[str, dict[str, float]], limit: int, rounds: int, threads: int) -> str:
    lines = [f"<!-- {BLOCK}:start -->",
             f"`python benchmarks/memory_format.py --limit {limit} --rounds {rounds} --threads {threads}` "
             f"(sigma 25, the card's passes; CPU, fp32, {threads} thread{'s' if threads != 1 else ''}, "
             f"torch {torch.__version__})", "",
             "| model (set) | channels-last s/MP | contiguous s/MP | DnCNN s/MP | gain | "
             "time / DnCNN (channels-last / contiguous) | max difference | PSNR (channels-last / contiguous) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        dncnn = r["dncnn s/MP"]
        lines.append(f"| {label} | {r['channels-last s/MP']:.2f} | {r['contiguous s/MP']:.2f} | "
                     f"{dncnn:.2f} | {r['contiguous s/MP'] / r['channels-last s/MP']:.3f}x | "
                     f"{r['channels-last s/MP'] / dncnn:.3f} / {r['contiguous s/MP'] / dncnn:.3f} | "
                     f"{r['max difference']:.1e} | {r['channels-last PSNR']:.3f} / {r['contiguous PSNR']:.3f} |")
    lines.append(f"<!-- {BLOCK}:end -->")
    return "\n".join(lines)


def write_block(text: str, path: Path = DOC) -> None:
    doc = path.read_text()
    start, end = f"<!-- {BLOCK}:start -->", f"<!-- {BLOCK}:end -->"
    if start in doc:
        doc = doc[:doc.index(start)] + text + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n## Channels-last convolutions\n\n" + text + "\n"
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=12, help="images of each set")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=DOC, help="markdown file to update")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    for model, dataset, channels in SUITES:
        rows[f"{model} ({dataset})"] = measure(model, dataset, channels, args.limit, args.rounds)
        print(model, rows[f"{model} ({dataset})"], flush=True)
    write_block(render(rows, args.limit, args.rounds, args.threads), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
