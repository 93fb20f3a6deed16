"""Checkpoint folders: ``config.json`` (what to build) + ``model.safetensors`` + ``README.md``.

Loading is strict (a missing or unexpected tensor is an error) and never unpickles. Reading a
folder's ``config.json`` (:func:`read_info`) does not import torch: the ONNX runtimes need only
that.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formnet_cli.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from formnet_cli.errors import FormnetError
from formnet_cli.inference.tiling import ENSEMBLE_SIZES

if TYPE_CHECKING:
    import torch

    from formnet_cli.models import FormResNet

__all__ = ["CARD_FILE", "CONFIG_FILE", "WEIGHTS_FILE", "CheckpointError", "CheckpointInfo",
           "load_checkpoint", "read_info", "save_checkpoint"]


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
        ensemble = data.get("ensemble", 1)
        if isinstance(ensemble, bool) or ensemble not in ENSEMBLE_SIZES:
            raise ValueError(f"ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}")
        return CheckpointInfo(name=str(data["name"]), model=ModelConfig.from_dict(data["model"]),
                              scores={str(k): float(v) for k, v in data.get("scores", {}).items()},
                              description=str(data.get("description", "")), ensemble=int(ensemble))
    # ValueError covers JSONDecodeError, ConfigError and non-numeric scores.
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: invalid checkpoint config ({error})") from error


def load_checkpoint(folder: str | os.PathLike[str], device: str | torch.device = "cpu"
                    ) -> tuple[FormResNet, CheckpointInfo]:
    """Build the model ``config.json`` describes and load its weights strictly."""
    from safetensors.torch import load_file

    from formnet_cli.models import FormResNet

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


def save_checkpoint(model: FormResNet, folder: str | os.PathLike[str], name: str, *,
                    card: str = "", scores: dict[str, float] | None = None,
                    description: str = "", dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint folder atomically per file; returns the folder.

    ``dtype=torch.float16`` stores floating-point tensors at half size; they load as float32
    (``None``: float32).
    """
    import torch
    from safetensors.torch import save_file

    dtype = torch.float32 if dtype is None else dtype
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = CheckpointInfo(name=name, model=model.config, scores=dict(scores or {}),
                          description=description)
    state = {key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
             for key, value in model.state_dict().items()}
    _atomic_write(folder / WEIGHTS_FILE, lambda path: save_file(state, path))
    _atomic_write(folder / CONFIG_FILE,
                  lambda path: Path(path).write_text(json.dumps(info.to_dict(), indent=2) + "\n"))
    if card:
        _atomic_write(folder / CARD_FILE, lambda path: Path(path).write_text(card))
    return folder


def _atomic_write(target: Path, write) -> None:
    # The file gets 0o666 less the umask, as any new file does, so a checkpoint can be shared
    # or published: not mkstemp's 0o600, which safetensors' own writer also uses.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode = os.fstat(descriptor).st_mode & 0o777
    os.close(descriptor)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
