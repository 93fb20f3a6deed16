"""Stress benchmark: formnet against the DnCNN model of its task on the stress sets, per image.

    python benchmarks/stress_sets.py --out /tmp/stress
    python benchmarks/stress.py --root /tmp/stress --task denoise --levels 15,25,50 \\
        --sets color-saturated,color-photos --models denoise-color --json /tmp/stress-color.json

Protocol ``../shared/BENCHMARK.md`` (fresh RandomState(0) noise per image, uint8 PSNR). For
every set and level it reports each method's mean PSNR and, per formnet model, the worst
image's margin over the DnCNN model (DnCNN-S / CDnCNN-S, DnCNN-3 for JPEG and SR) and, on colour
denoising, over the gray model run on R, G and B separately ("gray per channel"). A mean hides
the image that got worse: the worst margin is the figure to read. Threads: ``--threads``
(default 1, so that timings compare).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formnet_cli import api  # noqa: E402
from formnet_cli.evaluation.baselines import DegradedInput, DnCNNMethod  # noqa: E402
from formnet_cli.evaluation.datasets import read_dataset  # noqa: E402
from formnet_cli.evaluation.methods import FormnetMethod, Method  # noqa: E402
from formnet_cli.evaluation.peers import default_peers_root  # noqa: E402
from formnet_cli.evaluation.protocol import Setting, degrade, psnr_of  # noqa: E402


@dataclass
class Row:
    """One method's per-image PSNRs on one set at one level."""

    method: str
    psnr: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.psnr.values())))


def measure(folder: Path, task: str, level: float, models: list[str], *, ensemble: str,
            gray_per_channel: bool) -> list[Row]:
    """Every method on every image of ``folder`` at one level."""
    images = read_dataset(folder, channels="gray" if task != "denoise" else "auto")
    channels = images[0][1].shape[2]
    setting = Setting(task, level)
    methods: list[Method] = [DegradedInput()]
    peer = DnCNNMethod.from_folder(default_peers_root(), task, channels, [level])
    if peer is not None and peer.unsupported(setting, channels) is None:
        methods.append(peer)
    for model in models:
        loaded = api.load_model(model, task=task, channels=channels)
        label = Path(model).name if Path(model).exists() else model
        methods.append(FormnetMethod(loaded, ensemble=ensemble, name=f"formnet {label}"))
    if gray_per_channel and channels == 3 and task == "denoise":
        gray = api.load_model("denoise-gray", task="denoise", channels=1)
        methods.append(FormnetMethod(gray, ensemble=ensemble, name="gray per channel"))
    rows = [Row(method.name if hasattr(method, "name") else method.label(setting)) for method in methods]
    for name, clean in images:
        sample = degrade(name, clean, setting)
        for method, row in zip(methods, rows):
            row.psnr[name] = psnr_of(sample, method.restore(sample))
    return rows


def margins(rows: list[Row], of: str, over: str) -> tuple[float, str]:
    """The worst per-image PSNR margin of method ``of`` over ``over``, and that image."""
    first = next(r for r in rows if r.method == of)
    second = next(r for r in rows if r.method == over)
    differences = {name: first.psnr[name] - second.psnr[name] for name in first.psnr}
    worst = min(differences, key=differences.get)
    return differences[worst], worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder made by stress_sets.py")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: every folder)")
    parser.add_argument("--task", default="denoise", choices=["denoise", "jpeg", "sr"])
    parser.add_argument("--levels", default="15,25,50")
    parser.add_argument("--models", default="", help="comma-separated model names or folders (default: the task's)")
    parser.add_argument("--ensemble", default="auto")
    parser.add_argument("--no-gray-per-channel", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.sets.split(",") if args.sets else sorted(p.name for p in args.root.iterdir() if p.is_dir())
    default_model = {"denoise": None, "jpeg": "jpeg-gray", "sr": "sr-y"}[args.task]
    results = []
    for name in names:
        folder = args.root / name
        channels = read_dataset(folder, limit=1)[0][1].shape[2]
        models = args.models.split(",") if args.models else [default_model or
                                                             ("denoise-color" if channels == 3 else "denoise-gray")]
        for level in (float(v) for v in args.levels.split(",")):
            rows = measure(folder, args.task, level, models, ensemble=args.ensemble,
                           gray_per_channel=not args.no_gray_per_channel)
            result = {"set": name, "task": args.task, "level": level,
                      "methods": {row.method: {"mean": row.mean, "images": row.psnr} for row in rows},
                      "worst": {}}
            peers = [r.method for r in rows if "DnCNN" in r.method] + [r.method for r in rows if r.method == "gray per channel"]
            for row in rows:
                if row.method.startswith("formnet"):
                    for peer in peers:
                        margin, image = margins(rows, row.method, peer)
                        result["worst"][f"{row.method} - {peer}"] = {"margin": margin, "image": image}
            results.append(result)
            means = "  ".join(f"{row.method} {row.mean:.2f}" for row in rows)
            worst = "  ".join(f"[{key}: {value['margin']:+.2f} on {value['image']}]"
                              for key, value in result["worst"].items())
            print(f"{name} {args.task} {level:g}: {means}  worst {worst}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        print(markdown(results))
    return 0


def markdown(results: list[dict]) -> str:
    """One row per set and level: each method's mean PSNR, then each formnet model's worst
    per-image margin over each peer (and the image)."""
    methods = list(results[0]["methods"])
    margins = list(results[0]["worst"])
    head = ["set", "level", *methods, *(f"worst: {key}" for key in margins)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for result in results:
        cells = [result["set"], f"{result['level']:g}"]
        cells += [f"{result['methods'][m]['mean']:.2f}" for m in methods]
        cells += [f"{result['worst'][k]['margin']:+.2f} ({result['worst'][k]['image']})" for k in margins]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
