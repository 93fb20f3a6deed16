"""CPU time per megapixel of the denoisers under each backend, against DnCNN in its fastest
runtime (same run, same threads), and the time to the first restored pixel.

    python benchmarks/backends.py --threads 1                    # both blocks
    python benchmarks/backends.py --threads 2 --megapixels 0.25 --rounds 3 --skip-startup
    python benchmarks/backends.py --only-startup --startup-runs 5   # the start-up block alone

Block ``backends``: ``denoise-gray`` and ``denoise-color`` restore a protocol-noisy mosaic
(sigma 25; Set12 / Set5 images tiled to the size asked, as ``benchmarks/precision.py`` makes it)
through ``formnet_cli.api.restore`` (``tile="auto"``, one pass) under torch, onnxruntime and
OpenVINO (those installed); DnCNN-S / CDnCNN (sigma 25, the published MatConvNet models, one
untiled pass) under torch and, exported to ONNX here, under the same two runtimes. The methods
run in interleaved rounds (one of each per round) after a warm-up, and each row is the median
round: on a shared machine the ratios of one run are what compare. *time / DnCNN* is over the
fastest DnCNN runtime of the same channels. PSNR against the clean mosaic shows the backends
agree (the model's quality is measured on the full sets by the quality blocks).

Block ``startup``: wall time of ``formnet restore IMAGE -o OUT --sigma 25 --ensemble 1`` on a
0.25 MP gray PNG in a fresh process, per backend (ONNX graph already cached), median of
``--startup-runs``: what a user waits for from the command to the written image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from precision import degrade, test_image  # noqa: E402
from quality import write_block  # noqa: E402

from formnet_cli import api  # noqa: E402
from formnet_cli.evaluation.protocol import to_uint8  # noqa: E402
from formnet_cli.evaluation.peers import dncnn_path, load_dncnn  # noqa: E402
from formnet_cli.imaging.metrics import psnr  # noqa: E402
from formnet_cli.inference import backends  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
MODELS = {1: "denoise-gray", 3: "denoise-color"}
PEERS = {1: "DnCNN-S", 3: "CDnCNN"}


def installed_backends() -> list[str]:
    return ["torch", *(name for name in backends.RUNTIMES if backends.runtime_installed(name))]


def formnet_runner(channels: int, backend: str, noisy: np.ndarray) -> Callable[[], np.ndarray]:
    loaded = api.load_model(MODELS[channels], device="cpu", backend=backend)
    return lambda: api.restore(noisy, "denoise", sigma=25.0, model=loaded, device="cpu",
                               tile="auto", ensemble=1)


def dncnn_runners(channels: int, noisy: np.ndarray, threads: int, peers: Path, folder: Path
                  ) -> dict[str, Callable[[], np.ndarray]]:
    """DnCNN under torch, and its ONNX export under each runtime installed."""
    path = dncnn_path(peers, "denoise", channels, 25)
    if path is None:
        return {}
    network = load_dncnn(path)
    tensor = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]

    def run_torch() -> np.ndarray:
        with torch.inference_mode():
            return network(tensor)[0].numpy().transpose(1, 2, 0)

    runners = {"torch": run_torch}
    graph = folder / f"dncnn-{channels}.onnx"
    height, width = (torch.export.Dim(name, min=8, max=2**15) for name in ("height", "width"))
    with torch.no_grad():
        torch.onnx.export(network, (tensor,), str(graph), dynamo=True, input_names=["image"],
                          dynamic_shapes={"x": {2: height, 3: width}}, verbose=False)
    feed = {"image": tensor.numpy()}
    if backends.runtime_installed("onnxruntime"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda: session.run(None, feed)[0][0].transpose(1, 2, 0)
    if backends.runtime_installed("openvino"):
        import openvino

        compiled = openvino.Core().compile_model(str(graph), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY"})
        runners["openvino"] = lambda: compiled.create_infer_request().infer(feed)[0][0].transpose(1, 2, 0)
    return runners


def measure_speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch, backends.cpu_threads(args.threads):
        for channels in (1, 3):
            clean = test_image(args.data, channels, args.megapixels)
            noisy = np.ascontiguousarray(degrade(clean, "denoise")[0], dtype=np.float32)
            methods = {(f"formnet {MODELS[channels]}", name): formnet_runner(channels, name, noisy)
                       for name in installed_backends()}
            peers = dncnn_runners(channels, noisy, args.threads, args.peers, Path(scratch))
            methods.update({(f"{PEERS[channels]} sigma 25", name): run for name, run in peers.items()})
            outputs = {key: run() for key, run in methods.items()}  # warm-up, and the outputs
            times: dict[tuple[str, str], list[float]] = {key: [] for key in methods}
            for _ in range(args.rounds):
                for key, run in methods.items():
                    start = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - start)
            megapixels = clean.shape[0] * clean.shape[1] / 1e6
            for (method, backend), run_times in times.items():
                seconds = statistics.median(run_times)
                rows.append({"channels": channels, "method": method, "backend": backend,
                             "megapixels": megapixels, "seconds_per_mp": seconds / megapixels,
                             "psnr": psnr(clean, to_uint8(outputs[method, backend]))})
                print(rows[-1], flush=True)
    return rows


def measure_startup(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        clean = test_image(args.data, 1, 0.25)
        noisy = to_uint8(degrade(clean, "denoise")[0])[:, :, 0]
        sources = {"image": Path(scratch) / "noisy.png", "tiny": Path(scratch) / "tiny.png"}
        Image.fromarray(noisy).save(sources["image"])
        Image.fromarray(noisy[:8, :8]).save(sources["tiny"])
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        for backend in installed_backends():
            row = {"backend": backend, "megapixels": noisy.size / 1e6}
            for size, source in sources.items():
                command = [sys.executable, "-m", "formnet_cli", "restore", str(source), "-o",
                           str(Path(scratch) / f"{backend}.png"), "--sigma", "25", "--ensemble",
                           "1", "--backend", backend, "--threads", str(args.threads)]
                subprocess.run(command, check=True, capture_output=True, env=environment)  # caches
                walls = []
                for _ in range(args.startup_runs):
                    start = time.perf_counter()
                    subprocess.run(command, check=True, capture_output=True, env=environment)
                    walls.append(time.perf_counter() - start)
                row[size] = statistics.median(walls)
            imports = subprocess.run(
                [sys.executable, "-c", "import time; t = time.perf_counter(); import torch; "
                 "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True)
            row["torch_import"] = float(imports.stdout)
            rows.append(row)
            print(row, flush=True)
    return rows


def speed_markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = ["## CPU backends: time per megapixel against DnCNN", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M')}, {_cpu()}, "
             f"{args.threads} thread(s) for every method, {args.rounds} interleaved rounds (median). "
             f"A {rows[0]['megapixels']:.2f} MP mosaic with sigma 25 noise; formnet through "
             "`api.restore` (`tile=auto`, one pass: the default `--ensemble auto` runs 2 passes, "
             "twice these times), DnCNN untiled in each runtime. *time / DnCNN*: over the fastest "
             "DnCNN runtime of the same channels (lower is faster).", "",
             "| model | backend | s / MP | time / DnCNN | PSNR (dB) |", "|---|---|---:|---:|---:|"]
    for channels in (1, 3):
        group = [row for row in rows if row["channels"] == channels]
        peers = [row["seconds_per_mp"] for row in group if not row["method"].startswith("formnet")]
        fastest = min(peers) if peers else None
        for row in group:
            ratio = f"{row['seconds_per_mp'] / fastest:.2f}" if fastest else "-"
            lines.append(f"| {row['method']} | {row['backend']} | {row['seconds_per_mp']:.2f} | "
                         f"{ratio} | {row['psnr']:.2f} |")
    versions = ", ".join(f"{name} {_version(name)}" for name in installed_backends())
    return "\n".join(lines + ["", f"`{versions}`"]) + "\n"


def startup_markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = ["## Time to the first restored pixel", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M')}, {_cpu()}: wall time "
             f"of `formnet restore noisy.png -o out.png --sigma 25 --ensemble 1 --threads "
             f"{args.threads} --backend B` on a {rows[0]['megapixels']:.2f} MP gray image, a "
             f"fresh process each time (median of {args.startup_runs}; the ONNX graph already "
             "cached by a first run, which exports it); *start-up* is the same command on an "
             "8 x 8 image: everything but the restoration. Importing torch alone took "
             f"{statistics.median(row['torch_import'] for row in rows):.1f} s here.", "",
             f"| backend | seconds to the written {rows[0]['megapixels']:.2f} MP image | start-up (s) |",
             "|---|---:|---:|"]
    lines += [f"| {row['backend']} | {row['image']:.2f} | {row['tiny']:.2f} |" for row in rows]
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    import platform

    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--megapixels", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--only-startup", action="store_true",
                        help="measure the start-up only (the backends block is left as it is)")
    parser.add_argument("--peers", type=Path, default=None,
                        help="folder of the DnCNN .mat files (default: peers/ beside --data)")
    parser.add_argument("--output", type=Path, default=DOC)
    args = parser.parse_args(argv)
    args.peers = args.peers or args.data.parent / "peers"
    torch.set_num_threads(args.threads)
    command = "python benchmarks/backends.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.only_startup:
        write_block(args.output, "<!-- backends:start -->", "<!-- backends:end -->",
                    speed_markdown(measure_speed(args), args, command.strip()))
    if not args.skip_startup:
        write_block(args.output, "<!-- startup:start -->", "<!-- startup:end -->",
                    startup_markdown(measure_startup(args), args, command.strip()))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
