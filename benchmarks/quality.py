"""Quality benchmark: formnet, BM3D and the published DnCNN models on the same images, one run.

    python benchmarks/quality.py                      # everything (hours on a small CPU)
    python benchmarks/quality.py --limit 3 --tasks denoise --sets Set12
    python benchmarks/quality.py --sigmas 25 --sets BSD68 --no-bm3d

Follows ``BENCHMARK.md`` through :mod:`formnet_cli.evaluation`; writes the tables into the
``<!-- quality:start -->`` ... ``<!-- quality:end -->`` block of ``docs/benchmarks.md`` (the
speed block, written by ``benchmarks/speed.py``, is left alone). Suites:

* denoise, gray BSD68 and Set12, color CBSD68: sigma 15 / 25 / 50 and off-grid 10 / 35 / 60;
  formnet (default model, plus every available bm3d-formatted model), BM3D / CBM3D,
  DnCNN-S (only at its own sigmas), the noisy input;
* JPEG, LIVE1 (gray ``L`` version) and Classic5, q 10 / 20 / 30 / 40: formnet, DnCNN-3, input;
* SR, Set5 and Set14, x2 / x3 / x4, Y channel with a border of ``scale`` cropped: formnet,
  DnCNN-3 (on the Y channel of the bicubic-upscaled image), bicubic.

Speed: seconds per megapixel of input for each method over a whole suite (after one warm-up
image per method), as a ratio to DnCNN timed in the same suite; peak memory is the largest
rise of the process's resident set during one of the method's restore calls. Tasks without
formnet weights get a "no weights yet" row; the baselines and peers still run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli.evaluation.baselines import baseline_methods  # noqa: E402
from formnet_cli.evaluation.datasets import default_data_root, read_dataset  # noqa: E402
from formnet_cli.evaluation.evaluate import evaluate  # noqa: E402
from formnet_cli.evaluation.methods import FormnetMethod, Method, load_default_methods  # noqa: E402
from formnet_cli.evaluation.protocol import Sample, Setting  # noqa: E402
from formnet_cli.evaluation.report import (  # noqa: E402
    EvalReport,
    MeasuredCheckpoint,
    describe_environment,
    environment,
    format_number,
)
from formnet_cli.errors import FormnetError  # noqa: E402
from formnet_cli.evaluation.peers import default_peers_root  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- quality:start -->", "<!-- quality:end -->"


@dataclass(frozen=True)
class Suite:
    task: str
    dataset: str
    channels: str  # read mode for read_dataset
    levels: tuple[float, ...]
    title: str


SIGMAS = (15, 25, 50, 10, 35, 60)
QUALITIES = (10, 20, 30, 40)
SCALES = (2, 3, 4)
SUITES = (
    Suite("denoise", "BSD68", "gray", SIGMAS, "Gaussian denoising, gray BSD68"),
    Suite("denoise", "Set12", "gray", SIGMAS, "Gaussian denoising, gray Set12"),
    Suite("denoise", "CBSD68", "color", SIGMAS, "Gaussian denoising, color CBSD68"),
    Suite("jpeg", "LIVE1", "gray", QUALITIES, "JPEG artifact removal, LIVE1 (gray L)"),
    Suite("jpeg", "Classic5", "gray", QUALITIES, "JPEG artifact removal, Classic5"),
    Suite("sr", "Set5", "auto", SCALES, "Super-resolution, Set5 (Y channel)"),
    Suite("sr", "Set14", "auto", SCALES, "Super-resolution, Set14 (Y channel)"),
)

# Published figures under the same protocol (BENCHMARK.md), keyed by (set, method row name).
PUBLISHED: dict[tuple[str, str], dict[float, float]] = {
    ("BSD68", "BM3D"): {15: 31.07, 25: 28.57, 50: 25.62},
    ("BSD68", "DnCNN-S"): {15: 31.73, 25: 29.23, 50: 26.23},
    ("Set12", "BM3D"): {15: 32.37, 25: 29.97, 50: 26.72},
    ("Set12", "DnCNN-S"): {15: 32.86, 25: 30.44, 50: 27.18},
    ("CBSD68", "BM3D"): {15: 33.52, 25: 30.71, 50: 27.38},
    ("CBSD68", "CDnCNN-S"): {15: 33.90, 25: 31.24, 50: 27.95},
    ("LIVE1", "DnCNN-3"): {10: 29.19, 20: 31.59, 30: 32.98, 40: 33.96},
    ("Set5", "bicubic"): {2: 33.66, 3: 30.39, 4: 28.42},
    ("Set5", "DnCNN-3"): {2: 37.58, 3: 33.75, 4: 31.40},
    ("Set14", "bicubic"): {2: 30.24, 3: 27.55, 4: 26.00},
    ("Set14", "DnCNN-3"): {2: 33.03, 3: 29.81, 4: 28.04},
}


# -- peak memory -----------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Measured(Method):
    """Delegates to a method and records the largest RSS rise during one restore call."""

    def __init__(self, inner: Method) -> None:
        self.inner = inner
        self.name = inner.name
        self.peak_rise_mib: dict[str, float] = {}  # by row label

    def label(self, setting: Setting) -> str:
        return self.inner.label(setting)

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        return self.inner.unsupported(setting, channels)

    def formatted(self, sample: Sample) -> np.ndarray | None:
        return self.inner.formatted(sample)

    def checkpoint(self) -> MeasuredCheckpoint | None:
        return self.inner.checkpoint()

    def restore(self, sample: Sample) -> np.ndarray:
        before = _status_kib("VmRSS")
        exact = _reset_peak()
        result = self.inner.restore(sample)
        peak = _status_kib("VmHWM" if exact else "VmRSS")
        if before is not None and peak is not None:
            label = self.label(sample.setting)
            rise = (peak - before) / 1024
            self.peak_rise_mib[label] = max(self.peak_rise_mib.get(label, 0.0), rise)
        return result


# -- methods per suite -------------------------------------------------------------------------
def formnet_methods(task: str, channels: int, extra_models: list[str], device: str,
                    single_pass: bool = True) -> tuple[list[Method], dict[str, str]]:
    """The default model (or a "no weights yet" note), every available bm3d-formatted model of
    the task and channels, and any ``--model`` given; with ``single_pass``, also each model
    whose card recommends a self-ensemble as one plain pass."""
    methods, notes = load_default_methods(task, channels, device=device)
    names = {m.loaded.name for m in methods if isinstance(m, FormnetMethod)}
    paths = {str(m.loaded.path.resolve()) for m in methods if isinstance(m, FormnetMethod)}
    wanted = list(extra_models)
    if task == "denoise":
        try:
            from formnet_cli.hub.checkpoint import read_info
            from formnet_cli.hub.registry import list_models

            for listing in list_models():
                if (listing.task == task and listing.channels == channels and listing.path is not None
                        and listing.name not in names
                        and read_info(listing.path).model.formatter == "bm3d"):
                    wanted.append(str(listing.path))
        except FormnetError as error:
            print(f"  (could not list models: {error})")
    if wanted:
        extra, _ = load_default_methods(task, channels, models=wanted, device=device)
        # a model given by folder is measured even where its card has a default model's name,
        # then labelled by its folder
        for method in extra:
            if str(method.loaded.path.resolve()) in paths:
                continue
            if method.loaded.name in names:
                passes = f"{method.passes} pass{'es' if method.passes > 1 else ''}"
                method = FormnetMethod(method.loaded, device=device, ensemble=method.passes,
                                       name=f"formnet {method.loaded.path} ({passes})")
            methods.append(method)
    single = [FormnetMethod(m.loaded, device=device, ensemble=1,
                            name=f"formnet {m.loaded.name} (1 pass)")
              for m in methods if single_pass and isinstance(m, FormnetMethod) and m.passes > 1]
    return methods + single, notes


def suite_methods(suite: Suite, channels: int, args: argparse.Namespace
                  ) -> tuple[list[Method], dict[str, str]]:
    methods, notes = formnet_methods(suite.task, channels, args.model, args.device,
                                     single_pass=not args.no_single_pass)
    baselines, missing = baseline_methods(suite.task, channels, suite.levels,
                                             bm3d=suite.task == "denoise" and not args.no_bm3d,
                                             dncnn=True, peers_root=args.peers_root)
    for note in missing:
        print(f"  {note}")
    return [Measured(m) for m in methods + baselines], notes


# -- report ------------------------------------------------------------------------------------
def suite_markdown(suite: Suite, report: EvalReport, methods: list[Measured], images: int,
                   seconds: float) -> str:
    lines = [f"### {suite.title}", "",
             f"{images} images; mean PSNR (dB) / SSIM per image, then averaged. Run took "
             f"{seconds / 60:.1f} min.", ""]
    psnr_table = report.wide_markdown(metric="psnr").rstrip("\n").split("\n")
    settings = report.settings
    for method in report.methods:
        published = PUBLISHED.get((suite.dataset, method))
        if published and any(s.level in published for s in settings):
            cells = [f"*{published[s.level]:.2f}*" if s.level in published else "" for s in settings]
            psnr_table.append(f"| *{method} (published)* | " + " | ".join(cells) + " |")
    lines += ["PSNR (dB):", "", *psnr_table, "", "SSIM:", "", report.wide_markdown(metric="ssim"), ""]
    lines += speed_markdown(report, methods)
    return "\n".join(lines) + "\n"


def speed_markdown(report: EvalReport, methods: list[Measured]) -> list[str]:
    """Seconds per input megapixel over the suite, ratio to DnCNN, peak RSS rise."""
    totals: dict[str, list[float]] = {}
    for result in report.results:
        entry = totals.setdefault(result.method, [0.0, 0.0])
        entry[0] += sum(i.seconds for i in result.images)
        entry[1] += sum(i.megapixels for i in result.images)
    per_mp = {name: s / mp for name, (s, mp) in totals.items() if mp > 0}
    reference_name = next((n for n in per_mp if "DnCNN" in n), None)
    reference = per_mp.get(reference_name) if reference_name else None
    peaks = {label: rise for m in methods for label, rise in m.peak_rise_mib.items()}
    lines = ["Speed (wall-clock time per megapixel of input on the CPU, whole suite; "
             f"{describe_environment(report.environment)}):", "",
             f"| method | s / MP | time / {reference_name or 'DnCNN'} | peak RSS rise (MiB) |",
             "|---|---:|---:|---:|"]
    for name, value in per_mp.items():
        if name == "input":  # the degraded input itself costs nothing
            continue
        ratio = f"{value / reference:.2f}" if reference else "-"
        peak = peaks.get(name, math.nan)
        lines.append(f"| {name} | {value:.3g} | {ratio} | {format_number(peak, 4)} |")
    return lines + [""]


def write_block(doc: Path, start: str, end: str, body: str) -> None:
    """Replace the text between two marker lines of ``doc`` (created when missing)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else (
        "# Benchmarks\n\nMeasured figures, each block written by the command named in it; "
        "protocol: `BENCHMARK.md` (fixed-seed degradations, 8-bit PSNR/SSIM).\n\n"
        "<!-- quality:start -->\n<!-- quality:end -->\n\n<!-- speed:start -->\n<!-- speed:end -->\n")
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}", encoding="utf-8")


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="denoise,jpeg,sr", help="comma list of tasks")
    parser.add_argument("--sets", default=None, help="comma list of data sets (default: all of the tasks')")
    parser.add_argument("--sigmas", default=None, help="comma list (default 15,25,50,10,35,60)")
    parser.add_argument("--qualities", default=None, help="comma list (default 10,20,30,40)")
    parser.add_argument("--scales", default=None, help="comma list (default 2,3,4)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--model", action="append", default=[], help="extra formnet model (name or folder)")
    parser.add_argument("--no-bm3d", action="store_true", help="skip BM3D (slow: seconds per image)")
    parser.add_argument("--no-single-pass", action="store_true",
                        help="skip the one-pass row of models whose card recommends a self-ensemble")
    parser.add_argument("--data-root", default=str(default_data_root()))
    parser.add_argument("--peers-root", default=str(default_peers_root() / "dncnn"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument("--block", default="quality",
                        help="name of the marked block of the markdown file this run rewrites "
                             "(separate blocks let runs of different tasks share one page)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure as JSON")
    return parser.parse_args(argv)


def _numbers(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return default if not text else tuple(float(v) for v in text.split(","))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = set(args.tasks.split(","))
    sets = set(args.sets.split(",")) if args.sets else None
    levels = {"denoise": _numbers(args.sigmas, SIGMAS), "jpeg": _numbers(args.qualities, QUALITIES),
              "sr": _numbers(args.scales, SCALES)}
    sections, everything = [], []
    started = time.strftime("%Y-%m-%d %H:%M")
    for suite in SUITES:
        if suite.task not in tasks or (sets is not None and suite.dataset not in sets):
            continue
        suite = Suite(suite.task, suite.dataset, suite.channels, levels[suite.task], suite.title)
        folder = Path(args.data_root) / suite.dataset
        if not folder.is_dir():
            print(f"{suite.dataset}: not found under {args.data_root}; skipped")
            continue
        images = read_dataset(folder, channels=suite.channels, limit=args.limit)
        channels = 3 if suite.channels == "color" else 1
        print(f"{suite.title}: {len(images)} images, levels {', '.join(f'{v:g}' for v in suite.levels)}")
        methods, notes = suite_methods(suite, channels, args)
        begin = time.perf_counter()
        report = evaluate(images, [Setting(suite.task, v) for v in suite.levels], methods,
                          dataset=suite.dataset, notes=notes,
                          progress=lambda text: print(f"  {text}", flush=True),
                          env=environment(device=args.device, precision="fp32"))
        seconds = time.perf_counter() - begin
        print(report.wide_markdown())
        sections.append(suite_markdown(suite, report, methods, len(images), seconds))
        everything.append(report.to_dict())
    if not sections:
        print("nothing to run")
        return 1
    limit_note = (f"**Partial run: first {args.limit} images of each set** - not comparable with "
                  "published figures. " if args.limit else "")
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (f"## Quality: {', '.join(sorted(tasks))}\n\nWritten by `{command.strip()}` on {started}. {limit_note}"
              "Rows in *italics* are published figures (BENCHMARK.md), for checking the protocol. "
              "DnCNN: the published MatConvNet models (cszn/DnCNN) read by `formnet_cli/peers.py`; "
              "BM3D: the `bm3d` package (CBM3D for color).\n\n")
    write_block(args.output, f"<!-- {args.block}:start -->", f"<!-- {args.block}:end -->",
                header + "\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
