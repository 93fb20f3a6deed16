"""Typed training configuration, read from TOML with ``--set key=value`` overrides.

Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, ModelConfig


@dataclass
class DataConfig:
    """Training patches and validation images.

    Relative folders are resolved against the config file's folder.
    """

    train_dirs: list[str] = field(default_factory=list)
    val_dir: str = ""
    val_limit: int = 0
    """Validate on at most this many images (0: all)."""
    val_levels: list[float] = field(default_factory=lambda: [25.0])
    """Validation sigmas (denoise), qualities (jpeg) or scales (sr)."""
    patch_size: int = 96
    batch_size: int = 16
    sigma_range: list[float] = field(default_factory=lambda: [0.0, 75.0])
    sigma_focus_range: list[float] = field(default_factory=list)
    """Denoise: a sub-range of ``sigma_range`` drawn more often (empty: uniform over the range)."""
    sigma_focus_share: float = 0.0
    """Denoise: share of patches whose sigma comes from ``sigma_focus_range``."""
    quality_range: list[int] = field(default_factory=lambda: [5, 95])
    blind_probability: float = 0.2
    """JPEG: share of patches trained without the quality (blind mode)."""
    scales: list[int] = field(default_factory=lambda: [2, 3, 4])
    luma: bool = False
    """Gray models: train on the Y channel (MATLAB rgb2ycbcr) of color images instead of ``L``."""
    workers: int = 2
    cache_dir: str = ""
    """Where precomputed inputs (BM3D outputs, bicubic images) are kept; default: run folder."""
    bm3d_sigmas: list[float] = field(default_factory=lambda: [15.0, 25.0, 50.0])
    """bm3d formatter: the noise levels whose BM3D outputs are computed once and cached."""


@dataclass
class LossConfig:
    """Weights of the cross-level loss terms (0 disables a term)."""

    pixel: Literal["l2", "l1", "charbonnier"] = "l2"
    pixel_weight: float = 1.0
    gradient: float = 0.0
    perceptual: float = 0.0
    vgg_weights: str = ""
    adversarial: float = 0.0
    gan_type: Literal["vanilla", "lsgan", "hinge"] = "lsgan"
    adversarial_warmup: int = 1000
    """Steps trained without the adversarial term before the discriminator joins."""
    formatter_weight: float = 0.0
    """Joint training: weight of the pixel loss on the formatter's own output."""


@dataclass
class OptimConfig:
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    warmup_steps: int = 0
    min_lr: float = 1e-6
    step_milestones: list[int] = field(default_factory=list)
    grad_clip: float = 0.0
    ema_decay: float = 0.999
    discriminator_lr: float = 1e-4


@dataclass
class RunConfig:
    steps: int = 1000
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    """bf16 autocast on CUDA, and on a CPU that computes in bf16 (:func:`~formnet_cli.engine.cpu_has_fast`)."""
    compile: bool = False
    formatter_training: Literal["joint", "staged"] = "joint"
    formatter_steps: int = 0
    """Staged: steps training the formatter alone before the residual network."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    time_limit_s: float = 0.0
    """Stop (saving state and exporting the model) after this much training time (0: no limit)."""
    init_weights: str = ""
    """Start from the weights of this checkpoint folder (a second training stage)."""
    export_dtype: Literal["float32", "float16"] = "float16"
    """Precision of the exported model.safetensors (float16 halves the file; loads as float32)."""


@dataclass
class TrainConfig:
    name: str = "model"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        self.model.validate()
        if not self.data.train_dirs:
            raise ConfigError("data.train_dirs: give at least one folder of clean images")
        if self.data.patch_size % self_size_multiple(self) != 0:
            raise ConfigError(f"data.patch_size must be a multiple of {self_size_multiple(self)}")
        if self.model.task == "sr" and self.data.patch_size % 12 != 0:
            raise ConfigError("data.patch_size must be a multiple of 12 for super-resolution (x2/x3/x4)")
        if self.loss.adversarial > 0 and self.data.patch_size < 24:
            # the PatchGAN discriminator's 3 stride-2 and 2 final 4x4 convolutions need 24 pixels
            raise ConfigError("data.patch_size must be at least 24 with the adversarial term (loss.adversarial > 0)")
        if self.train.steps < 1 or self.data.batch_size < 1:
            raise ConfigError("train.steps and data.batch_size must be positive")
        low, high = self.data.sigma_range
        if not 0 <= low <= high <= 75:
            raise ConfigError("data.sigma_range must lie within [0, 75]")
        if not 0 <= self.data.sigma_focus_share <= 1:
            raise ConfigError("data.sigma_focus_share must lie within [0, 1]")
        if self.data.sigma_focus_share > 0:
            focus = self.data.sigma_focus_range
            if len(focus) != 2 or not low <= focus[0] <= focus[1] <= high:
                raise ConfigError("data.sigma_focus_range must be [low, high] within data.sigma_range")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def self_size_multiple(config: TrainConfig) -> int:
    from ..models import FormResNet

    return FormResNet(config.model).size_multiple


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a TOML config, apply ``key=value`` overrides, resolve folders, validate."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such config file") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from error
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator:
            raise ConfigError(f"--set {override!r}: expected key=value")
        _set_dotted(data, key.strip(), _parse_value(raw.strip()))
    config = config_from_dict(data)
    base = path.resolve().parent
    config.data.train_dirs = [str(_resolve(base, d)) for d in config.data.train_dirs]
    if config.data.val_dir:
        config.data.val_dir = str(_resolve(base, config.data.val_dir))
    if config.train.init_weights:
        config.train.init_weights = str(_resolve(Path.cwd(), config.train.init_weights))
    if config.loss.vgg_weights:
        config.loss.vgg_weights = str(_resolve(base, config.loss.vgg_weights))
    config.validate()
    return config


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    data = dict(data)
    model = ModelConfig.from_dict(data.pop("model", {}))
    config = _build(TrainConfig, data, "")
    config.model = model
    return config


def _resolve(base: Path, folder: str) -> Path:
    candidate = Path(folder).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare string such as l1 or cuda:0


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''}: "
                          + ", ".join(prefix + key for key in unknown))
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section")
        return _build(hint, value, key + ".")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key}: expected one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item, v, key) for v in value]
    if origin in (typing.Union, types.UnionType):
        return value
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


def dump_config(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2)
