"""Speed and memory of ``formnet_cli.api.restore``: MP/s and peak RSS at 1, 4 and 16 MP, per tile.

    python benchmarks/speed.py                               # 1/4/16 MP x tiles 512/1024/auto
    python benchmarks/speed.py --sizes 0.25,1 --tiles 512 --dncnn-size 0.25   # quick

Each measurement runs in a fresh subprocess, so its peak resident set size
(``resource.getrusage``) belongs to that one restore: with a fixed tile it must stay flat as
the image grows (the whole image lives in host memory; only tiles go through the network).
Protocol (BENCHMARK.md): one warm-up image, then the timed call (no file I/O; uint8 gray
image in, uint8 out, denoising at sigma 25); threads, device and precision are reported.
DnCNN-S (sigma 25, read from its MatConvNet file, one untiled pass) is timed in the same run
as the reference: on a shared machine only the ratio is stable. On a machine with CUDA the
GPU is measured too. Writes the ``<!-- speed:start -->`` ... ``<!-- speed:end -->`` block of
``docs/benchmarks.md``.

Without trained weights the default architecture (``examples/configs/denoise-gray.toml``)
runs with random weights: speed does not depend on the weights' values, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- speed:start -->", "<!-- speed:end -->"
ARCHITECTURE_CONFIG = ROOT / "examples" / "configs" / "denoise-gray.toml"
WARMUP_SIDE = 512


def _image(megapixels: float):
    import numpy as np

    side = max(16, int(round(math.sqrt(megapixels * 1e6) / 8)) * 8)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = (ramp[None, :] * 0.5 + ramp[:, None] * 0.3 + rng.normal(0, 25, (side, side))).clip(0, 255)
    return image.astype(np.uint8)


def _load_formnet(model: str | None, device: str):
    """The model to time and a note on where it came from."""
    from formnet_cli import api
    from formnet_cli.errors import ModelNotFoundError

    try:
        loaded = api.load_model(model, task="denoise", channels=1, device=device)
        return loaded, f"formnet {loaded.name}"
    except ModelNotFoundError:
        if model is not None:
            raise
    import tomllib

    import torch

    from formnet_cli.hub.checkpoint import save_checkpoint
    from formnet_cli.config import ModelConfig
    from formnet_cli.models import FormResNet

    config = ModelConfig.from_dict(tomllib.loads(ARCHITECTURE_CONFIG.read_text())["model"])
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="formnet-speed-"))
    save_checkpoint(FormResNet(config), folder, "untrained-denoise-gray")
    loaded = api.load_model(folder, task="denoise", channels=1, device=device)
    return loaded, "formnet denoise-gray architecture, untrained weights (speed only)"


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    import numpy as np
    import psutil
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    image = _image(args.megapixels)
    warm = _image(WARMUP_SIDE**2 / 1e6)
    if args.method == "dncnn":
        from formnet_cli.evaluation.peers import dncnn_path, load_dncnn

        path = dncnn_path(args.peers_root, "denoise", 1, 25)
        if path is None:
            return {"error": f"no DnCNN sigma=25 model under {args.peers_root}"}
        device = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
        network = load_dncnn(path, device)
        label = "DnCNN-S sigma 25 (untiled)"
        args.tile = "none"

        def run(pixels: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(pixels.astype(np.float32) / 255)[None, None].to(device)
            with torch.inference_mode():
                out = network(tensor)[0, 0].float().cpu().numpy()
            return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
    else:
        from formnet_cli import api

        loaded, label = _load_formnet(args.model, args.device)
        tile = None if args.tile == "none" else ("auto" if args.tile == "auto" else int(args.tile))

        def run(pixels: np.ndarray) -> np.ndarray:
            return api.restore(pixels, "denoise", sigma=25.0, model=loaded, tile=tile,
                               device=args.device, precision=args.precision,
                               ensemble=args.ensemble)
    if args.precision == "auto":
        args.precision = "fp16" if args.device.startswith("cuda") and args.method != "dncnn" else "fp32"
    run(warm)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss / 2**20
    start = time.perf_counter()
    run(image)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "method": label, "device": args.device, "tile": args.tile, "precision": args.precision,
        "threads": torch.get_num_threads(), "megapixels": image.size / 1e6, "seconds": seconds,
        "megapixels_per_second": image.size / 1e6 / seconds,
        "rss_before_mib": rss_before,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.device.startswith("cuda"):
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def measure(options: list[str]) -> dict:
    """Run one worker in a fresh interpreter and parse its JSON line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *options]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0]}"}
    return json.loads(lines[-1])


def markdown(rows: list[dict], references: dict[str, dict], command: str, started: str,
             ensemble: str = "1") -> str:
    rates = {device: ref["megapixels_per_second"] for device, ref in references.items() if "error" not in ref}
    model_note = next((r["method"] for r in rows if "error" not in r), "formnet")
    lines = [
        "## Speed and memory", "",
        f"Written by `{command}` on {started}. Denoising a gray uint8 image at sigma 25 through "
        f"`formnet_cli.api.restore` ({model_note}, `ensemble={ensemble}`); each row is a fresh process (one warm-up "
        f"{WARMUP_SIDE} x {WARMUP_SIDE} image, then the timed call). Peak RSS is the process's "
        "maximum resident set size (model, input and output images included); *rise* is peak "
        "minus the RSS just before the timed call. *time / DnCNN* is formnet's time per megapixel "
        "over DnCNN-S's in the same run (lower is faster).", "",
    ]
    for device, reference in references.items():
        if "error" in reference:
            lines += [f"DnCNN reference on {device}: {reference['error']}", ""]
        else:
            lines += [f"Reference on {device}: {reference['method']}, {reference['megapixels']:.2f} MP, "
                      f"{reference['threads']} threads: {reference['megapixels_per_second']:.3g} MP/s, "
                      f"peak RSS {reference['max_rss_mib']:.0f} MiB.", ""]
    lines += ["| device | threads | precision | tile | MP | MP/s | time / DnCNN | peak RSS (MiB) | rise (MiB) "
              "| GPU peak (MiB) |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row.get('device', '')} | | | {row.get('tile', '')} | {row.get('requested', '')} | "
                         f"error: {row['error']} | | | | |")
            continue
        ref_rate = rates.get(row["device"])
        ratio = f"{ref_rate / row['megapixels_per_second']:.2f}" if ref_rate else "-"
        gpu = f"{row['gpu_peak_mib']:.0f}" if "gpu_peak_mib" in row else ""
        lines.append(f"| {row['device']} | {row['threads']} | {row['precision']} | {row['tile']} | "
                     f"{row['megapixels']:.2f} | {row['megapixels_per_second']:.3g} | {ratio} | "
                     f"{row['max_rss_mib']:.0f} | {row['max_rss_mib'] - row['rss_before_mib']:.0f} | {gpu} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,4,16", help="megapixels, comma list")
    parser.add_argument("--tiles", default="512,1024,auto", help="tile sides, 'auto' or 'none'")
    parser.add_argument("--devices", default=None, help="comma list (default: cpu, and cuda if available)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--ensemble", default="1",
                        help="self-ensemble passes (default 1: the tiling and memory of one pass; "
                             "'auto' runs the model card's number, that many times the time)")
    parser.add_argument("--model", default=None, help="formnet model name or folder (default: denoise gray)")
    parser.add_argument("--dncnn-size", type=float, default=1.0, help="megapixels for the DnCNN reference")
    parser.add_argument("--peers-root", default=None, help="folder of the DnCNN .mat files")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="formnet", help=argparse.SUPPRESS)
    parser.add_argument("--megapixels", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--tile", default="512", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers_root is None:
        from formnet_cli.evaluation.peers import default_peers_root

        args.peers_root = str(default_peers_root() / "dncnn")
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    import torch

    devices = args.devices.split(",") if args.devices else (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    common = ["--peers-root", args.peers_root, "--precision", args.precision,
              "--ensemble", args.ensemble]
    if args.threads:
        common += ["--threads", str(args.threads)]
    if args.model:
        common += ["--model", args.model]
    started = time.strftime("%Y-%m-%d %H:%M")
    references, rows = {}, []
    for device in devices:
        references[device] = measure(["--method", "dncnn", "--megapixels", str(args.dncnn_size),
                                      "--device", device, *common])
        print("reference:", references[device], flush=True)
        for size in [float(s) for s in args.sizes.split(",")]:
            for tile in args.tiles.split(","):
                row = measure(["--megapixels", str(size), "--tile", tile, "--device", device, *common])
                row.setdefault("device", device)
                row.setdefault("tile", tile)
                row["requested"] = size
                print(row, flush=True)
                rows.append(row)
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from quality import write_block

    write_block(args.output, START, END, markdown(rows, references, command.strip(), started,
                                                   args.ensemble))
    if args.json:
        args.json.write_text(json.dumps({"references": references, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
