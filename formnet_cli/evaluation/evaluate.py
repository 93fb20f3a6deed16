"""Measure restorers on a data set with the fixed protocol of ``BENCHMARK.md``.

``formnet eval`` and ``benchmarks/quality.py`` are thin layers over this package:

1. :func:`~formnet_cli.evaluation.datasets.read_dataset` reads the clean images (gray sets as
   gray, color as RGB; JPEG uses the gray ``L`` version, as the protocol says).
2. :func:`evaluate` degrades each image under each setting
   (:func:`~formnet_cli.evaluation.protocol.degrade`), restores it with each
   :class:`~formnet_cli.evaluation.methods.Method` and scores the output
   (:func:`~formnet_cli.evaluation.protocol.score`). The figure of a set is the mean of the
   per-image figures (:class:`~formnet_cli.evaluation.report.EvalReport`).
3. Time is wall time of the restore call alone (no file I/O, the model loaded), after one
   warm-up image per method (and channel count); throughput is megapixels of *input* per
   second, as ``formnet restore`` counts them (whose time is its whole run's). The degraded
   input itself is not timed (no figure).

A folder may mix gray and colour images: each is scored in its own channels, by a method that
can run it (the default models: the task's model for each image's channels, in one row).

Methods: :class:`~formnet_cli.evaluation.methods.FormnetMethod` (any checkpoint, through
:func:`formnet_cli.api.restore`, so it measures exactly what users get) and the baselines of
:mod:`formnet_cli.evaluation.baselines` (the degraded input or bicubic, BM3D / CBM3D, the
published DnCNN models).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from formnet_cli.errors import InvalidOptionError
from formnet_cli.evaluation.baselines import DegradedInput
from formnet_cli.evaluation.methods import Method
from formnet_cli.evaluation.protocol import Setting, degrade, score
from formnet_cli.evaluation.report import EvalReport, ImageResult, MethodResult, environment
from formnet_cli.evaluation.strips import save_degraded, save_outputs

__all__ = ["StatusCallback", "evaluate"]

StatusCallback = Callable[[str], None]
"""Told what is being restored (``"sigma 25 img01 DnCNN-S"``) before each restoration."""


def evaluate(images: Sequence[tuple[str, np.ndarray]], settings: Iterable[Setting],
             methods: Sequence[Method], *, dataset: str = "images", warmup: bool = True,
             save_dir: str | os.PathLike[str] | None = None,
             notes: dict[str, str] | None = None, progress: StatusCallback | None = None,
             env: dict[str, Any] | None = None) -> EvalReport:
    """Degrade each image under each setting, restore it with each method and score it.

    ``notes`` maps a method name to a reason it has no results (e.g. ``"no weights yet"``):
    such methods get a row with the note and no figures. With ``save_dir``, every restored
    image and a comparison strip per image and method are written to
    ``save_dir/<setting>/``. Each method is warmed up once (untimed) on its first image.
    """
    settings = list(settings)
    if not images:
        raise InvalidOptionError("no images to evaluate")
    tasks = {s.task for s in settings}
    if len(tasks) != 1:
        raise InvalidOptionError("one evaluation covers one task")
    task = tasks.pop()
    channel_counts = sorted({clean.shape[2] for _, clean in images})
    results: list[MethodResult] = []
    warmed: set[tuple[int, int]] = set()  # (method, channels): a mixed folder's two models
    for setting in settings:
        rows: dict[object, MethodResult] = {
            name: MethodResult(name, setting, note=note) for name, note in (notes or {}).items()}
        for method in methods:
            reasons = {count: method.unsupported(setting, count) for count in channel_counts}
            rows[id(method)] = MethodResult(method.label(setting), setting, note=_note(reasons),
                                            checkpoint=method.checkpoint())
        for name, clean in images:
            sample = degrade(name, clean, setting)
            for method in methods:
                row = rows[id(method)]
                if method.unsupported(setting, clean.shape[2]) is not None:
                    continue
                if warmup and (id(method), clean.shape[2]) not in warmed:
                    method.restore(sample)
                    warmed.add((id(method), clean.shape[2]))
                if progress:
                    progress(f"{setting.label} {name} {row.method}")
                start = time.perf_counter()
                restored = method.restore(sample)
                seconds = time.perf_counter() - start if method.timed(setting) else math.nan
                value_psnr, value_ssim = score(sample, restored)
                row.images.append(ImageResult(name, value_psnr, value_ssim, seconds,
                                              sample.input_megapixels))
                if save_dir is not None and not isinstance(method, DegradedInput):
                    save_outputs(Path(save_dir), sample, method, row.method, restored)
            if save_dir is not None:
                save_degraded(Path(save_dir), sample)
        results.extend(rows.values())
    return EvalReport(dataset=dataset, task=task, results=results, environment=env or environment())


def _note(reasons: dict[int, str | None]) -> str:
    """A row's note from why the method cannot run each channel count of the images (1 gray,
    3 colour): the reason where it runs none, which images it leaves out where it runs some."""
    refused = {count: reason for count, reason in reasons.items() if reason is not None}
    if len(refused) == len(reasons):
        return next(iter(refused.values()))
    return "; ".join(f"{'gray' if count == 1 else 'colour'} images not scored: {reason}"
                     for count, reason in refused.items())
