"""The weights manifest: every model formnet knows, where it is published, and its checksums.

``weights/manifest.json`` lists every model formnet knows: its task and channels, whether it
is the default for them, the hub repository and pinned revision (a full commit) it is
published at, and the sha256 and size of each of its files. Its schema::

    {
      "schema_version": 1,
      "hub": {"repo": "formnet/formnet-weights", "revision": null},
      "models": [
        {"name": "denoise-gray", "task": "denoise", "channels": 1, "default": true,
         "license": "MIT", "description": "...",
         "revision": "<40 hex digits>",          # optional, see below
         "repo": "other/repo",                    # optional, defaults to hub.repo
         "subfolder": "denoise-gray",             # optional, defaults to the name
         "files": [{"path": "config.json", "sha256": "<64 hex>", "size": 1234}, ...]}
      ]
    }

``hub.repo`` and ``hub.revision`` are the defaults, written once; an entry's ``revision`` key,
when present, replaces ``hub.revision`` for that model (``null``: not published). A revision of
``null`` means "not published on the hub yet": such a model is only bundled.

This module reads and validates the manifest, checks files against it (:func:`file_matches`)
and writes entries for maintainers (:func:`manifest_entry_for`,
:func:`refresh_bundled_manifest`); downloads are in :mod:`formnet_cli.hub.download`. No
network, no torch (except :func:`manifest_entry_for`, which reads a checkpoint's config).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formnet_cli.config import CHECKPOINT_FILES, CONFIG_FILE, TASKS
from formnet_cli.errors import FormnetError, UnknownModelError

__all__ = ["MANIFEST_FILE", "SCHEMA_VERSION", "Manifest", "ManifestError", "ManifestFile",
           "ModelEntry", "bundled_weights_dir", "file_matches", "folder_matches", "is_commit",
           "load_manifest", "manifest_entry_for", "parse_manifest", "refresh_bundled_manifest",
           "sha256_file"]

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ManifestError(FormnetError):
    """A manifest that cannot be read; the message names the file and the field."""


def is_commit(text: str) -> bool:
    """Whether ``text`` is a full 40-digit commit hash: the only revision formnet pins to."""
    return bool(_COMMIT.fullmatch(text))


# -- the manifest ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestFile:
    """One file of a model: its name inside the model folder, sha256 and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelEntry:
    """A model the manifest lists; ``repo`` and ``revision`` already include the defaults."""

    name: str
    task: str
    channels: int
    default: bool
    files: tuple[ManifestFile, ...]
    repo: str
    revision: str | None
    subfolder: str
    license: str = ""
    description: str = ""

    @property
    def published(self) -> bool:
        return self.revision is not None

    def repo_path(self, file: ManifestFile) -> str:
        """The file's path inside the hub repository."""
        return f"{self.subfolder}/{file.path}" if self.subfolder else file.path


@dataclass(frozen=True)
class Manifest:
    """Every known model; ``folder`` is where the bundled ``<name>/`` folders live."""

    folder: Path
    repo: str
    revision: str | None
    models: tuple[ModelEntry, ...] = ()

    def get(self, name: str) -> ModelEntry | None:
        return next((entry for entry in self.models if entry.name == name), None)

    def require(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry is None:
            known = ", ".join(entry.name for entry in self.models) or "none yet"
            raise UnknownModelError(f"unknown model '{name}' (known: {known})")
        return entry

    def bundled_folder(self, name: str) -> Path | None:
        folder = self.folder / name
        return folder if (folder / CONFIG_FILE).is_file() else None


def bundled_weights_dir() -> Path:
    """The bundled ``weights/`` folder: package ``formnet_cli.weights``, else the checkout's."""
    package = Path(__file__).resolve().parents[1]  # formnet_cli/
    candidates = []
    try:
        root = importlib.resources.files("formnet_cli.weights")
        if isinstance(root, Path):
            candidates.append(root)
    except (ImportError, OSError, TypeError, ValueError):
        # Not importable (a checkout), or a namespace package importlib.resources cannot read.
        pass
    candidates += [package / "weights", package.parent / "weights"]  # installed wheel, checkout
    return next((folder for folder in candidates if (folder / MANIFEST_FILE).is_file()),
                package.parent / "weights")


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate ``manifest.json`` (default: the bundled one)."""
    path = Path(path) if path is not None else bundled_weights_dir() / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: weights manifest missing; reinstall formnet") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: unreadable weights manifest ({error})") from error
    return parse_manifest(data, folder=path.parent, where=str(path))


def parse_manifest(data: Any, *, folder: Path, where: str = MANIFEST_FILE) -> Manifest:
    """Validate a manifest already parsed from JSON."""
    def fail(message: str) -> ManifestError:
        return ManifestError(f"{where}: {message}")

    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise fail(f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION}); "
                   "update formnet")
    hub = data.get("hub")
    if not isinstance(hub, dict) or not isinstance(hub.get("repo"), str) or "/" not in hub["repo"]:
        raise fail("'hub.repo' must be a repository id such as 'owner/name'")
    default_revision = _revision(hub.get("revision"), "hub.revision", fail)
    models = data.get("models", [])
    if not isinstance(models, list):
        raise fail("'models' must be a list")
    entries = tuple(_entry(item, f"models[{index}]", hub["repo"], default_revision, fail)
                    for index, item in enumerate(models))
    names: set[str] = set()
    defaults: set[tuple[str, int]] = set()
    for entry in entries:
        if entry.name in names:
            raise fail(f"model '{entry.name}' is listed twice")
        names.add(entry.name)
        if entry.default:
            if (entry.task, entry.channels) in defaults:
                raise fail(f"two defaults for task '{entry.task}' with {entry.channels} channel(s)")
            defaults.add((entry.task, entry.channels))
    return Manifest(folder=Path(folder), repo=hub["repo"], revision=default_revision,
                    models=entries)


def _revision(value: Any, where: str, fail) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COMMIT.fullmatch(value):
        raise fail(f"'{where}' must be a full 40-digit commit hash or null, got {value!r}")
    return value


def _entry(item: Any, where: str, default_repo: str, default_revision: str | None,
           fail) -> ModelEntry:
    if not isinstance(item, dict):
        raise fail(f"{where} must be an object")
    for key in ("name", "task", "channels", "files"):
        if key not in item:
            raise fail(f"{where} lacks '{key}'")
    name = item["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail(f"{where}.name {name!r} is not a valid model name")
    if item["task"] not in TASKS:
        raise fail(f"{where}.task must be one of {', '.join(TASKS)}, got {item['task']!r}")
    if item["channels"] not in (1, 3):
        raise fail(f"{where}.channels must be 1 or 3, got {item['channels']!r}")
    files = item["files"]
    if not isinstance(files, list) or not files:
        raise fail(f"{where}.files must be a non-empty list")
    parsed = []
    for index, file in enumerate(files):
        here = f"{where}.files[{index}]"
        if not isinstance(file, dict):
            raise fail(f"{here} must be an object")
        path, sha256, size = file.get("path"), file.get("sha256"), file.get("size")
        plain = isinstance(path, str) and path and not path.startswith(".")
        if not plain or "/" in path or "\\" in path:
            raise fail(f"{here}.path must be a plain file name, got {path!r}")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise fail(f"{here}.sha256 must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise fail(f"{here}.size must be a byte count")
        parsed.append(ManifestFile(path=path, sha256=sha256, size=size))
    if CONFIG_FILE not in {file.path for file in parsed}:
        raise fail(f"{where}.files must include config.json")
    repo = item.get("repo", default_repo)
    if not isinstance(repo, str) or "/" not in repo:
        raise fail(f"{where}.repo must be a repository id such as 'owner/name'")
    revision = (_revision(item["revision"], f"{where}.revision", fail) if "revision" in item
                else default_revision)
    subfolder = item.get("subfolder", name)
    if not isinstance(subfolder, str) or subfolder.startswith("/") or ".." in subfolder.split("/"):
        raise fail(f"{where}.subfolder must be a relative folder inside the repository")
    return ModelEntry(name=name, task=item["task"], channels=int(item["channels"]),
                      default=bool(item.get("default", False)), files=tuple(parsed), repo=repo,
                      revision=revision, subfolder=subfolder.strip("/"),
                      license=str(item.get("license", "")),
                      description=str(item.get("description", "")))


# -- verification ----------------------------------------------------------------------------
_SHA256_MEMO: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str], *, remember: bool = False) -> str:
    """Hex sha256 of a file.

    ``remember`` reuses the digest of an unchanged file (same inode, size and mtime) within
    this process, so resolving the same cached model again does not hash it again.
    Downloads always hash afresh.
    """
    path = Path(path).resolve()
    status = path.stat()
    key = (str(path), status.st_ino, status.st_size, status.st_mtime_ns)
    if remember and key in _SHA256_MEMO:
        return _SHA256_MEMO[key]
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    digest = hasher.hexdigest()
    if remember:
        _SHA256_MEMO[key] = digest
    return digest


def file_matches(path: str | os.PathLike[str], file: ManifestFile, *,
                 remember: bool = False) -> bool:
    """Whether ``path`` is the manifest's file: same size, then same sha256."""
    path = Path(path)
    try:
        return (path.stat().st_size == file.size
                and sha256_file(path, remember=remember) == file.sha256)
    except OSError:
        return False


def folder_matches(folder: Path, entry: ModelEntry) -> bool:
    """Whether ``folder`` holds every file of ``entry`` with the right sha256."""
    return all(file_matches(folder / file.path, file) for file in entry.files)


# -- publishing ------------------------------------------------------------------------------
def manifest_entry_for(folder: str | os.PathLike[str], *, name: str | None = None,
                       default: bool = False, revision: str | None = None,
                       license: str = "MIT", files: Iterable[str] | None = None
                       ) -> dict[str, Any]:
    """The manifest entry of a checkpoint folder: task and channels from ``config.json``,
    sha256 and size of each file. Paste it into ``weights/manifest.json`` (see docs/weights.md).

    ``revision`` is the commit ``upload_folder`` returned (``None``: not published yet).
    """
    from formnet_cli.hub.checkpoint import read_info  # imports torch; only maintainers call this

    folder = Path(folder)
    info = read_info(folder)
    names = list(files) if files is not None else [
        file for file in CHECKPOINT_FILES if (folder / file).is_file()]
    entry: dict[str, Any] = {
        "name": name or folder.name,
        "task": info.model.task,
        "channels": info.model.channels,
        "default": default,
        "license": license,
        "description": info.description,
        "revision": revision,
        "files": [{"path": file, "sha256": sha256_file(folder / file),
                   "size": (folder / file).stat().st_size} for file in names],
    }
    return entry


def refresh_bundled_manifest(path: str | os.PathLike[str] | None = None) -> Path:
    """Recompute sha256 and size of every bundled model in the manifest after its files changed
    (a new card, retrained weights), keeping each entry's name, default, licence and revision.

        python -c "from formnet_cli.hub.manifest import refresh_bundled_manifest; refresh_bundled_manifest()"
    """
    path = Path(path) if path is not None else bundled_weights_dir() / MANIFEST_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    for index, entry in enumerate(data["models"]):
        folder = path.parent / entry["name"]
        if folder.is_dir():
            data["models"][index] = manifest_entry_for(
                folder, name=entry["name"], default=entry.get("default", False),
                revision=entry.get("revision"), license=entry.get("license", "MIT"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
