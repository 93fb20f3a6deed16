"""Measure restorers on a data set with the fixed protocol of ``BENCHMARK.md``.

``formnet eval`` and ``benchmarks/quality.py`` are thin layers over this module:

1. :func:`read_dataset` reads the clean images (gray sets as gray, color as RGB; JPEG uses the
   gray ``L`` version, as the protocol says).
2. :func:`degrade` makes the method's input: ``noisy = clean / 255 + N(0, sigma / 255)`` with a
   fresh ``RandomState(0)`` per image, not clipped; the decoded Pillow JPEG at quality ``q``;
   or, for super-resolution, the HR image cropped to a multiple of the scale and shrunk with
   MATLAB's antialiased bicubic ``imresize`` (float, not quantised).
3. Each :class:`Method` restores the input; its output is clipped and rounded to 8 bits and
   scored against the clean 8-bit image: PSNR and SSIM over all pixels and channels for
   denoising and JPEG, on the MATLAB ``rgb2ycbcr`` luma with ``scale`` border pixels cropped
   for super-resolution (:mod:`formnet_cli.imaging.metrics`). The figure of a set is the mean of the
   per-image figures.
4. Time is wall time of the restore call alone (no file I/O), after one warm-up image per
   method; throughput is megapixels of *input* per second.

Methods: :class:`FormnetMethod` (any checkpoint, through :func:`formnet_cli.api.restore`, so
it measures exactly what users get), :class:`DegradedInput` (the input itself, or bicubic
for SR), :class:`BM3DMethod` (BM3D / CBM3D, ``bm3d`` package) and :class:`DnCNNMethod` (the
published DnCNN models read by :mod:`formnet_cli.evaluation.peers`).

>>> setting = Setting("denoise", 25)
>>> setting.label, setting.slug
('sigma 25', 'sigma25')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from formnet_cli.imaging import degradations
from formnet_cli.imaging import metrics
from formnet_cli.config import LEVEL_NAMES, QUALITY_RANGE, SR_SCALES, TASKS
from formnet_cli.errors import InvalidOptionError, ModelNotFoundError

__all__ = [
    "BM3DMethod",
    "DegradedInput",
    "DnCNNMethod",
    "EvalReport",
    "FormnetMethod",
    "ImageResult",
    "Method",
    "MethodResult",
    "Sample",
    "Setting",
    "compare_strip",
    "default_data_root",
    "degrade",
    "evaluate",
    "read_dataset",
    "resolve_dataset",
    "score",
    "strip_width",
]

EVAL_SIGMA_MAX = 255.0
"""Largest sigma an evaluation degrades with: above a model's range (75), for BM3D and DnCNN."""
ChannelMode = Literal["auto", "gray", "color"]
"""``auto`` (as stored), ``gray`` (Pillow ``L``) or ``color`` (RGB)."""


# -- settings and samples ------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One degradation: a task and its level (sigma on 0-255, JPEG quality, or SR scale)."""

    task: str
    level: float

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidOptionError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        level = float(self.level)
        low, high = QUALITY_RANGE
        if self.task == "denoise" and not 0 <= level <= EVAL_SIGMA_MAX:
            raise InvalidOptionError(f"sigma must be in [0, {EVAL_SIGMA_MAX:g}], got {level:g}")
        if self.task == "jpeg" and not (level.is_integer() and low <= level <= high):
            raise InvalidOptionError(f"JPEG quality must be an integer in {low}..{high}, got {level:g}")
        if self.task == "sr" and level not in SR_SCALES:
            raise InvalidOptionError(f"scale must be one of {', '.join(map(str, SR_SCALES))}, got {level:g}")
        object.__setattr__(self, "level", level)

    @property
    def value(self) -> int | float:
        return int(self.level) if float(self.level).is_integer() else self.level

    @property
    def label(self) -> str:
        if self.task == "denoise":
            return f"sigma {self.value:g}"
        if self.task == "jpeg":
            return f"q {self.value}"
        return f"x{self.value}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "")

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, LEVEL_NAMES[self.task]: self.value}


@dataclass
class Sample:
    """One image under one setting: the clean reference and the method's input.

    ``clean`` is uint8 ``H x W x C`` (cropped to a multiple of the scale for SR);
    ``degraded`` is float32 ``h x w x C`` with ``C`` equal to the clean image's.
    """

    name: str
    setting: Setting
    clean: np.ndarray
    degraded: np.ndarray

    @property
    def input_megapixels(self) -> float:
        return self.degraded.shape[0] * self.degraded.shape[1] / 1e6


def default_data_root() -> Path:
    """``$FORMNET_DATA``, else ``../shared/data`` (the project's shared data folder)."""
    return Path(os.environ.get("FORMNET_DATA", "../shared/data"))


def resolve_dataset(dataset: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None) -> Path:
    """A data set folder: the path itself when it exists, else ``data_root / dataset``."""
    path = Path(dataset)
    if path.is_dir():
        return path
    candidate = Path(data_root) / dataset if data_root is not None else default_data_root() / dataset
    if candidate.is_dir():
        return candidate
    raise InvalidOptionError(f"data set {dataset!s} not found (looked in {path} and {candidate}; "
                             "set --data-root or FORMNET_DATA)")


def read_dataset(folder: str | os.PathLike[str], *, channels: ChannelMode = "auto",
                 limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 H x W x C)`` for the images of a folder, sorted by name.

    ``channels``: ``auto`` keeps each file's own gray or color, ``gray`` converts color with
    Pillow's ``L`` (the protocol's gray version), ``color`` repeats gray into RGB.
    """
    from formnet_cli.io.images import is_image_path, read_image, to_uint

    if channels not in ("auto", "gray", "color"):
        raise InvalidOptionError(f"channels must be auto, gray or color, got {channels!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidOptionError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    if not paths:
        raise InvalidOptionError(f"{folder}: no images found")
    if limit is not None:
        paths = paths[: max(int(limit), 0)]
    images = []
    for path in paths:
        pixels = to_uint(read_image(path).pixels, 8)
        images.append((path.stem, convert_channels(pixels, channels)))
    return images


def convert_channels(image: np.ndarray, channels: ChannelMode) -> np.ndarray:
    """uint8 ``H x W x C`` to gray (Pillow ``L``, ITU-R 601 luma) or RGB, or unchanged (``auto``)."""
    if channels == "gray" and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image, "RGB").convert("L"))[:, :, None]
    if channels == "color" and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image


def degrade(name: str, clean: np.ndarray, setting: Setting) -> Sample:
    """The protocol's degraded input for one clean uint8 ``H x W x C`` image."""
    clean = np.asarray(clean)
    if clean.dtype != np.uint8 or clean.ndim != 3:
        raise ValueError(f"expected uint8 H x W x C, got {clean.dtype} {clean.shape}")
    if setting.task == "denoise":
        noisy = degradations.add_gaussian_noise(clean.astype(np.float64) / 255.0, setting.level, seed=0)
        return Sample(name, setting, clean, noisy)
    if setting.task == "jpeg":
        decoded = degradations.jpeg_compress(clean, int(setting.level))
        return Sample(name, setting, clean, decoded.astype(np.float32) / np.float32(255))
    scale = int(setting.level)
    high = degradations.modcrop(clean, scale)
    low = degradations.imresize(high.astype(np.float64) / 255.0, scale=1.0 / scale)
    return Sample(name, setting, np.ascontiguousarray(high), low.astype(np.float32))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``round(clip(x, 0, 1) * 255)`` as uint8 (the protocol's quantisation)."""
    return np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def psnr_of(sample: Sample, restored: np.ndarray) -> float:
    """PSNR of a restored float image against the sample's clean image, as :func:`score`
    gives it (the training's validation uses it)."""
    return _psnr(sample, _quantised(sample, restored))


def _psnr(sample: Sample, output: np.ndarray) -> float:
    if sample.setting.task == "sr":
        return metrics.sr_psnr(sample.clean, output, int(sample.setting.level))
    return metrics.psnr(sample.clean, output)


def _quantised(sample: Sample, restored: np.ndarray) -> np.ndarray:
    output = to_uint8(restored)
    if output.ndim == 2:
        output = output[:, :, None]
    if output.shape != sample.clean.shape:
        raise ValueError(f"{sample.name}: restored shape {output.shape} differs from the clean "
                         f"image's {sample.clean.shape}")
    return output


def score(sample: Sample, restored: np.ndarray) -> tuple[float, float]:
    """``(PSNR, SSIM)`` of a restored float image against the sample's clean image."""
    output = _quantised(sample, restored)
    try:
        if sample.setting.task == "sr":
            return _psnr(sample, output), metrics.sr_ssim(sample.clean, output, int(sample.setting.level))
        return _psnr(sample, output), metrics.ssim(sample.clean, output)
    except ValueError as error:  # an image too small for SSIM's window
        raise InvalidOptionError(f"image {sample.name!r} cannot be scored: {error}") from None


# -- methods -------------------------------------------------------------------------------
class Method:
    """A restorer under test: ``restore(sample)`` returns float ``H x W x C`` at the clean size."""

    name = "method"

    def label(self, setting: Setting) -> str:
        return self.name

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        """Why this method cannot run the setting (a short note), or ``None``."""
        return None

    def restore(self, sample: Sample) -> np.ndarray:
        raise NotImplementedError

    def formatted(self, sample: Sample) -> np.ndarray | None:
        """The formatting stage's output (FormResNet), for the comparison strips."""
        return None


class DegradedInput(Method):
    """The degraded input itself (bicubic upscaling for super-resolution): the floor to beat."""

    name = "input"

    def label(self, setting: Setting) -> str:
        return "bicubic" if setting.task == "sr" else "input"

    def restore(self, sample: Sample) -> np.ndarray:
        if sample.setting.task == "sr":
            return degradations.imresize(sample.degraded, scale=int(sample.setting.level))
        return sample.degraded


class BM3DMethod(Method):
    """BM3D for gray and CBM3D (opponent colour space) for RGB, given the true sigma."""

    name = "BM3D"

    def label(self, setting: Setting) -> str:
        return self.name

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        return None if setting.task == "denoise" else "BM3D is a denoiser"

    def restore(self, sample: Sample) -> np.ndarray:
        from formnet_cli.models.formresnet import bm3d_denoise

        noisy = sample.degraded.astype(np.float64)
        return bm3d_denoise(noisy, sample.setting.level / 255.0).astype(np.float32)


class FormnetMethod(Method):
    """A formnet checkpoint, run through :func:`formnet_cli.api.restore` (tiling included).

    Its name is ``name``, else ``formnet <model_label> (<n> passes, <backend>)``, where
    ``model_label`` defaults to the checkpoint's own name (the backend is named unless torch).
    """

    def __init__(self, loaded: Any, *, device: str = "auto", precision: str = "auto",
                 tile: int | str | None = "auto", ensemble: int | str = "auto",
                 name: str | None = None, model_label: str | None = None) -> None:
        from formnet_cli.api import check_model_options, ensemble_passes

        check_model_options(loaded, precision=precision, device=device)  # now, not per image
        self.loaded = loaded
        self.passes = ensemble_passes(ensemble, loaded)
        self.options = {"device": device, "precision": precision, "tile": tile,
                        "ensemble": self.passes}
        details = []
        if self.passes > 1:
            details.append(f"{self.passes} passes")
        if loaded.backend != "torch":
            details.append(loaded.backend)
        suffix = f" ({', '.join(details)})" if details else ""
        self.name = name or f"formnet {model_label or loaded.name}{suffix}"

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        config = self.loaded.config
        if setting.task != config.task:
            return f"model restores {config.task}"
        if setting.task == "denoise" and not config.sigma_range[0] <= setting.level <= config.sigma_range[1]:
            return f"sigma outside the model's range {config.sigma_range}"
        if setting.task == "sr" and int(setting.level) not in config.scales:
            return f"scale not among the model's {config.scales}"
        return None

    def _levels(self, setting: Setting) -> dict[str, Any]:
        name = LEVEL_NAMES[setting.task]
        return {name: setting.value if setting.task != "denoise" else float(setting.level)}

    def _run(self, loaded: Any, sample: Sample) -> np.ndarray:
        from formnet_cli import api

        image = api.restore(sample.degraded, sample.setting.task, model=loaded,
                            **self._levels(sample.setting), **self.options)
        return image if image.ndim == 3 else image[:, :, None]

    def restore(self, sample: Sample) -> np.ndarray:
        return self._run(self.loaded, sample)

    def formatted(self, sample: Sample) -> np.ndarray | None:
        if self.loaded.config.formatter == "none":
            return None  # a DiffResNet: the "formatted" image is the input itself
        # The same call with the model replaced by its formatting stage: same tiling and the
        # same colour handling (e.g. the Y channel of a gray SR model on an RGB image).
        from formnet_cli import api

        loaded = self.loaded  # the stage runs under torch, whatever runs the whole model
        if loaded.backend != "torch":
            loaded = api.load_model(loaded.path, device=self.options["device"])
        stage = dataclasses.replace(loaded, model=_FormattingStage(loaded.model))
        return self._run(stage, sample)


class _FormattingStage(torch.nn.Module):
    """``model.format`` behind the restorer interface the engine expects."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, level: torch.Tensor | float) -> torch.Tensor:
        return self.model.format(x, level)

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    @property
    def receptive_radius(self) -> int:
        return self.model.receptive_radius

    @property
    def supports_half(self) -> bool:
        return self.model.supports_half


class DnCNNMethod(Method):
    """The published DnCNN models: DnCNN-S per sigma (gray or color), or the blind gray DnCNN-3.

    ``networks`` maps a level (sigma) to its model, or ``None`` to one model for every level
    (DnCNN-3). DnCNN-3 runs on the decoded gray JPEG, and for super-resolution on the Y channel
    of the bicubic-upscaled image (Cb and Cr stay bicubic), as in its paper. One untiled pass.
    """

    def __init__(self, networks: dict[float | None, torch.nn.Module], *, name: str = "DnCNN",
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.networks = {level: network.to(self.device).eval() for level, network in networks.items()}
        self.name = name

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str], task: str, channels: int,
                    levels: Iterable[float], device: str | torch.device = "cpu") -> DnCNNMethod | None:
        """The DnCNN models in ``root`` for ``task``; ``None`` when there are none."""
        from formnet_cli.evaluation.peers import dncnn_path, load_dncnn

        networks: dict[float | None, torch.nn.Module] = {}
        if task == "denoise":
            for level in levels:
                path = dncnn_path(root, task, channels, level)
                if path is not None:
                    networks[float(level)] = load_dncnn(path)
            name = "DnCNN-S" if channels == 1 else "CDnCNN-S"
        else:
            path = dncnn_path(root, task, 1)
            if path is not None:
                networks[None] = load_dncnn(path)
            name = "DnCNN-3"
        return cls(networks, name=name, device=device) if networks else None

    def _network(self, setting: Setting) -> torch.nn.Module | None:
        return self.networks.get(None, self.networks.get(float(setting.level)))

    def unsupported(self, setting: Setting, channels: int) -> str | None:
        network = self._network(setting)
        if network is None:
            return "no published model"
        peer_channels = getattr(network, "channels", 1)
        if setting.task == "denoise" and peer_channels != channels:
            return f"model is for {'gray' if peer_channels == 1 else 'color'} images"
        if setting.task == "jpeg" and channels != 1:
            return "DnCNN-3 is a gray model"
        return None

    def run_planes(self, image: np.ndarray, setting: Setting) -> np.ndarray:
        """The DnCNN's restoration of a float ``H x W x C`` image (the network subtracts the
        noise it predicts: :class:`~formnet_cli.evaluation.peers.DnCNN`)."""
        network = self._network(setting)
        assert network is not None
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        with torch.inference_mode():
            output = network(tensor[None].to(self.device))[0]
        return output.float().cpu().numpy().transpose(1, 2, 0)

    def restore(self, sample: Sample) -> np.ndarray:
        setting = sample.setting
        if setting.task != "sr":
            return self.run_planes(sample.degraded, setting)
        upscaled = degradations.imresize(sample.degraded, scale=int(setting.level))
        if upscaled.shape[2] == 1:
            return self.run_planes(upscaled, setting)
        ycbcr = degradations.rgb_to_ycbcr(upscaled)
        ycbcr[:, :, :1] = self.run_planes(ycbcr[:, :, :1].astype(np.float32), setting)
        return degradations.ycbcr_to_rgb(ycbcr).astype(np.float32)


# -- results -------------------------------------------------------------------------------
@dataclass
class ImageResult:
    image: str
    psnr: float
    ssim: float
    seconds: float
    megapixels: float


@dataclass
class MethodResult:
    """One method under one setting: per-image figures and their means, or a note why none."""

    method: str
    setting: Setting
    images: list[ImageResult] = field(default_factory=list)
    note: str = ""

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


# -- the evaluation loop -------------------------------------------------------------------
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
    results: list[MethodResult] = []
    warmed: set[int] = set()
    for setting in settings:
        rows: dict[object, MethodResult] = {
            name: MethodResult(name, setting, note=note) for name, note in (notes or {}).items()}
        for method in methods:
            reason = method.unsupported(setting, images[0][1].shape[2])
            rows[id(method)] = MethodResult(method.label(setting), setting, note=reason or "")
        for name, clean in images:
            sample = degrade(name, clean, setting)
            for method in methods:
                row = rows[id(method)]
                if method.unsupported(setting, clean.shape[2]) is not None:
                    continue
                if warmup and id(method) not in warmed:
                    method.restore(sample)
                    warmed.add(id(method))
                if progress:
                    progress(f"{setting.label} {name} {row.method}")
                start = time.perf_counter()
                restored = method.restore(sample)
                seconds = time.perf_counter() - start
                value_psnr, value_ssim = score(sample, restored)
                row.images.append(ImageResult(name, value_psnr, value_ssim, seconds,
                                              sample.input_megapixels))
                if save_dir is not None and not isinstance(method, DegradedInput):
                    _save_outputs(Path(save_dir), sample, method, row.method, restored)
            if save_dir is not None:
                _save_degraded(Path(save_dir), sample)
        results.extend(rows.values())
    return EvalReport(dataset=dataset, task=task, results=results, environment=env or environment())


# -- images for people ---------------------------------------------------------------------
STRIP_GAP = 8
"""Pixels between panels (and around them) in a comparison strip."""
_LABEL_HEIGHT = 14
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_MARK = (255, 64, 64)


def strip_width(panel_width: int, panels: int) -> int:
    """Width in pixels of a strip of ``panels`` panels each ``panel_width`` wide."""
    return panels * panel_width + (panels + 1) * STRIP_GAP


def detail_window(clean: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side x side`` window with the most gradient energy.

    Energy is the sum of squared finite differences of the gray image, summed over the window
    with an integral image, so the search is exhaustive and ``O(H W)``.
    """
    gray = np.asarray(clean, dtype=np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    height, width = gray.shape
    side = min(side, height, width)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.diff(gray, axis=1) ** 2
    energy[1:, :] += np.diff(gray, axis=0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
            + integral[:-side, :-side])
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def _as_rgb8(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Any float [0, 1] or uint8 image as uint8 RGB of ``shape`` (nearest-neighbour resize)."""
    array = np.asarray(image)
    array = to_uint8(array) if array.dtype != np.uint8 else array
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[:2] != tuple(shape):
        array = np.asarray(Image.fromarray(array).resize((shape[1], shape[0]), Image.NEAREST))
    return array


def compare_strip(panels: Sequence[tuple[str, np.ndarray]], *, detail_from: np.ndarray | None = None,
                  crop: int | None = None) -> np.ndarray:
    """A labelled side-by-side strip with a zoomed crop of each panel underneath (uint8 RGB).

    ``panels`` are ``(label, image)`` pairs, float [0, 1] or uint8, ``H x W`` or ``H x W x C``;
    all are shown at the size of the largest panel (smaller ones, such as an SR input, are
    enlarged with nearest-neighbour). The zoomed window is where ``detail_from`` (default:
    the last panel, normally the clean image) has the most gradient energy; it is marked
    with a red box on every panel.

    >>> strip = compare_strip([("a", np.zeros((32, 40))), ("b", np.ones((32, 40)))])
    >>> strip.shape[1] == strip_width(40, 2)
    True
    """
    if not panels:
        raise InvalidOptionError("nothing to compare")
    reference = np.asarray(panels[-1][1])
    height, width = max((np.shape(image)[:2] for _, image in panels), key=lambda size: size[0] * size[1])
    images = [_as_rgb8(image, (height, width)) for _, image in panels]
    side = crop or max(8, min(height, width) // 4)
    side = min(side, height, width)
    top, left = detail_window(_as_rgb8(detail_from if detail_from is not None else reference,
                                       (height, width)), side)
    zoom = max(1, width // side)
    zoomed_side = side * zoom
    count = len(images)
    canvas_height = STRIP_GAP + _LABEL_HEIGHT + height + STRIP_GAP + zoomed_side + STRIP_GAP
    canvas = Image.new("RGB", (strip_width(width, count), canvas_height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, ((label, _), image) in enumerate(zip(panels, images)):
        x = STRIP_GAP + index * (width + STRIP_GAP)
        y = STRIP_GAP + _LABEL_HEIGHT
        draw.text((x, STRIP_GAP - 1), label, fill=_TEXT, font=font)
        canvas.paste(Image.fromarray(image), (x, y))
        draw.rectangle([x + left, y + top, x + left + side - 1, y + top + side - 1], outline=_MARK)
        detail = Image.fromarray(image[top:top + side, left:left + side]).resize(
            (zoomed_side, zoomed_side), Image.NEAREST)
        canvas.paste(detail, (x, y + height + STRIP_GAP))
    return np.asarray(canvas)


def _write_png(path: Path, image: np.ndarray) -> None:
    from formnet_cli.io.images import LoadedImage, write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(image)
    pixels = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else np.clip(pixels, 0, 1)
    write_image(path, LoadedImage(pixels))


def _method_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")


def _save_degraded(root: Path, sample: Sample) -> None:
    folder = root / sample.setting.slug
    _write_png(folder / f"{sample.name}_degraded.png", to_uint8(sample.degraded))


def _save_outputs(root: Path, sample: Sample, method: Method, label: str, restored: np.ndarray) -> None:
    folder = root / sample.setting.slug
    slug = _method_slug(label)
    restored8 = to_uint8(restored)
    _write_png(folder / f"{sample.name}_{slug}.png", restored8)
    value_psnr, _ = score(sample, restored)
    degraded_label = "input (LR, enlarged)" if sample.setting.task == "sr" else "input"
    panels: list[tuple[str, np.ndarray]] = [(f"{degraded_label} {sample.setting.label}", sample.degraded)]
    formatted = method.formatted(sample)
    if formatted is not None:
        panels.append(("formatted", formatted))
    panels.append((f"{label} {format_psnr(value_psnr)} dB", restored8))
    panels.append(("clean", sample.clean))
    _write_png(folder / f"{sample.name}_{slug}_strip.png", compare_strip(panels))


def baseline_methods(task: str, channels: int, levels: Sequence[float], *, bm3d: bool, dncnn: bool,
                     peers_root: str | os.PathLike[str]) -> tuple[list[Method], list[str]]:
    """The methods formnet is measured against: the degraded input (always), BM3D/CBM3D and the
    published DnCNN models from ``peers_root`` where asked; notes say what was asked but is not
    there."""
    methods: list[Method] = [DegradedInput()]
    if bm3d:
        methods.append(BM3DMethod())
    notes = []
    if dncnn:
        root = Path(peers_root)
        peer = DnCNNMethod.from_folder(root, task, channels, levels) if root.is_dir() else None
        if peer is None:
            shown = ", ".join(f"{level:g}" for level in levels)
            notes.append(f"no DnCNN model for {task} at {shown} in {root}; skipped")
        else:
            methods.append(peer)
    return methods, notes


def load_default_methods(task: str, channels: int, *, models: Sequence[str] | None = None,
                         device: str = "auto", precision: str = "auto",
                         tile: int | str | None = "auto", ensemble: int | str = "auto",
                         backend: str = "torch") -> tuple[list[Method], dict[str, str]]:
    """formnet methods for ``models`` (names or folders), or the task's default model.

    Returns the methods and, when no ``models`` were named and the task has no weights, a
    note ``{"formnet": "no weights yet"}`` instead of failing. A checkpoint named twice is
    run once; checkpoints sharing a name (a fine-tuned copy of a bundled model) are labelled
    by the name or path they were given as, so that each has its own row and saved images.
    """
    from formnet_cli import api

    if models:
        given: dict[Path, tuple[str, Any]] = {}  # checkpoint folder -> (as given, loaded)
        for model in models:
            loaded = api.load_model(model, task=task, channels=channels, device=device,
                                    backend=backend)
            given.setdefault(loaded.path, (str(model), loaded))
        names = [loaded.name for _, loaded in given.values()]
        return [FormnetMethod(loaded, device=device, precision=precision, tile=tile, ensemble=ensemble,
                              model_label=model if names.count(loaded.name) > 1 else None)
                for model, loaded in given.values()], {}
    try:  # the task's default model, or else the one for the other channel count
        loaded = api.load_model(None, task=task, channels=channels, device=device,
                                backend=backend)
    except ModelNotFoundError:
        return [], {"formnet": "no weights yet"}
    return [FormnetMethod(loaded, device=device, precision=precision, tile=tile, ensemble=ensemble)], {}
