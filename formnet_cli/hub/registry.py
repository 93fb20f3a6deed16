"""Which checkpoint folder a task uses, and where it comes from.

A name resolves, first match wins, to:

1. ``path``: the argument itself, when it is a checkpoint folder (has ``config.json``), or
   the checkpoint a training run folder exported (its ``model/``);
2. ``folder``: ``<weights dir>/<name>/``, the configured weights folder (``--dest`` or
   ``FORMNET_WEIGHTS_DIR``; a folder the user owns, not verified against the manifest);
3. ``cache``: the huggingface_hub cache at the manifest's pinned revision, every file
   verified against its sha256 (no network);
4. ``bundled``: ``weights/<name>/`` shipped with formnet.

Without a name, the manifest's default model for the task and channel count is used. The
registry answers exactly for the channels asked; running a gray model on color images (or the
reverse) is the restore layer's decision. Nothing here touches the network: when the weights
are not on this machine the error says which ``formnet download-weights`` command gets them.

>>> resolve_model("denoise-gray").source  # doctest: +SKIP
'bundled'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from formnet_cli.config import CONFIG_FILE, WEIGHTS_FILE
from formnet_cli.errors import (DownloadError, FormnetError, InvalidOptionError, ModelNotFoundError,
                     UnknownModelError)
from formnet_cli.hub.download import cached_model_folder, configured_weights_dir
from formnet_cli.hub.manifest import Manifest, ManifestError, ManifestFile, ModelEntry, load_manifest

__all__ = [
    "Manifest", "ManifestError", "ManifestFile", "ModelEntry", "ModelListing", "ResolvedModel",
    "SOURCES", "channels_label", "parameters_in_file", "default_model_name", "list_models",
    "load_manifest", "model_with_formatter", "resolve_model",
]

SOURCES = ("path", "folder", "cache", "bundled")
"""Where a resolved model comes from, in resolution order."""
RUN_EXPORT_FOLDER = "model"
"""Where ``formnet train`` exports a run's checkpoint, inside the run folder."""
RUN_STATE_FILE = "state.pt"
"""The training state a run folder holds (``formnet train --resume`` reads it)."""


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint folder and where it was found (one of :data:`SOURCES`)."""

    name: str
    path: Path
    source: str
    entry: ModelEntry | None = None


@dataclass(frozen=True)
class ModelListing:
    """One row of ``formnet models``. ``source`` is one of :data:`SOURCES`, or
    ``"not downloaded"`` (published, run ``download-weights``) or ``"unpublished"``."""

    name: str
    task: str
    channels: int
    parameters: int | None
    source: str
    path: Path | None = None
    default: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    description: str = ""
    formatter: str = ""
    """The model's formatting stage (``none``, ``cnn`` or ``bm3d``); empty when not on this machine."""


def channels_label(channels: int) -> str:
    return {1: "gray", 3: "color"}.get(channels, f"{channels} channels")


def default_model_name(task: str, channels: int, manifest: Manifest | None = None) -> str:
    """The manifest's default model for ``task`` and ``channels`` (exact match)."""
    manifest = manifest or load_manifest()
    matches = [entry for entry in manifest.models
               if entry.task == task and entry.channels == channels]
    if not matches:
        raise ModelNotFoundError(f"no trained weights for task '{task}' "
                                 f"({channels_label(channels)}) yet; train a model with "
                                 "'formnet train' and pass --model PATH")
    return next((entry for entry in matches if entry.default), matches[0]).name


def model_with_formatter(task: str, channels: int, formatter: str, *,
                         weights_dir: str | os.PathLike[str] | None = None,
                         manifest: Manifest | None = None) -> str:
    """The model for ``task`` whose formatting stage is ``formatter`` (``formnet restore
    --formatter``): the default one when it qualifies, else one for ``channels``, else one for
    the other channel count (run per channel or as gray RGB by the restore layer). Raises
    :class:`ModelNotFoundError` naming the forms there are."""
    candidates = [listing for listing in list_models(weights_dir=weights_dir, manifest=manifest)
                  if listing.task == task and listing.path is not None]
    chosen = sorted((listing for listing in candidates if listing.formatter == formatter),
                    key=lambda listing: (listing.channels != channels, not listing.default))
    if chosen:
        return chosen[0].name
    forms = {}
    for listing in candidates:
        forms.setdefault(listing.formatter, []).append(listing.name)
    there = "; ".join(f"{form}: {', '.join(names)}" for form, names in sorted(forms.items()))
    raise ModelNotFoundError(f"no model for task '{task}' formats with '{formatter}'"
                             + (f" (formatters there are: {there})" if there else ""))


def resolve_model(name_or_path: str | os.PathLike[str] | None = None, task: str | None = None,
                  channels: int | None = None, *,
                  weights_dir: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None,
                  manifest: Manifest | None = None) -> ResolvedModel:
    """The checkpoint folder for a name, a path, or the default of ``task``/``channels``.

    Raises :class:`ModelNotFoundError` (one line, with the command that gets the weights)
    when nothing is found, and :class:`InvalidOptionError` when a listed model is for
    another task than ``task``.
    """
    if name_or_path is not None:
        explicit = _explicit_folder(name_or_path)
        if explicit is not None:
            return ResolvedModel(explicit.name, explicit, "path")
    manifest = manifest or load_manifest()
    if name_or_path is None:
        if task is None or channels is None:
            raise InvalidOptionError("pass a model name or path, or a task and channel count")
        name = default_model_name(task, channels, manifest)
    else:
        name = str(name_or_path)
    entry = manifest.get(name)
    if entry is not None and task is not None and entry.task != task:
        raise InvalidOptionError(f"model '{name}' restores '{entry.task}', not '{task}'; "
                                 "see 'formnet models'")
    found = _locate(name, entry, manifest, configured_weights_dir(weights_dir), cache_dir)
    if found is not None:
        return ResolvedModel(name, found[0], found[1], entry)
    message = _not_found_message(name, entry, manifest, default=name_or_path is None)
    if entry is None and not Path(name).expanduser().is_dir():
        raise UnknownModelError(message)
    raise ModelNotFoundError(message)


def list_models(*, weights_dir: str | os.PathLike[str] | None = None,
                cache_dir: str | os.PathLike[str] | None = None,
                manifest: Manifest | None = None) -> list[ModelListing]:
    """Every manifest model (where it would load from), then unlisted checkpoint folders in
    the configured weights folder and in the bundled ``weights/``."""
    manifest = manifest or load_manifest()
    folder = configured_weights_dir(weights_dir)
    listings = []
    for entry in manifest.models:
        try:
            found = _locate(entry.name, entry, manifest, folder, cache_dir)
        except DownloadError:
            found = None  # a corrupt cached copy: resolving says so; list it as not downloaded
        if found is None:
            listings.append(ModelListing(
                entry.name, entry.task, entry.channels, None,
                "not downloaded" if entry.published else "unpublished",
                default=entry.default, description=entry.description))
        else:
            listings.append(_listing(entry.name, found[0], found[1], entry))
    known = {entry.name for entry in manifest.models}
    for root, source in ((folder, "folder"), (manifest.folder, "bundled")):
        if root is None or not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name in known or not (child / CONFIG_FILE).is_file():
                continue
            known.add(child.name)
            try:
                listings.append(_listing(child.name, child, source, None))
            except FormnetError:
                continue  # not a readable checkpoint; loading it would say why
    return listings


def parameters_in_file(weights: str | os.PathLike[str]) -> int:
    """Number of parameters in a ``.safetensors`` file, read from its header only."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        return sum(prod(handle.get_slice(key).get_shape()) for key in handle.keys())


# -- internals -------------------------------------------------------------------------------
def _explicit_folder(name_or_path: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder ``name_or_path`` names as a path, None when it is a name."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return _checkpoint_in(path)
    looks_like_path = (os.sep in text or "/" in text or text.startswith(("~", "."))
                       or isinstance(name_or_path, os.PathLike))
    if looks_like_path and path.is_dir():
        raise ModelNotFoundError(f"{text}: not a formnet checkpoint folder (no {CONFIG_FILE})")
    if looks_like_path:
        raise ModelNotFoundError(f"{text}: no such checkpoint folder; pass a folder with "
                                 f"{CONFIG_FILE} and {WEIGHTS_FILE}, or a name from "
                                 "'formnet models'")
    return None


def _checkpoint_in(folder: Path) -> Path:
    """``folder``, or for a training run folder the checkpoint it exported (``model/``)."""
    if (folder / WEIGHTS_FILE).is_file():
        return folder
    exported = folder / RUN_EXPORT_FOLDER
    if (exported / CONFIG_FILE).is_file():
        return exported
    if (folder / RUN_STATE_FILE).is_file():
        raise ModelNotFoundError(f"{folder}: a training run with no exported checkpoint yet "
                                 f"({exported} is written at each train.checkpoint_every steps, on "
                                 "Ctrl-C and when training ends)")
    return folder  # a checkpoint without its weights: loading it says so


def _locate(name: str, entry: ModelEntry | None, manifest: Manifest, folder: Path | None,
            cache_dir: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    if folder is not None and (folder / name / CONFIG_FILE).is_file():
        return folder / name, "folder"
    if entry is not None:
        cached = cached_model_folder(entry, cache_dir=cache_dir)
        if cached is not None:
            return cached, "cache"
    bundled = manifest.bundled_folder(name)
    if bundled is not None:
        return bundled, "bundled"
    return None


def _not_found_message(name: str, entry: ModelEntry | None, manifest: Manifest,
                       default: bool) -> str:
    if entry is None:
        if Path(name).expanduser().is_dir():
            return f"{name}: not a formnet checkpoint folder (no {CONFIG_FILE})"
        known = ", ".join(model.name for model in manifest.models) or "none yet"
        return (f"unknown model '{name}' (known: {known}); pass a checkpoint folder as "
                "--model PATH")
    what = (f"no trained weights for task '{entry.task}' ({channels_label(entry.channels)}) "
            f"on this machine" if default else f"model '{name}' is not on this machine")
    if entry.published:
        return f"{what}; run 'formnet download-weights {name}' or pass --model PATH"
    return f"{what} and not published on the hub yet; pass --model PATH"


def _listing(name: str, path: Path, source: str, entry: ModelEntry | None) -> ModelListing:
    from formnet_cli.hub.checkpoint import read_info  # imports torch; only when a checkpoint is read

    info = read_info(path)
    weights = path / WEIGHTS_FILE
    try:
        parameters = parameters_in_file(weights) if weights.is_file() else None
    except Exception:  # a corrupt header: loading the model reports it properly
        parameters = None
    return ModelListing(name=name, task=info.model.task, channels=info.model.channels,
                        parameters=parameters, source=source, path=path,
                        default=entry.default if entry is not None else False,
                        scores=dict(info.scores), description=info.description,
                        formatter=info.model.formatter)
