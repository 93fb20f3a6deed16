"""Typed model configuration: what to build, saved as ``config.json`` next to the weights."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["denoise", "jpeg", "sr"]
FormatterKind = Literal["none", "cnn", "bm3d"]
FormatterRole = Literal["base", "guide"]
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

# A checkpoint folder: what to build, the numbers, and the model card.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)


def condition_level(task: str, *, sigma: float | None = None, quality: float | None = None,
                    scale: int | None = None) -> float:
    """The normalised conditioning value a model of ``task`` expects."""
    if task == "denoise":
        if sigma is None:
            raise ValueError("denoising needs a noise level sigma")
        return float(sigma) / 255.0
    if task == "jpeg":
        return BLIND if quality is None else float(quality) / 100.0
    if task == "sr":
        if scale is None:
            raise ValueError("super-resolution needs a scale")
        return float(scale) / 4.0
    raise ValueError(f"unknown task {task!r}")


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

    def validate(self, where: str = "network") -> None:
        """Raise :class:`ConfigError` naming ``where`` (the section) on an invalid value."""
        if self.kind not in NETWORK_KINDS:
            raise ConfigError(f"{where}.kind must be one of {NETWORK_KINDS}, got {self.kind!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"{where}.widths must be positive integers, got {self.widths!r}")
        if self.blocks_per_level < 0:
            raise ConfigError(f"{where}.blocks_per_level must be >= 0")
        if self.unshuffle < 1:
            raise ConfigError(f"{where}.unshuffle must be >= 1")
        if self.kind == "plain" and self.depth < 2:
            raise ConfigError(f"{where}.depth must be >= 2 for a plain network")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a FormResNet and to know what it is for.

    The model restores images of ``channels`` channels (1 gray, 3 RGB) for ``task``.
    ``formatter`` pre-restores the input (``none`` gives a DiffResNet); ``residual``
    is the network that learns what the formatted image still lacks. ``formatter_role``
    ``base`` (the paper's form) adds the residual to the formatted image; ``guide`` adds it to
    the degraded input and gives the formatted image to the network as an extra input, so a
    DiffResNet's weights start it (the extra input's weights at zero) exactly where it was.
    Super-resolution models work on the bicubic-upscaled image (scale 1 inside the model).
    """

    task: Task = "denoise"
    channels: int = 1
    formatter: FormatterKind = "none"
    formatter_role: FormatterRole = "base"
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
            raise ConfigError("formatter 'bm3d' only applies to the denoise task")
        if self.formatter_role not in ("base", "guide"):
            raise ConfigError(f"formatter_role must be 'base' or 'guide', got {self.formatter_role!r}")
        if self.formatter_role == "guide" and self.formatter == "none":
            raise ConfigError("formatter_role 'guide' needs a formatter")
        if self.formatter == "cnn" and self.formatter_network is None:
            raise ConfigError("formatter 'cnn' needs a formatter_network")
        self.residual.validate("residual")
        if self.formatter_network is not None:
            self.formatter_network.validate("formatter_network")
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
    def from_dict(cls, data: dict[str, Any], prefix: str = "") -> ModelConfig:
        """Build and validate from a dict (``config.json``); ``prefix`` names its section in errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix.rstrip('.') or 'model'}: expected a section")
        config = build_dataclass(cls, data, prefix)
        try:
            config.validate()
        except ConfigError as error:  # its messages start with the key they are about
            raise ConfigError(f"{prefix}{error}") from None
        return config


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """``cls(**data)`` with every value checked against its field's type (nested sections,
    lists, tuples, literals, optionals; a union of several types is passed through as given);
    an unknown key or a wrong type is a :class:`ConfigError` naming the dotted key
    (``prefix`` + key)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''}: "
                          + ", ".join(prefix + key for key in unknown))
    return cls(**{name: _coerce(hints[name], value, prefix + name) for name, value in data.items()})


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section, got {value!r}")
        return build_dataclass(hint, value, key + ".")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key}: expected one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = typing.get_args(hint)
        if origin is list or (len(items) == 2 and items[1] is Ellipsis):
            return origin(_coerce(items[0], item, key) for item in value)
        if len(value) != len(items):
            raise ConfigError(f"{key}: expected {len(items)} values, got {value!r}")
        return tuple(_coerce(item_hint, item, key) for item_hint, item in zip(items, value))
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        others = [option for option in options if option is not type(None)]
        return _coerce(others[0], value, key) if len(others) == 1 else value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
