"""Models loaded for restoring, under the backend that runs them, for :mod:`formnet_cli.api`.

:func:`load_model` resolves a registry name, a checkpoint folder or a task's default model and
loads it once per process for torch (the network on its device) or for an ONNX runtime
(``onnxruntime``, ``openvino``: the checkpoint's config and its ONNX graph, found or exported
now, :mod:`formnet_cli.inference.backends`), loading it again when the checkpoint's files are
rewritten. torch is imported only where the torch backend loads or runs a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from formnet_cli.config import ModelConfig
from formnet_cli.errors import InvalidOptionError, ModelNotFoundError
from formnet_cli.hub import registry
from formnet_cli.hub.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointInfo, load_checkpoint, read_info
from formnet_cli.inference import backends
from formnet_cli.options import Backend, parse_backend, parse_task

if TYPE_CHECKING:  # torch is imported where the torch backend runs, not here
    import torch

    from formnet_cli.models import FormResNet


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: the network, what its ``config.json`` says, and where it came from.

    ``backend`` is what runs it: ``torch`` (``model`` on ``device``), or an ONNX runtime
    (``onnxruntime``, ``openvino``: ``model`` is ``None``, the checkpoint's ONNX graph, found or
    exported when it was loaded, runs on the CPU: ``device`` is ``"cpu"``).
    """

    model: FormResNet | None
    info: CheckpointInfo
    path: Path
    source: str
    device: torch.device | str
    backend: Backend = "torch"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def config(self) -> ModelConfig:
        return self.info.model

    @property
    def task(self) -> str:
        return self.info.model.task

    @property
    def channels(self) -> int:
        return self.info.model.channels


_FileStamp = tuple[int, int, int] | None
_MODEL_CACHE: dict[tuple[str, str], tuple[tuple[_FileStamp, ...], LoadedModel]] = {}
"""(checkpoint folder, device or runtime) -> (the stamp of its files when loaded, the model)."""


def load_model(name_or_path: str | os.PathLike[str] | None = None, *, task: str | None = None,
               channels: int = 1, device: str | torch.device = "auto",
               backend: Backend | str = "torch") -> LoadedModel:
    """A model by registry name or checkpoint folder, or the default model of ``task``.

    With a name or path, that model whatever its task; a ``task`` given too must be its task.
    Without one, the default model of ``task`` (``'denoise'`` if not given) for ``channels``
    (1 gray, 3 color), or else for the other channel count: :func:`formnet_cli.api.restore`
    runs a gray model on color images and the reverse.

    Loaded once per (checkpoint folder, device) in this process, and again when the folder's
    files are rewritten. Raises :class:`~formnet_cli.errors.ModelNotFoundError` when there are
    no weights, and :class:`~formnet_cli.errors.InvalidOptionError` when the checkpoint is for
    another task than ``task``. ``backend``: ``torch`` (the default here), ``onnxruntime``,
    ``openvino`` or ``auto`` (see :mod:`formnet_cli.inference.backends`).
    """
    if task is not None:
        parse_task(task)
    backend = parse_backend(backend)
    if backend == "torch":
        device = torch_devices().resolve_device(device)
    if name_or_path is None:
        resolved = _resolve_default(task or "denoise", channels)
    else:
        resolved = registry.resolve_model(name_or_path, task)
    path = Path(resolved.path).resolve()
    if backend != "torch":
        backend = backends.choose_backend(backend, device=str(device), folder=path,
                                          formatter=read_info(path).model.formatter)
    if backend == "torch":
        loaded = _load_cached(path, str(resolved.source), torch_devices().resolve_device(device))
    else:
        loaded = _load_graph(path, str(resolved.source), backend)
    if task is not None:
        check_model_task(loaded, task)
    return loaded


def model_task(name_or_path: str | os.PathLike[str]) -> str:
    """The task (denoise, jpeg or sr) a model name or checkpoint folder restores, from its
    manifest entry or ``config.json``, without loading its weights."""
    entry = registry.load_manifest().get(os.fspath(name_or_path))
    if entry is not None:
        return entry.task
    return read_info(registry.resolve_model(name_or_path).path).model.task


def clear_model_cache() -> None:
    """Forget every model :func:`load_model` has loaded (frees their memory)."""
    _MODEL_CACHE.clear()


def check_model_task(loaded: LoadedModel, task: str) -> None:
    """Raise :class:`InvalidOptionError` when ``loaded`` restores another task than ``task``."""
    if loaded.task != task:
        raise InvalidOptionError(
            f"model {loaded.name!r} ({loaded.path}) restores '{loaded.task}', not '{task}'")


def run_device(loaded: LoadedModel, device: str | torch.device) -> torch.device | str:
    """Where to run ``loaded``: ``device`` (validated), or where the model is for ``'auto'``
    (an ONNX runtime: the CPU)."""
    if loaded.backend != "torch":
        return "cpu"
    if str(device).strip().lower() == "auto":
        return loaded.device
    return torch_devices().resolve_device(device)


def torch_devices() -> ModuleType:
    """:mod:`formnet_cli.inference.device`, imported (with torch) where torch runs."""
    from formnet_cli.inference import device

    return device


def _resolve_default(task: str, channels: int) -> registry.ResolvedModel:
    """The default model of ``task`` for ``channels``, else the one for the other count."""
    try:
        return registry.resolve_model(None, task, channels)
    except ModelNotFoundError as preferred:
        try:
            return registry.resolve_model(None, task, 4 - channels)
        except ModelNotFoundError:
            raise preferred from None


def _load_cached(path: Path, source: str, device: torch.device) -> LoadedModel:
    """The checkpoint folder ``path`` on ``device``, read again only when its files changed."""
    key = (str(path), str(device))
    stamp = _checkpoint_stamp(path)
    cached = _MODEL_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    model, info = load_checkpoint(path, device=device)
    torch_devices().prepare_for_inference(model, device)  # not converted and back per image
    loaded = LoadedModel(model=model, info=info, path=path, source=source, device=device)
    _MODEL_CACHE[key] = (stamp, loaded)
    return loaded


def _load_graph(path: Path, source: str, backend: Backend) -> LoadedModel:
    """The checkpoint folder ``path`` for an ONNX runtime: its config, and its graph found or
    exported now (before any image), read again when its files changed."""
    key = (str(path), backend)
    stamp = _checkpoint_stamp(path)
    cached = _MODEL_CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    backends.graph_for(path)
    loaded = LoadedModel(model=None, info=read_info(path), path=path, source=source,
                         device="cpu", backend=backend)
    _MODEL_CACHE[key] = (stamp, loaded)
    return loaded


def _checkpoint_stamp(folder: Path) -> tuple[_FileStamp, ...]:
    """Inode, modification time and size of the checkpoint's files (None where missing).

    Rewriting a checkpoint in place (a training run exporting again) changes it: the files
    are replaced atomically, each by a new inode.
    """
    stamps: list[_FileStamp] = []
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            stat = (folder / name).stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)
