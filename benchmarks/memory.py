"""Peak memory of ``formnet restore`` on large colour photos: 1, 4, 16 and 50 megapixels.

    python benchmarks/memory.py --sizes 1,4,16,50 --threads 2 --json /tmp/memory.json

Each row is one fresh ``formnet restore in.png -o out.png`` process (decoding, the model, the
restoration and the atomic PNG write included) on a seeded colour PNG: mirrored copies of
scikit-image's astronaut photo with protocol-style Gaussian noise (sigma 25, seed 0) added. The
process's peak resident set size is read with ``resource.getrusage(RUSAGE_CHILDREN)`` from a
wrapper process that runs only it. Writes the ``<!-- memory:start -->`` ... ``<!-- memory:end -->``
block of ``docs/benchmarks.md`` with ``--write``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- memory:start -->", "<!-- memory:end -->"


def make_photo(megapixels: float, path: Path) -> tuple[int, int]:
    """A seeded noisy colour PNG of about ``megapixels`` (3:2), written to ``path``."""
    import cv2
    import numpy as np
    import skimage.data

    width = int(round(math.sqrt(megapixels * 1e6 * 3 / 2) / 8)) * 8
    height = int(round(width * 2 / 3 / 8)) * 8
    tile = skimage.data.astronaut()
    mirrored = np.concatenate([tile, tile[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)
    reps = (-(-height // mirrored.shape[0]), -(-width // mirrored.shape[1]), 1)
    clean = np.tile(mirrored, reps)[:height, :width]
    rng = np.random.default_rng(0)
    noisy = np.empty_like(clean)
    for top in range(0, height, 512):  # in strips: the benchmark's own memory stays small
        strip = clean[top:top + 512].astype(np.float32) + rng.normal(0, 25, clean[top:top + 512].shape)
        noisy[top:top + 512] = np.clip(np.rint(strip), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), np.ascontiguousarray(noisy[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return width, height


def measure(command: list[str]) -> tuple[float, float]:
    """``(peak RSS in MiB, seconds)`` of ``command`` run alone in a fresh wrapper process."""
    wrapper = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
               "code = subprocess.call(sys.argv[1:]); elapsed = time.perf_counter() - start; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, elapsed); "
               "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True,
                          text=True, check=True)
    peak_kib, seconds = done.stdout.split()[-2:]
    return int(peak_kib) / 1024, float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,4,16,50", help="megapixels, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--options", default="--task denoise --sigma 25",
                        help="formnet restore options for every row")
    parser.add_argument("--formnet", default=str(Path(sys.executable).parent / "formnet"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", action="store_true", help="write the block in docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in (float(v) for v in args.sizes.split(",")):
            source, target = Path(folder) / "in.png", Path(folder) / "out.png"
            width, height = make_photo(megapixels, source)
            command = [args.formnet, "restore", str(source), "-o", str(target), "--device", "cpu",
                       "--threads", str(args.threads), *args.options.split()]
            peak, seconds = measure(command)
            float_copy = width * height * 3 * 4 / 2**20
            row = {"megapixels": width * height / 1e6, "width": width, "height": height,
                   "peak_mib": peak, "float32_copy_mib": float_copy, "seconds": seconds}
            rows.append(row)
            print(json.dumps(row), flush=True)
            target.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.write:
        write_block(rows, args, " ".join(sys.argv[1:]) if argv is None else " ".join(argv))
    return 0


def write_block(rows: list[dict], args: argparse.Namespace, arguments: str) -> None:
    lines = [START, "## Peak memory of a large colour restore (CPU)", "",
             f"Written by `python benchmarks/memory.py {arguments}` on {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{platform.machine()} ({args.threads} threads): one fresh `formnet restore in.png -o out.png "
             f"{args.options}` process per row on a seeded noisy colour PNG (decoding, model, restoration "
             "and the PNG write included); peak resident set size of that process.", "",
             "| megapixels | size | peak RSS (MiB) | one float32 copy of the image (MiB) | time (s) |",
             "|---:|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['megapixels']:.1f} | {row['width']} x {row['height']} | {row['peak_mib']:.0f} "
                     f"| {row['float32_copy_mib']:.0f} | {row['seconds']:.0f} |")
    lines.append(END)
    text = DOC.read_text()
    block = "\n".join(lines)
    if START in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
