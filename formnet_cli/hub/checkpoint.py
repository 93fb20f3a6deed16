"""Checkpoint folders: ``config.json`` (what to build) + ``model.safetensors`` + ``README.md``.

``config.json`` holds the model's configuration and everything its card says besides: name,
description, scores (mean PSNR per data set and level) and the recommended self-ensemble;
:func:`save_checkpoint` writes them all, and :func:`write_info` rewrites them alone (scores
measured by ``formnet eval``: :func:`formnet_cli.evaluation.scores.record_scores`).
Loading is strict (a missing or unexpected tensor is an error) and never unpickles. Reading a
folder's ``config.json`` (:func:`read_info`) does not import torch: the ONNX runtimes need only
that.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formnet_cli.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from formnet_cli.errors import FormnetError
from formnet_cli.io.atomic import write_atomically
from formnet_cli.options import ENSEMBLE_SIZES

if TYPE_CHECKING:
    import torch

    from formnet_cli.models import FormResNet

__all__ = ["CARD_FILE", "CONFIG_FILE", "WEIGHTS_FILE", "CheckpointError", "CheckpointInfo",
           "load_checkpoint", "read_info", "save_checkpoint", "write_info"]


class CheckpointError(FormnetError):
    """A checkpoint folder that cannot be loaded; the message says what is wrong."""


@dataclass
class CheckpointInfo:
    """What ``config.json`` says of a model besides how to build it."""

    name: str
    model: ModelConfig
    scores: dict[str, float] = field(default_factory=dict)
    description: str = ""
    ensemble: int = 1
    """The self-ensemble size ``ensemble="auto"`` runs (see :func:`formnet_cli.inference.engine.restore_tensor`)."""

    def __post_init__(self) -> None:
        if isinstance(self.ensemble, bool) or self.ensemble not in ENSEMBLE_SIZES:
            raise ValueError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}")
        self.ensemble = int(self.ensemble)  # 2, also when JSON said 2.0
        for key, value in self.scores.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"score {key!r} must be a finite number, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "model": self.model.to_dict(), "scores": self.scores, "ensemble": self.ensemble}


def read_info(folder: str | os.PathLike[str]) -> CheckpointInfo:
    """Read and validate ``config.json`` of a checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a formnet checkpoint (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CheckpointInfo(name=str(data["name"]), model=ModelConfig.from_dict(data["model"]),
                              scores={str(k): float(v) for k, v in data.get("scores", {}).items()},
                              description=str(data.get("description", "")),
                              ensemble=data.get("ensemble", 1))
    # ValueError covers JSONDecodeError, ConfigError and non-numeric scores.
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: invalid checkpoint config ({error})") from error


def load_checkpoint(folder: str | os.PathLike[str], device: str | torch.device = "cpu"
                    ) -> tuple[FormResNet, CheckpointInfo]:
    from safetensors.torch import load_file

    from formnet_cli.models import FormResNet

    """Build the model ``config.json`` describes and load its weights strictly."""
    info = read_info(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: missing {WEIGHTS_FILE}")
    model = FormResNet(info.model)
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as error:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{weights}: unreadable weights ({error})") from error
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    problems = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("wrong shape for", reshaped)) if keys]
    if problems:
        raise CheckpointError(f"{weights} does not match {CONFIG_FILE}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), info


def save(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors bytes of ``tensors`` (safetensors imports torch: here, when a checkpoint
    is written, not when one is read)."""
    from safetensors.torch import save as serialise

    return serialise(tensors)


def save_checkpoint(model: FormResNet, folder: str | os.PathLike[str], name: str, *,
                    card: str = "", scores: dict[str, float] | None = None,
                    description: str = "", ensemble: int = 1,
                    dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint folder atomically per file (:func:`~formnet_cli.io.atomic.write_atomically`);
    returns the folder.

    ``config.json`` gets the model's configuration, ``name``, ``description``, ``scores``
    (``{"BSD68 sigma 25": 29.29, ...}``: what ``formnet models`` shows) and ``ensemble``, the
    self-ensemble ``ensemble="auto"`` runs (1, 2, 4 or 8); ``card`` is the README.
    ``dtype=torch.float16`` stores floating-point tensors at half size; they load as float32
    (``None``: float32).
    A non-finite score or an unknown ensemble size raises ``ValueError`` before anything is written.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    folder = Path(folder)
    info = CheckpointInfo(name=name, model=model.config, scores=dict(scores or {}),
                          description=description, ensemble=ensemble)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
             for key, value in model.state_dict().items()}
    write_atomically(folder / WEIGHTS_FILE, lambda handle: handle.write(save(state)))
    write_info(folder, info)
    if card:
        write_atomically(folder / CARD_FILE, lambda handle: handle.write(card.encode("utf-8")))
    return folder


def write_info(folder: str | os.PathLike[str], info: CheckpointInfo) -> Path:
    """Write ``info`` as the folder's ``config.json`` (atomically; the weights are not touched);
    returns its path. With :func:`read_info`, a checkpoint's card data changes without a hand
    edit: ``write_info(folder, dataclasses.replace(read_info(folder), ensemble=2))``."""
    path = Path(folder) / CONFIG_FILE
    text = json.dumps(info.to_dict(), indent=2, allow_nan=False) + "\n"
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    return path
