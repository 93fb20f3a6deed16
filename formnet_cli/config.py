"""Typed model configuration: what to build, saved as ``config.json`` next to the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["denoise", "jpeg", "sr"]
FormatterKind = Literal["none", "cnn", "bm3d"]
NetworkKind = Literal["unet", "plain"]

TASKS: tuple[str, ...] = ("denoise", "jpeg", "sr")
LEVEL_NAMES: dict[str, str] = {"denoise": "sigma", "jpeg": "quality", "sr": "scale"}
"""The level each task is conditioned on (and the name of its option)."""
FORMATTERS: tuple[str, ...] = ("none", "cnn", "bm3d")
NETWORK_KINDS: tuple[str, ...] = ("unet", "plain")

SIGMA_MAX = 75.0
"""Largest noise level (on the 0-255 scale) a denoiser accepts."""
QUALITY_RANGE = (1, 100)
"""JPEG quality factors a JPEG model accepts."""
SR_SCALES = (2, 3, 4)
"""Super-resolution factors."""
BLIND = -1.0
"""Condition value that means "level unknown" (blind JPEG restoration)."""


class ConfigError(ValueError):
    """A configuration that cannot be built; the message says which field and why."""


@dataclass(frozen=True)
class NetworkConfig:
    """A residual CNN.

    ``unet``: pixel-unshuffle by ``unshuffle``, then a U-Net of residual blocks whose
    level ``i`` has ``widths[i]`` channels at 1 / (unshuffle * 2**i) resolution, then
    pixel-shuffle back. ``plain``: DnCNN-style stack of ``depth`` 3x3 convolutions of
    ``widths[0]`` channels at full resolution (``unshuffle`` must be 1).
    """

    kind: NetworkKind = "unet"
    widths: tuple[int, ...] = (64, 128, 256)
    blocks_per_level: int = 2
    depth: int = 17
    unshuffle: int = 2

    def validate(self) -> None:
        if self.kind not in NETWORK_KINDS:
            raise ConfigError(f"network.kind must be one of {NETWORK_KINDS}, got {self.kind!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"network.widths must be positive integers, got {self.widths!r}")
        if self.blocks_per_level < 0:
            raise ConfigError("network.blocks_per_level must be >= 0")
        if self.unshuffle < 1:
            raise ConfigError("network.unshuffle must be >= 1")
        if self.kind == "plain" and self.depth < 2:
            raise ConfigError("network.depth must be >= 2 for a plain network")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a FormResNet and to know what it is for.

    The model restores images of ``channels`` channels (1 gray, 3 RGB) for ``task``.
    ``formatter`` pre-restores the input (``none`` gives a DiffResNet); ``residual``
    is the network that learns what the formatted image still lacks.
    Super-resolution models work on the bicubic-upscaled image (scale 1 inside the model).
    """

    task: Task = "denoise"
    channels: int = 1
    formatter: FormatterKind = "none"
    residual: NetworkConfig = field(default_factory=NetworkConfig)
    formatter_network: NetworkConfig | None = None
    sigma_range: tuple[float, float] = (0.0, SIGMA_MAX)
    quality_range: tuple[int, int] = (5, 95)
    scales: tuple[int, ...] = SR_SCALES

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.formatter not in FORMATTERS:
            raise ConfigError(f"formatter must be one of {FORMATTERS}, got {self.formatter!r}")
        if self.formatter == "bm3d" and self.task != "denoise":
            raise ConfigError("the bm3d formatter only applies to the denoise task")
        if self.formatter == "cnn" and self.formatter_network is None:
            raise ConfigError("formatter 'cnn' needs a formatter_network")
        self.residual.validate()
        if self.formatter_network is not None:
            self.formatter_network.validate()
        low, high = self.sigma_range
        if not 0 <= low <= high <= SIGMA_MAX:
            raise ConfigError(f"sigma_range must lie in [0, {SIGMA_MAX}], got {self.sigma_range!r}")
        if any(s not in SR_SCALES for s in self.scales):
            raise ConfigError(f"scales must be among {SR_SCALES}, got {self.scales!r}")

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        for key in ("residual", "formatter_network"):
            if isinstance(data.get(key), dict):
                data[key] = _network_from_dict(data[key], key)
        for key in ("sigma_range", "quality_range", "scales"):
            if key in data:
                data[key] = tuple(data[key])
        config = cls(**data)
        config.validate()
        return config


def _network_from_dict(data: dict[str, Any], where: str) -> NetworkConfig:
    known = {f.name for f in dataclasses.fields(NetworkConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys in {where}: {', '.join(unknown)}")
    data = dict(data)
    if "widths" in data:
        data["widths"] = tuple(int(w) for w in data["widths"])
    return NetworkConfig(**data)
