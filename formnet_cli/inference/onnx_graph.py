"""Where a model's ONNX graph is and what it says of itself; no torch, no runtime.

A checkpoint's graph is exported once (:mod:`formnet_cli.inference.onnx_export`, which needs
torch) and cached in :func:`cache_dir`, next to the hub cache, under a name made of the weights'
sha256 and the exporter's version: new weights or a new exporter make a new graph, and the
same weights in two folders share one. A checkpoint folder may also ship its graph as
``model.onnx``; it is used when its metadata names the folder's weights.

Every graph formnet writes carries its model's descriptor
(:class:`~formnet_cli.models.ModelDescriptor`: task, channels, size multiple, receptive radius,
half precision) as ONNX metadata (:data:`METADATA_PREFIX` keys), so that the runtimes tile it
exactly as the torch engine tiles the model, without the checkpoint's torch model; and the
activation bytes per pixel that size ``tile="auto"``, and the weights it was made from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from formnet_cli.config import WEIGHTS_FILE
from formnet_cli.models.descriptor import ModelDescriptor

GRAPH_FORMAT = 2
"""Version of the exported graph (its inputs, wrapper and metadata): part of the cache key."""
CACHE_ENV = "FORMNET_ONNX_CACHE"
"""Overrides :func:`cache_dir`."""
SHIPPED_GRAPH_FILE = "model.onnx"
"""A graph a checkpoint folder ships beside its weights."""
METADATA_PREFIX = "formnet."
METADATA_KEYS = tuple(METADATA_PREFIX + key for key in (
    "task", "channels", "size_multiple", "receptive_radius", "supports_half", "bytes_per_pixel",
    "weights_sha256", "level", "format"))
"""Every metadata key :class:`GraphInfo` reads and writes."""


@dataclass(frozen=True)
class GraphInfo:
    """What a formnet graph's metadata says: its model's descriptor (how to tile it) and what
    it was made from."""

    descriptor: ModelDescriptor
    bytes_per_pixel: float
    """Activation bytes per input pixel of one run (measured by torch at export)."""
    weights_sha256: str
    level: float | None = None
    """The normalised level baked into a one-input graph; ``None``: an ``(image, level)`` graph."""
    format: int = GRAPH_FORMAT

    def to_metadata(self) -> dict[str, str]:
        described = self.descriptor
        values = {"task": described.task, "channels": described.channels,
                  "size_multiple": described.size_multiple,
                  "receptive_radius": described.receptive_radius,
                  "supports_half": int(described.supports_half),
                  "bytes_per_pixel": self.bytes_per_pixel,
                  "weights_sha256": self.weights_sha256, "format": self.format}
        if self.level is not None:
            values["level"] = self.level
        return {METADATA_PREFIX + key: str(value) for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: str | os.PathLike[str]) -> GraphInfo:
        """Read from the graph's metadata; :class:`GraphError` when it is not formnet's."""
        values = {key.removeprefix(METADATA_PREFIX): value for key, value in metadata.items()
                  if key.startswith(METADATA_PREFIX)}
        try:
            descriptor = ModelDescriptor(task=values["task"],  # type: ignore[arg-type]
                                         channels=int(values["channels"]),
                                         size_multiple=int(values["size_multiple"]),
                                         receptive_radius=int(values["receptive_radius"]),
                                         supports_half=bool(int(values["supports_half"])))
            return cls(descriptor=descriptor,
                       bytes_per_pixel=float(values["bytes_per_pixel"]),
                       weights_sha256=values["weights_sha256"],
                       level=float(values["level"]) if "level" in values else None,
                       format=int(values["format"]))
        except (KeyError, ValueError) as error:
            from formnet_cli.errors import FormnetError

            raise FormnetError(f"{path}: not a graph exported by formnet (metadata {error} "
                               "missing or invalid); export it again with 'formnet export'"
                               ) from None


def cache_dir() -> Path:
    """``FORMNET_ONNX_CACHE``, else ``formnet-onnx/`` beside the hub cache (read when called)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    from formnet_cli.hub.download import hub_cache_dir

    return hub_cache_dir().parent / "formnet-onnx"


def exporter_version() -> str:
    """The graph format and the torch release that export it (read without importing torch)."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "none"
    return f"f{GRAPH_FORMAT}-torch{torch_version}"


def cached_graph_path(weights_sha256: str) -> Path:
    """Where the two-input graph of weights with this sha256 is (or will be) cached."""
    return cache_dir() / f"{weights_sha256[:32]}-{exporter_version()}.onnx"


_SHA256: dict[tuple[str, int, int, int], str] = {}
"""(weights path, inode, mtime, size) -> sha256: each file is hashed once per process."""


def weights_sha256(checkpoint: str | os.PathLike[str]) -> str:
    """The sha256 of a checkpoint folder's weights file."""
    path = Path(checkpoint) / WEIGHTS_FILE
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]
