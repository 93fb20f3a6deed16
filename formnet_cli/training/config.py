"""Typed training configuration, read from TOML with ``--set key=value`` overrides.

Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from formnet_cli.config import QUALITY_RANGE, SR_SCALES, ConfigError, ModelConfig, build_dataclass

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomllib is the package tomli, moved into the standard library in 3.11
    import tomli as tomllib


DEFAULT_VAL_LEVELS: dict[str, list[float]] = {"denoise": [25.0], "jpeg": [20.0], "sr": [4.0]}
_LOSS_WEIGHTS = ("pixel_weight", "gradient", "perceptual", "adversarial", "formatter_weight")


@dataclass
class DataConfig:
    """Training patches and validation images.

    Relative folders are resolved against the config file's folder.
    """

    train_dirs: list[str] = field(default_factory=list)
    val_dir: str = ""
    val_limit: int = 0
    """Validate on at most this many images (0: all)."""
    train_limit: int = 0
    """Train on at most this many images, the first in name order (0: all): a budget for
    precomputed inputs such as BM3D outputs."""
    val_levels: list[float] = field(default_factory=list)
    """Validation sigmas (denoise), qualities (jpeg) or scales (sr); empty: the task's
    :data:`DEFAULT_VAL_LEVELS`."""
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
    color_augment: float = 0.0
    """Colour models: share of patches whose colours are transformed before the noise is added
    (channel order, saturation, a rotation of the hues about the grey axis): the noise model is
    unchanged, the colours the model sees are not only those of the training photos."""
    saturation_range: list[float] = field(default_factory=lambda: [0.5, 3.0])
    """Colour augmentation: the saturation factor's range (drawn log-uniformly)."""
    independent_channels: float = 0.0
    """Colour models: share of patches whose R, G and B are the brightness of three different
    training crops, so that fine detail lies in colour alone (isoluminant textures, saturated
    stained glass), which the training photos hardly ever show."""
    val_holdout: int = 0
    """Without ``val_dir``: hold this many of the training images out (evenly spaced in name
    order) and validate on them, so that checkpoints are chosen on no reported set."""


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
    """bf16 autocast on CUDA, and on a CPU that computes in bf16 (:func:`~formnet_cli.inference.device.cpu_has_fast`)."""
    compile: bool = False
    formatter_training: Literal["joint", "staged"] = "joint"
    formatter_steps: int = 0
    """Staged: steps training the formatter alone before the residual network."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    time_limit_s: float = 0.0
    """Stop (saving state and exporting the model) after this much training time (0: no limit)."""
    init_weights: str = ""
    """Start from these weights (a second training stage): a checkpoint folder, a run folder or
    a model name (``denoise-gray``)."""
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
        positive = {"train.steps": self.train.steps, "data.batch_size": self.data.batch_size,
                    "data.patch_size": self.data.patch_size,
                    "train.log_every": self.train.log_every, "train.val_every": self.train.val_every,
                    "train.checkpoint_every": self.train.checkpoint_every, "optim.lr": self.optim.lr,
                    "optim.discriminator_lr": self.optim.discriminator_lr}
        not_negative = {"data.workers": self.data.workers, "train.threads": self.train.threads,
                        "train.time_limit_s": self.train.time_limit_s, "optim.min_lr": self.optim.min_lr,
                        "optim.warmup_steps": self.optim.warmup_steps, "train.seed": self.train.seed,
                        "optim.weight_decay": self.optim.weight_decay, "optim.grad_clip": self.optim.grad_clip,
                        "data.val_limit": self.data.val_limit, "data.val_holdout": self.data.val_holdout, "data.train_limit": self.data.train_limit, "train.formatter_steps": self.train.formatter_steps,
                        "loss.adversarial_warmup": self.loss.adversarial_warmup,
                        **{f"loss.{term}": getattr(self.loss, term) for term in _LOSS_WEIGHTS}}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value:g}")
        for key, value in not_negative.items():
            if value < 0:
                raise ConfigError(f"{key} must be 0 or more, got {value:g}")
        if not 0 <= self.optim.ema_decay < 1:
            raise ConfigError(f"optim.ema_decay must lie within [0, 1), got {self.optim.ema_decay:g}")
        if not 0 <= self.data.blind_probability <= 1:
            raise ConfigError(f"data.blind_probability must lie within [0, 1], got "
                              f"{self.data.blind_probability:g}")
        self._validate_schedule()
        if len(self.data.sigma_range) != 2 or not 0 <= self.data.sigma_range[0] <= self.data.sigma_range[1] <= 75:
            raise ConfigError(f"data.sigma_range must be [low, high] within [0, 75], got {self.data.sigma_range}")
        low, high = self.data.sigma_range
        quality = self.data.quality_range
        if len(quality) != 2 or not 1 <= quality[0] <= quality[1] <= 100:
            raise ConfigError(f"data.quality_range must be [low, high] within [1, 100], got {quality}")
        if not self.data.scales or any(scale not in SR_SCALES for scale in self.data.scales):
            raise ConfigError(f"data.scales must be among {list(SR_SCALES)}, got {self.data.scales}")
        if self.data.val_dir and self.data.val_holdout:
            raise ConfigError("data.val_dir and data.val_holdout both name validation images; give one")
        if self.data.val_dir or self.data.val_holdout:
            self._validate_val_levels()
        if not 0 <= self.data.color_augment <= 1:
            raise ConfigError(f"data.color_augment must lie within [0, 1], got {self.data.color_augment:g}")
        if not 0 <= self.data.independent_channels <= 1:
            raise ConfigError("data.independent_channels must lie within [0, 1], "
                              f"got {self.data.independent_channels:g}")
        saturation = self.data.saturation_range
        if len(saturation) != 2 or not 0 < saturation[0] <= saturation[1]:
            raise ConfigError(f"data.saturation_range must be [low, high] with 0 < low <= high, got {saturation}")
        if not 0 <= self.data.sigma_focus_share <= 1:
            raise ConfigError("data.sigma_focus_share must lie within [0, 1]")
        if self.data.sigma_focus_share > 0:
            focus = self.data.sigma_focus_range
            if len(focus) != 2 or not low <= focus[0] <= focus[1] <= high:
                raise ConfigError("data.sigma_focus_range must be [low, high] within data.sigma_range")

    def _validate_schedule(self) -> None:
        optim = self.optim
        if optim.min_lr > optim.lr:
            raise ConfigError(f"optim.min_lr ({optim.min_lr:g}) must not exceed optim.lr ({optim.lr:g})")
        if optim.schedule == "step" and not optim.step_milestones:
            raise ConfigError("optim.schedule = 'step' needs optim.step_milestones (steps where the "
                              "learning rate is halved), e.g. [100000, 200000]")
        if optim.warmup_steps >= self.train.steps:
            raise ConfigError(f"optim.warmup_steps ({optim.warmup_steps}) must be fewer than "
                              f"train.steps ({self.train.steps}); set optim.warmup_steps=0 for a short run")
        if self.train.formatter_training == "staged" and self.model.formatter != "cnn":
            raise ConfigError("train.formatter_training = 'staged' trains a CNN formatter first; "
                              f"model.formatter is {self.model.formatter!r}")

    @property
    def val_levels(self) -> list[float]:
        """The validation levels: ``data.val_levels``, or the task's default."""
        return self.data.val_levels or DEFAULT_VAL_LEVELS[self.model.task]

    def _validate_val_levels(self) -> None:
        """The validation levels must be levels the model takes (checked only when it validates)."""
        model = self.model
        low, high = model.sigma_range
        valid, what, example = {
            "denoise": (lambda v: low <= v <= high, f"sigmas in [{low:g}, {high:g}]", "[15, 25]"),
            "jpeg": (lambda v: float(v).is_integer() and QUALITY_RANGE[0] <= v <= QUALITY_RANGE[1],
                     "JPEG qualities (1-100)", "[10, 30]"),
            "sr": (lambda v: v in model.scales, f"scales {list(model.scales)}", "[2, 4]"),
        }[model.task]
        wrong = [level for level in self.data.val_levels if not valid(level)]
        if wrong:
            raise ConfigError(f"data.val_levels {wrong}: task {model.task} validates at {what}; "
                              f"set e.g. data.val_levels={example}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def self_size_multiple(config: TrainConfig) -> int:
    from formnet_cli.models import FormResNet

    return FormResNet(config.model).descriptor.size_multiple


PATH_KEYS = ("data.train_dirs", "data.val_dir", "data.cache_dir", "loss.vgg_weights", "train.init_weights")
"""Config values that are paths: relative to the config file's folder when written in it,
relative to the current folder when given with ``--set``."""


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML config (or a run's ``config.json``), apply ``key=value`` overrides, resolve
    paths (see :data:`PATH_KEYS`), validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such config file") from error
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a valid {'JSON' if path.suffix == '.json' else 'TOML'} "
                          f"config ({error})") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror or error})") from error
    overridden = set()
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator:
            raise ConfigError(f"--set {override!r}: expected key=value")
        _set_dotted(data, key.strip(), _parse_value(raw.strip()))
        overridden.add(key.strip())
    config = config_from_dict(data)
    config_folder = path.resolve().parent
    for key in PATH_KEYS:
        section, name = key.split(".")
        part = getattr(config, section)
        base = Path.cwd() if key in overridden else config_folder
        value = getattr(part, name)
        if isinstance(value, list):
            setattr(part, name, [str(_resolve(base, item)) for item in value])
        elif value and not (key == "train.init_weights" and _is_model_name(base, value)):
            setattr(part, name, str(_resolve(base, value)))
    config.validate()
    return config


def resume_train_config(saved: str | Path, overrides: Sequence[str] = (),
                        config: str | Path | None = None) -> TrainConfig:
    """The settings a resumed run goes on with: its own (``saved``, the run's ``config.json``)
    with ``overrides``; a changed model is a :class:`ConfigError`, and so is a ``config`` given
    too (the command that started the run, with ``--resume`` added) that does not come, with the
    same overrides, to the same settings (the differences are named)."""
    saved = Path(saved)
    if not saved.is_file():  # a run from before config.json was written: its CONFIG decides
        return load_train_config(config or saved, overrides)
    settings = load_train_config(saved, overrides)
    if load_train_config(saved).model != settings.model:
        raise ConfigError(f"the model to train differs from the run's ({saved}); resume it "
                          "without model.* settings")
    if config is not None:
        _check_same_settings(load_train_config(config, overrides), settings, Path(config))
    return settings


def _check_same_settings(given: TrainConfig, run: TrainConfig, config: Path) -> None:
    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {key: item for name, part in value.items()
                    for key, item in flat(part, f"{prefix}{name}.").items()}
        return {prefix.rstrip("."): value}

    ours, theirs = flat(run.to_dict()), flat(given.to_dict())
    differing = [key for key in ours if ours[key] != theirs.get(key)]
    if differing:
        shown = ", ".join(f"{key} (run: {ours[key]!r}, {config.name}: {theirs.get(key)!r})"
                          for key in differing[:3]) + (" ..." if len(differing) > 3 else "")
        raise ConfigError(f"{config} differs from the run's settings: {shown}; resume without "
                          "CONFIG (the run keeps its own) and --set only what should change")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    data = dict(data)
    model = ModelConfig.from_dict(data.pop("model", {}), prefix="model.")
    config = build_dataclass(TrainConfig, data)
    config.model = model
    return config


def _is_model_name(base: Path, value: str) -> bool:
    """Whether ``train.init_weights`` names a model (``denoise-gray``) rather than a folder:
    a bare name, with no folder of that name where a path would be looked for."""
    return "/" not in value and "\\" not in value and not value.startswith((".", "~")) \
        and not (base / value).exists()


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


def dump_config(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2)
