"""What a restoration made: :class:`RestoreResult`, the image and the steps that made it (each
a :class:`StepResult`), and why ``task="auto"`` chose them. Returned by
:func:`formnet_cli.api.restore_with_info`; plain data (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NOTHING", "RestoreResult", "StepResult"]


@dataclass(frozen=True)
class StepResult:
    """One step of a restoration: its task, the model that ran and the level it ran at.

    ``sigma`` / ``quality`` / ``scale`` are the values the model was conditioned on
    (``quality`` is ``None`` for blind JPEG restoration); ``estimated`` says whether the
    level was estimated from the image (``sigma='auto'`` or ``quality='auto'``). When the
    estimated noise varies with brightness, each pixel had its own sigma: ``sigma_map_range``
    holds the lowest and highest of that map and ``sigma`` the map's mean.
    """

    task: str
    model_name: str
    model_source: str
    model_path: str = ""
    """The checkpoint folder the model was loaded from."""
    sigma: float | None = None
    quality: int | None = None
    scale: int | None = None
    estimated: bool = False
    ensemble: int = 1
    """Flipped/rotated passes averaged (1: a single pass)."""
    sigma_map_range: tuple[float, float] | None = None

    def describe_level(self) -> str:
        """A short phrase such as ``"estimated sigma 23.7"`` or ``"quality 20"``."""
        prefix = "estimated " if self.estimated else ""
        if self.task == "denoise" and self.sigma_map_range is not None:
            low, high = self.sigma_map_range
            return (f"{prefix}sigma {low:.1f}-{high:.1f} "
                    f"(varies with brightness; mean {self.sigma:.1f})")
        if self.task == "denoise":
            return f"{prefix}sigma {self.sigma:.1f}"
        if self.task == "jpeg":
            return "blind quality" if self.quality is None else f"{prefix}quality {self.quality}"
        return f"scale {self.scale}"

    def describe(self) -> str:
        """The step in a few words: ``"jpeg q85"``, ``"denoise sigma 6.1-9.8"``, ``"sr x2"``."""
        if self.task == "denoise" and self.sigma_map_range is not None:
            return f"denoise sigma {self.sigma_map_range[0]:.1f}-{self.sigma_map_range[1]:.1f}"
        if self.task == "denoise":
            return f"denoise sigma {self.sigma:.1f}"
        if self.task == "jpeg":
            return "jpeg blind" if self.quality is None else f"jpeg q{self.quality}"
        return f"sr x{self.scale}"


NOTHING = "none"
"""The :attr:`RestoreResult.task` of an image ``auto`` found nothing to restore in."""
_NO_STEP = StepResult(task=NOTHING, model_name="", model_source="")


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore_with_info` made, the steps that made it and why.

    ``steps`` are the steps run, in order (none where ``task="auto"`` found nothing to
    restore: the image is the input's); ``reason`` says why ``auto`` chose them (empty for
    steps given). The other attributes sum them up: :attr:`task` is the steps' tasks joined by
    commas (:data:`NOTHING` for none), each level is that of the step of its task, and the
    model is the last step's (see :class:`StepResult` for the levels).
    """

    image: np.ndarray
    steps: tuple[StepResult, ...] = ()
    reason: str = ""

    @property
    def task(self) -> str:
        return ",".join(step.task for step in self.steps) or NOTHING

    @property
    def model_name(self) -> str:
        return self.steps[-1].model_name if self.steps else ""

    @property
    def model_source(self) -> str:
        return self.steps[-1].model_source if self.steps else ""

    @property
    def model_path(self) -> str:
        """The checkpoint folder the (last step's) model was loaded from."""
        return self.steps[-1].model_path if self.steps else ""

    @property
    def ensemble(self) -> int:
        return self.steps[-1].ensemble if self.steps else 1

    @property
    def estimated(self) -> bool:
        return any(step.estimated for step in self.steps)

    @property
    def sigma(self) -> float | None:
        return self._of("denoise").sigma

    @property
    def sigma_map_range(self) -> tuple[float, float] | None:
        return self._of("denoise").sigma_map_range

    @property
    def quality(self) -> int | None:
        return self._of("jpeg").quality

    @property
    def scale(self) -> int | None:
        return self._of("sr").scale

    def _of(self, task: str) -> StepResult:
        """The step of ``task``, or one with no level where there is none."""
        return next((step for step in self.steps if step.task == task), _NO_STEP)

    def describe_level(self) -> str:
        """The level of a single step (``"estimated sigma 23.7"``, ``"quality 20"``); for
        several steps, or none, :meth:`describe`."""
        return self.steps[0].describe_level() if len(self.steps) == 1 else self.describe()

    def describe(self) -> str:
        """What was done and why: ``"jpeg q85, then denoise sigma 6.1-9.8 (JPEG quality 85 from
        its tables; noisy)"``; ``"nothing to restore (no JPEG blocks, ...)"``."""
        done = ", then ".join(step.describe() for step in self.steps) or "nothing to restore"
        return f"{done} ({self.reason})" if self.reason else done
