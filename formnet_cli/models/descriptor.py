"""What the inference engine must know of a model, declared by the model.

A restorer ``model(x, level) -> restored`` exposes a :class:`ModelDescriptor` as its
``descriptor`` attribute; :func:`describe` checks it when the model enters the engine
(:func:`formnet_cli.inference.engine.restore_tensor`), so that a model that does not say how far
its context reaches is refused rather than tiled inexactly.

>>> ModelDescriptor(task="denoise", channels=1, size_multiple=4, receptive_radius=52,
...                 supports_half=True).size_multiple
4
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from formnet_cli.config import TASKS, Task

__all__ = ["ModelDescriptor", "describe"]


@dataclass(frozen=True)
class ModelDescriptor:
    """A restorer's contract with the inference engine; invalid values raise ``ValueError``."""

    task: Task
    """The restoration the model does (its ``level`` is that task's)."""
    channels: int
    """Image channels in and out: 1 (gray or luma) or 3 (RGB)."""
    size_multiple: int
    """Input height and width must be multiples of it (pixel-unshuffle, strided convolutions);
    the engine pads the image to them."""
    receptive_radius: int
    """How far, in pixels, an input pixel can change an output pixel: the context a tile
    discards on each side so that tiled output equals untiled output."""
    supports_half: bool
    """Whether the model may run in float16 / bfloat16 (not with a BM3D stage, which runs in
    float64 on the CPU)."""

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            problems.append(f"channels must be 1 or 3, got {self.channels!r}")
        if not _is_count(self.size_multiple, minimum=1):
            problems.append(f"size_multiple must be an integer >= 1, got {self.size_multiple!r}")
        if not _is_count(self.receptive_radius, minimum=0):
            problems.append(f"receptive_radius must be an integer >= 0, got {self.receptive_radius!r}")
        if not isinstance(self.supports_half, bool):
            problems.append(f"supports_half must be True or False, got {self.supports_half!r}")
        if problems:
            raise ValueError(f"invalid model descriptor: {'; '.join(problems)}")


def _is_count(value: object, *, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def describe(model: object) -> ModelDescriptor:
    """The model's :class:`ModelDescriptor`: the one check a model passes to enter the engine.

    Raises ``TypeError`` (a programming error, not a user's) for a model without one.
    """
    try:
        descriptor = model.descriptor  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"{type(model).__name__} has no model descriptor: the inference engine runs "
                        "models whose 'descriptor' attribute is a formnet_cli.models.ModelDescriptor "
                        "(task, channels, size_multiple, receptive_radius, supports_half)") from None
    if not isinstance(descriptor, ModelDescriptor):
        raise TypeError(f"{type(model).__name__}.descriptor must be a ModelDescriptor, "
                        f"got {type(descriptor).__name__}")
    return descriptor
