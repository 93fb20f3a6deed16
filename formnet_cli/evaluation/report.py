"""What an evaluation measured, and its text: tables, JSON, number formats, the environment.

Per image: PSNR, SSIM, the wall time of the restore call alone (no file I/O) and the input's
megapixels; per method and setting, their means (throughput: megapixels of *input* per second).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from formnet_cli.evaluation.protocol import Setting

__all__ = ["EvalReport", "ImageResult", "MeasuredCheckpoint", "MethodResult", "describe_environment",
           "environment", "format_number", "format_psnr", "format_ssim"]


@dataclass(frozen=True)
class MeasuredCheckpoint:
    """The formnet checkpoint a method ran, as the report records it: its folder, its name and
    the self-ensemble passes measured (what :func:`~formnet_cli.evaluation.scores.record_scores`
    matches a row to a checkpoint by)."""

    path: str
    name: str
    ensemble: int


@dataclass
class ImageResult:
    image: str
    psnr: float
    ssim: float
    seconds: float
    """Wall time of the restore call; NaN where not timed (the degraded input itself)."""
    megapixels: float
    """The input's (the low-resolution image for super-resolution)."""


@dataclass
class MethodResult:
    """One method under one setting: per-image figures and their means, or a note why none."""

    method: str
    setting: Setting
    images: list[ImageResult] = field(default_factory=list)
    note: str = ""
    checkpoint: MeasuredCheckpoint | None = None
    """The checkpoint measured (formnet methods); ``None`` for the baselines."""

    @property
    def mean_psnr(self) -> float:
        return _mean([r.psnr for r in self.images])

    @property
    def mean_ssim(self) -> float:
        return _mean([r.ssim for r in self.images])

    @property
    def seconds_per_image(self) -> float:
        return _mean([r.seconds for r in self.images])

    @property
    def megapixels_per_second(self) -> float:
        seconds = sum(r.seconds for r in self.images)
        return sum(r.megapixels for r in self.images) / seconds if seconds > 0 else math.nan

    @property
    def seconds_per_megapixel(self) -> float:
        rate = self.megapixels_per_second
        return 1.0 / rate if rate and not math.isnan(rate) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "setting": self.setting.to_dict(), "label": self.setting.label,
            "note": self.note, "images_scored": len(self.images),
            "mean_psnr": _json_number(self.mean_psnr), "mean_ssim": _json_number(self.mean_ssim),
            "seconds_per_image": _json_number(self.seconds_per_image),
            "megapixels_per_second": _json_number(self.megapixels_per_second),
            "seconds_per_megapixel": _json_number(self.seconds_per_megapixel),
            "images": [{key: _json_number(value) if isinstance(value, float) else value
                        for key, value in dataclasses.asdict(r).items()} for r in self.images],
            "checkpoint": dataclasses.asdict(self.checkpoint) if self.checkpoint else None,
        }


@dataclass
class EvalReport:
    """Everything one evaluation measured, with the environment the times belong to."""

    dataset: str
    task: str
    results: list[MethodResult]
    environment: dict[str, Any] = field(default_factory=dict)

    def result(self, method: str, setting: Setting) -> MethodResult | None:
        return next((r for r in self.results if r.method == method and r.setting == setting), None)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.results))

    @property
    def settings(self) -> list[Setting]:
        return list(dict.fromkeys(r.setting for r in self.results))

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "task": self.task, "environment": self.environment,
                "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        """JSON text; infinite PSNR (identical images) is the string ``"inf"``, missing ``null``."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_markdown(self, *, per_image: bool = False) -> str:
        """One row per setting and method: PSNR, SSIM, seconds per image, MP/s, note."""
        lines = [f"{self.dataset} ({self.task}): mean over images. {describe_environment(self.environment)}",
                 "",
                 "| setting | method | PSNR (dB) | SSIM | s / image | MP/s | note |",
                 "|---|---|---:|---:|---:|---:|---|"]
        for r in self.results:
            lines.append(f"| {r.setting.label} | {r.method} | {format_psnr(r.mean_psnr)} | "
                         f"{format_ssim(r.mean_ssim)} | {format_number(r.seconds_per_image, 3)} | "
                         f"{format_number(r.megapixels_per_second, 3)} | {r.note} |")
        if per_image:
            lines += ["", "| setting | method | image | PSNR (dB) | SSIM | s |", "|---|---|---|---:|---:|---:|"]
            for r in self.results:
                for image in r.images:
                    lines.append(f"| {r.setting.label} | {r.method} | {image.image} | "
                                 f"{format_psnr(image.psnr)} | {format_ssim(image.ssim)} | "
                                 f"{format_number(image.seconds, 3)} |")
        return "\n".join(lines) + "\n"

    def wide_markdown(self, *, metric: str = "psnr") -> str:
        """A table of methods (rows) by settings (columns) of mean PSNR (or ``ssim``)."""
        settings = self.settings
        header = "| method | " + " | ".join(s.label for s in settings) + " |"
        lines = [header, "|---|" + "---:|" * len(settings)]
        for method in self.methods:
            cells = []
            for setting in settings:
                result = self.result(method, setting)
                if result is None:
                    cells.append("")
                elif result.note and not result.images:
                    cells.append(result.note)
                else:
                    cells.append(format_psnr(result.mean_psnr) if metric == "psnr"
                                 else format_ssim(result.mean_ssim))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _json_number(value: float) -> float | str | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def format_psnr(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f}"


def format_ssim(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def format_number(value: float, digits: int = 3) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def environment(device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:
    """Threads, device, precision and library versions the timings were taken with."""
    import platform

    return {"threads": torch.get_num_threads(), "device": str(device), "precision": precision,
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def describe_environment(env: dict[str, Any]) -> str:
    if not env:
        return ""
    threads = env.get("threads", "?")
    return (f"Times: {env.get('device', 'cpu')}, {env.get('precision', 'fp32')}, "
            f"{threads} thread{'' if threads == 1 else 's'}, torch {env.get('torch', '?')}.")
