"""The options of one restore, parsed once where they enter and passed down typed.

:class:`RestoreOptions` is built where a value first enters formnet: by ``formnet restore``
from Typer's values, by :func:`formnet_cli.restore` from its keyword arguments. Its
constructor reads the spellings both take (``sigma="25"``, ``tile="none"``, ``scale="2"``) and
refuses a value no model accepts with an :class:`~formnet_cli.errors.InvalidOptionError` of
one line; what it holds is typed (the Literals below), and nothing downstream (the batch, the
API's internals, the engine) parses a string again. The checks that need a model (its sigma
range, its scales) or a device (is it there, does it compute in fp16) are made where the model
and the device are: :mod:`formnet_cli.api`.

Importing this module does not import torch, so the command line checks options quickly.

>>> options = RestoreOptions(sigma="25", tile="none", ensemble="2")
>>> options.task, options.sigma, options.tile, options.ensemble, options.quality
('denoise', 25.0, None, 2, None)
>>> RestoreOptions("jpeg").quality, RestoreOptions("sr", scale="4").scale
('auto', 4)
>>> RestoreOptions().tasks, RestoreOptions(sigma=25, scale=2).task, RestoreOptions("jpeg,sr", scale=2).tasks
((), 'denoise,sr', ('jpeg', 'sr'))
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

from formnet_cli.config import (FORMATTERS, LEVEL_NAMES, QUALITY_RANGE, SIGMA_MAX, SR_SCALES, TASKS,
                                FormatterKind, Task)
from formnet_cli.errors import InvalidOptionError

if TYPE_CHECKING:
    from formnet_cli.loading import LoadedModel

__all__ = ["AUTO", "BACKENDS", "BACKEND_ENV", "ENSEMBLE_SIZES", "NATURAL_ORDER", "PRECISIONS", "RUNTIMES",
           "Backend", "Ensemble", "Precision", "Quality", "RestoreOptions", "Sigma", "Task", "Tile",
           "UnreadableOptionError", "parse_backend", "parse_ensemble", "parse_precision", "parse_scale",
           "parse_task", "read_quality", "read_sigma", "read_tasks", "read_tile"]

Sigma = Union[float, Literal["auto"]]
"""A noise level on the 0-255 scale, or ``auto``: estimated from the image."""
Quality = Union[int, Literal["auto", "blind"]]
"""A JPEG quality; ``auto``: read from the JPEG file, else blind; ``blind``: not conditioned."""
Tile = Union[int, Literal["auto"], None]
"""A tile side in pixels; ``auto``: sized from free memory; ``None``: one untiled pass."""
Ensemble = Union[int, Literal["auto"]]
"""Flipped/rotated passes averaged; ``auto``: the number the model card recommends."""
Precision = Literal["auto", "fp32", "fp16", "bf16"]
Backend = Literal["auto", "torch", "onnxruntime", "openvino"]
"""What runs the network (:mod:`formnet_cli.inference.backends`); ``auto``: chosen per model."""

AUTO = "auto"
"""The task that decides, per image, what it needs (:mod:`formnet_cli.auto`)."""
NATURAL_ORDER: tuple[Task, ...] = ("jpeg", "denoise", "sr")
"""The order of the steps that given levels imply (``sigma=25, scale=2``: denoise, then sr):
JPEG artifacts first (the model expects a JPEG's own blocks), noise before upscaling (which
would enlarge it)."""

PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "fp16", "bf16")
ENSEMBLE_SIZES: tuple[int, ...] = (1, 2, 4, 8)
"""The self-ensemble sizes the engine runs (the keys of ``tiling.ENSEMBLE_VIEWS``)."""
BACKENDS: tuple[Backend, ...] = ("auto", "torch", "onnxruntime", "openvino")
RUNTIMES: tuple[Backend, ...] = ("onnxruntime", "openvino")
"""The backends that run the exported ONNX graph (on the CPU, in float32)."""
BACKEND_ENV = "FORMNET_BACKEND"
"""What ``backend="auto"`` means when set (``torch``, ``onnxruntime`` or ``openvino``)."""


class UnreadableOptionError(InvalidOptionError):
    """A value that spells nothing its option takes (``sigma='loud'``).

    The message is the API's; :attr:`usage` says the same as the command line words a value
    it cannot read (``'loud' is not a number or 'auto'``, after ``Invalid value for '--sigma'``).
    """

    def __init__(self, message: str, value: object, expected: str) -> None:
        super().__init__(message)
        self.usage = f"{value!r} is not {expected}"


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore an image: the tasks, their levels, the model and how to run it.

    The constructor parses and checks every field (see the module docstring). ``task`` is
    ``"auto"`` (the default), one task, or several joined by commas (``"jpeg,denoise"``), run
    in that order; ``tasks`` says the same as a sequence (``["jpeg", "denoise"]``). ``auto``
    with no level given decides per image (:mod:`formnet_cli.auto`); with levels, it runs the
    tasks they imply, in :data:`NATURAL_ORDER` (``sigma=25, scale=2``: denoise, then x2).
    Parsed, :attr:`tasks` holds the steps (``()``: decided per image) and :attr:`task` their
    spelling (``"auto"``, ``"denoise"``, ``"jpeg,denoise"``).

    The level of every step is set (``sigma`` for denoise, ``"auto"`` when not given;
    ``quality`` for jpeg, likewise; ``scale`` for sr, required) and the levels of the other
    tasks are ``None``: a level given for a task not run (``scale`` with denoise: a forgotten
    ``task="sr"``) is refused rather than ignored.
    """

    task: str = AUTO
    tasks: Sequence[str] | None = None
    sigma: Sigma | None = None
    quality: Quality | None = None
    scale: int | None = None
    model: str | LoadedModel | None = None
    """A registry name or checkpoint folder (a path-like is kept as its string), or a model
    :func:`formnet_cli.load_model` loaded; ``None``: the task's default model."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; whether it is there is checked
    where the model runs (with a loaded model, ``auto`` is where it was loaded)."""
    precision: Precision = "auto"
    tile: Tile = "auto"
    tile_overlap: int | None = None
    """Pixels over which neighbouring tiles are blended; ``None``: the engine's default."""
    batch_size: int = 1
    """Tiles per forward pass."""
    ensemble: Ensemble = "auto"
    strength: float = 1.0
    """How much of the restoration to apply: 0 gives the input (bicubic-upscaled for sr),
    1 the model's output; in between, blended linearly."""
    formatter: FormatterKind | None = None
    """Without ``model``: the task's model with this formatting stage (``none``: DiffResNet,
    ``cnn``, ``bm3d``); ``None``: the task's default model."""
    backend: Backend = "auto"
    """What runs the network: ``torch``, or the model's ONNX graph under ``onnxruntime`` or
    ``openvino``; ``auto``: chosen per model and device (``FORMNET_BACKEND`` when set; torch with
    fp16 / bf16): :func:`formnet_cli.inference.backends.choose_backend`."""

    def __post_init__(self) -> None:
        steps = _parse_steps(self.task, self.tasks)
        levels = {"sigma": self.sigma, "quality": self.quality, "scale": self.scale}
        if not steps:  # auto: the tasks the given levels imply, if any
            steps = tuple(task for task in NATURAL_ORDER if levels[LEVEL_NAMES[task]] is not None)
        for owner, name in LEVEL_NAMES.items():
            if owner not in steps and levels[name] is not None:
                raise InvalidOptionError(f"{name} applies to task '{owner}', not "
                                         f"'{','.join(steps) or AUTO}'")
        parsed = {
            "task": ",".join(steps) or AUTO,
            "tasks": steps,
            "sigma": _parse_sigma(self.sigma) if "denoise" in steps else None,
            "quality": _parse_quality(self.quality) if "jpeg" in steps else None,
            "scale": parse_scale(self.scale, SR_SCALES) if "sr" in steps else None,
            "model": os.fspath(self.model) if isinstance(self.model, os.PathLike) else self.model,
            "device": str(self.device).strip().lower(),
            "precision": parse_precision(self.precision),
            "tile": read_tile(self.tile),
            "tile_overlap": (None if self.tile_overlap is None
                             else _parse_count(self.tile_overlap, "tile overlap", minimum=0)),
            "batch_size": _parse_count(self.batch_size, "batch size", minimum=1),
            "ensemble": parse_ensemble(self.ensemble),
            "strength": read_strength(self.strength),
            "formatter": _parse_formatter(self.formatter, self.model),
        }
        parsed["backend"] = parse_backend(self.backend, parsed["precision"])
        for name, value in parsed.items():
            object.__setattr__(self, name, value)


# -- one parser per option: the command line's (parser= of Typer) and the constructor's ------
def parse_task(task: object) -> Task:
    if task not in TASKS:
        raise InvalidOptionError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task  # type: ignore[return-value]


def read_tasks(task: object) -> tuple[Task, ...]:
    """The steps ``task`` spells: ``()`` for ``auto``, else its tasks in order (``"jpeg,
    denoise"``, or a sequence of names), each at most once."""
    names = task.split(",") if isinstance(task, str) else task
    try:
        names = [str(name).strip().lower() for name in names]  # type: ignore[union-attr]
    except TypeError:
        names = [repr(task)]
    if names == [AUTO]:
        return ()
    if not names:
        raise InvalidOptionError("no task given (tasks is empty)")
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise UnreadableOptionError(
            f"unknown task {unknown[0]!r}; choose one of {AUTO}, {', '.join(TASKS)}, or "
            "several in the order to run them (jpeg,denoise)", task,
            f"{AUTO}, {', '.join(TASKS)} or several joined by commas")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidOptionError(f"task {repeated[0]!r} is given twice in {','.join(names)}")
    return tuple(names)  # type: ignore[return-value]


def _parse_steps(task: object, tasks: Sequence[str] | None) -> tuple[Task, ...]:
    """The steps of ``task`` (its spelling) or ``tasks`` (a sequence): both given must agree."""
    steps = read_tasks(task)
    if tasks is None:
        return steps
    if isinstance(tasks, str):
        raise InvalidOptionError(f"tasks must be a list of tasks, got {tasks!r} (task= takes "
                                 "one name or several joined by commas)")
    listed = read_tasks(list(tasks))
    if steps and steps != listed:
        raise InvalidOptionError(f"task {','.join(steps)!r} and tasks {list(listed)} disagree; "
                                 "give one of them")
    return listed


def _parse_formatter(formatter: object, model: object) -> FormatterKind | None:
    if formatter is None:
        return None
    if formatter not in FORMATTERS:
        raise InvalidOptionError(f"unknown formatter {formatter!r}; choose one of {', '.join(FORMATTERS)}")
    if model is not None:
        raise InvalidOptionError("a formatter picks the model: give a model or a formatter, not both")
    return formatter  # type: ignore[return-value]


def parse_backend(backend: object, precision: str = "auto") -> Backend:
    """``backend`` checked (``None``: ``auto``); a runtime with a half ``precision`` is an
    :class:`InvalidOptionError` (the runtimes compute in fp32). What ``auto`` runs is chosen
    where the model is (:func:`formnet_cli.inference.backends.choose_backend`: ``FORMNET_BACKEND``,
    torch for fp16 / bf16)."""
    text = str(backend if backend is not None else "auto").strip().lower()
    if text not in BACKENDS:
        raise InvalidOptionError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if text in RUNTIMES and str(precision).strip().lower() in ("fp16", "bf16"):
        raise InvalidOptionError(f"--backend {text} computes in fp32; use --backend torch "
                                 f"for --precision {precision}")
    return text  # type: ignore[return-value]


def read_strength(strength: object) -> float:
    """A strength in [0, 1], as given or spelled (``"0.5"``)."""
    try:
        if isinstance(strength, bool):  # True would read as strength 1
            raise TypeError
        value = float(strength)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidOptionError(f"strength must be a number in [0, 1], got {strength!r}") from None
    if not 0 <= value <= 1:  # also refuses NaN
        raise InvalidOptionError(f"strength must be in [0, 1], got {value:g}")
    return value


def read_sigma(sigma: object) -> Sigma:
    """``auto`` or a number, as given or spelled (``"25"``, ``" Auto "``); the range is
    checked by :class:`RestoreOptions` (and against the model by the API)."""
    if isinstance(sigma, str) and sigma.strip().lower() == "auto":
        return "auto"
    try:
        if isinstance(sigma, bool):  # True would read as sigma 1
            raise TypeError
        return float(sigma)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnreadableOptionError(f"sigma must be a number in [0, {SIGMA_MAX:g}] or 'auto', "
                                    f"got {sigma!r}", sigma, "a number or 'auto'") from None


def _parse_sigma(sigma: object) -> Sigma:
    value = "auto" if sigma is None else read_sigma(sigma)
    if value != "auto" and not 0 <= value <= SIGMA_MAX:  # also rejects NaN
        raise InvalidOptionError(f"sigma must be in [0, {SIGMA_MAX:g}] (0-255 scale), got {value:g}")
    return value


def read_quality(quality: object) -> Quality:
    """``auto``, ``blind`` or a whole number, as given or spelled; the range is checked by
    :class:`RestoreOptions`."""
    low, high = QUALITY_RANGE
    expected = "an integer, 'auto' or 'blind'"
    if isinstance(quality, str) and quality.strip().lower() in ("auto", "blind"):
        return quality.strip().lower()  # type: ignore[return-value]
    try:
        if isinstance(quality, bool):  # True would read as quality 1
            raise TypeError
        value = float(quality)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnreadableOptionError(f"quality must be an integer in [{low}, {high}], 'auto' or "
                                    f"'blind', got {quality!r}", quality, expected) from None
    if not value.is_integer():
        raise UnreadableOptionError(f"quality must be an integer in [{low}, {high}], got {quality!r}",
                                    quality, expected)
    return int(value)


def _parse_quality(quality: object) -> Quality:
    value = "auto" if quality is None else read_quality(quality)
    low, high = QUALITY_RANGE
    if isinstance(value, int) and not low <= value <= high:
        raise InvalidOptionError(f"quality must be an integer in [{low}, {high}], got {quality!r}")
    return value


def parse_scale(scale: object, allowed: tuple[int, ...]) -> int:
    """``scale`` (a whole number, or its digits) if it is one of ``allowed``."""
    names = ", ".join(str(each) for each in allowed)
    if scale is None:
        raise InvalidOptionError(f"super-resolution needs a scale ({names})")
    value = scale
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)  # "2", as sigma="25" is taken
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or int(value) not in allowed):
        raise InvalidOptionError(f"scale must be one of {names}, got {value!r}")
    return int(value)


def read_tile(tile: object) -> Tile:
    """``None`` (untiled), ``"auto"`` or a positive number of pixels, also as spelled
    (``"none"``, ``"auto"``, ``"256"``)."""
    value = tile
    if isinstance(value, str):
        spelled = value.strip().lower()
        if spelled in ("none", "auto"):
            return None if spelled == "none" else "auto"
        value = int(spelled) if spelled.isascii() and spelled.isdigit() else value
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise UnreadableOptionError(f"tile must be a positive number of pixels, 'auto' or None, "
                                f"got {tile!r}", tile, "'auto', 'none' or a positive integer")


def parse_ensemble(ensemble: object) -> Ensemble:
    """``auto`` or one of :data:`ENSEMBLE_SIZES`, as given or spelled."""
    text = str(ensemble).strip().lower()
    if text == "auto":
        return "auto"
    if isinstance(ensemble, bool) or text not in {str(size) for size in ENSEMBLE_SIZES}:
        raise InvalidOptionError(f"ensemble must be auto or one of "
                                 f"{', '.join(map(str, ENSEMBLE_SIZES))}, got {ensemble!r}")
    return int(text)


def parse_precision(precision: object) -> Precision:
    """One of :data:`PRECISIONS`, in any case; whether the device computes in it is the
    engine's to say."""
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise InvalidOptionError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    return text  # type: ignore[return-value]


def _parse_count(value: object, name: str, *, minimum: int) -> int:
    """A whole number of at least ``minimum``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InvalidOptionError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
