"""Inputs and outputs in object stores (``s3://bucket/prefix``, any fsspec URL) for ``--engine ray``.

An argument of the form ``scheme://...`` is a :class:`StorePath`, read and written through
fsspec (``s3fs`` for S3; credentials and endpoints as the back-end reads them: for S3 the
usual ``AWS_*`` variables, ``~/.aws``, an instance role, or fsspec's ``FSSPEC_S3_*``); any
other argument is a local (or network-mounted) path, as in a local batch.

:func:`plan` makes the plan of any mix of local and store arguments. Local inputs are planned
by :func:`~formnet_cli.batch.plan.plan_batch` itself (into a stand-in folder when the output
is in a store, then moved under the store's prefix). Store inputs are planned here by the
same rules on the store's listing: a prefix is a folder (its objects; all below it with
``recursive``, mirrored), globs mirror the names below their first wildcard, hidden names,
non-images and earlier outputs inside an input prefix are left out, the same object met twice
runs once, two inputs writing one output and an output onto its input fail. A store has no
links, devices or case-folding, so the checks for those do not arise.

Workers restore a store file through a local copy (:func:`fetch`), with the local batch's own
restore-and-write, and send the result with :func:`put`: one whole-object upload (S3's
single or multipart PUT), which a store makes visible only once complete. An interrupted
upload leaves no object and an earlier object untouched: outputs stay whole, as a local
file's atomic rename keeps them.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Union

from formnet_cli import io as imageio
from formnet_cli.batch.plan import (STREAM, BatchPlan, Job, _skip, _unsupported_type, _with_ext,
                                    normalise_ext, plan_batch)
from formnet_cli.batch.summary import FileResult
from formnet_cli.errors import FormnetError, ImageReadError, ImageWriteError, InvalidOptionError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["Location", "StorePath", "fetch", "is_url", "location", "outputs_present", "plan",
           "put"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


@dataclass(frozen=True, order=True)
class StorePath:
    """An object (or a prefix) in a store: ``protocol`` and ``key`` (``bucket/folder/name``,
    ``/``-separated, no leading or trailing ``/``).

    Stands for a :class:`~pathlib.Path` in the plan's jobs and results: it has the parts of
    the path API those use (``name``, ``suffix``, ``parent``, ``/``, ``with_suffix``,
    ``relative_to``), computed on the key as a string (a plan may hold millions), and ``str()``
    is its URL, as the summary and the JSON show it.
    """

    protocol: str
    key: str

    @classmethod
    def parse(cls, url: str) -> StorePath:
        match = _URL.match(url)
        if match is None:
            raise InvalidOptionError(f"{url}: not a URL (scheme://bucket/key)")
        key = str(PurePosixPath(match.group(2).strip("/")))
        if key == ".":
            raise InvalidOptionError(f"{url}: names no bucket")
        return cls(match.group(1).lower(), key)

    def __str__(self) -> str:
        return f"{self.protocol}://{self.key}"

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""  # as pathlib's

    @property
    def parent(self) -> StorePath:
        """The prefix above (a bucket is its own parent)."""
        return StorePath(self.protocol, self.key.rpartition("/")[0] or self.key)

    @property
    def bucket(self) -> StorePath:
        return StorePath(self.protocol, self.key.partition("/")[0])

    def __truediv__(self, other: str | PurePosixPath) -> StorePath:
        return StorePath(self.protocol, f"{self.key}/{other}")

    def with_suffix(self, suffix: str) -> StorePath:
        return StorePath(self.protocol, self.key[:len(self.key) - len(self.suffix)] + suffix)

    def relative_to(self, other: StorePath) -> PurePosixPath:
        if not self.is_within(other):
            raise ValueError(f"{self} is not in {other}")
        return PurePosixPath(self.key[len(other.key) + 1:] or ".")

    def is_within(self, other: StorePath) -> bool:
        """Whether this is ``other`` or lies below it."""
        return self.protocol == other.protocol and (
            self.key == other.key or self.key.startswith(other.key + "/"))


Location = Union[Path, StorePath]
"""Where a job's file is: a local path or an object in a store."""


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names an object in a store (``scheme://...``), not a local path."""
    return isinstance(text, str) and _URL.match(text) is not None


def location(text: str) -> Location:
    """``text`` as a :class:`StorePath` (a URL; ``file://`` is local) or a local :class:`Path`."""
    if not is_url(text):
        return Path(text)
    path = StorePath.parse(text)
    return Path("/" + path.key) if path.protocol == "file" else path


# -- the plan ------------------------------------------------------------------------------------
def plan(inputs: Sequence[str | os.PathLike[str]], output: str, *, recursive: bool = False,
         ext: str | None = None) -> BatchPlan:
    """The jobs of ``formnet restore INPUTS -o OUTPUT``, each side local or in a store (see the
    module docstring); raises :class:`InvalidOptionError` as :func:`plan_batch` does, and for
    local and store inputs mixed or an input that is neither a file nor a prefix."""
    if not inputs:
        raise InvalidOptionError("no inputs given")
    if STREAM in (Path(item) for item in inputs if not is_url(item)) or output == "-":
        raise InvalidOptionError("--engine ray reads and writes files: '-' (standard input or "
                                 "output) is for a local restore")
    stores = [is_url(item) and not isinstance(location(os.fspath(item)), Path) for item in inputs]
    if any(stores) and not all(stores):
        raise InvalidOptionError("give local inputs or store URLs, not both in one run")
    output_location = location(output)
    names_file = not output.endswith(("/", os.sep)) and output_location.suffix != ""
    if not any(stores):
        inputs = [location(os.fspath(item)) for item in inputs]
        if isinstance(output_location, Path):
            return plan_batch(inputs, output, recursive=recursive, ext=ext)
        return _plan_into_store(inputs, output_location, names_file, recursive, ext)
    if isinstance(output_location, Path) and output_location.is_dir():
        names_file = False
    store_inputs = [StorePath.parse(os.fspath(item)) for item in inputs]
    for protocol in {path.protocol for path in store_inputs}:
        _filesystem(protocol).invalidate_cache()  # list what is there now, not what was
    return _StorePlanner(store_inputs, output_location, recursive, normalise_ext(ext)).plan(
        names_file)


def _plan_into_store(inputs: Sequence[Path], output: StorePath, names_file: bool, recursive: bool,
                     ext: str | None) -> BatchPlan:
    """Local inputs planned by :func:`plan_batch` into an empty stand-in folder, whose outputs
    are then moved under ``output`` (a store has no earlier files to clash with locally)."""
    with tempfile.TemporaryDirectory(prefix="formnet-plan-") as folder:
        stand_in = Path(folder, "output")
        local_output = stand_in / output.name if names_file else stand_in
        destination = output.parent if names_file else output
        try:
            batch = plan_batch(inputs, os.fspath(local_output) + ("" if names_file else "/"),
                               recursive=recursive, ext=ext)
        except InvalidOptionError as error:
            raise InvalidOptionError(str(error).replace(os.fspath(local_output), str(output))) from None

        def moved(path: Path | None) -> Location | None:
            return None if path is None else destination / path.relative_to(stand_in)

        batch.jobs = [Job(job.input, moved(job.output)) for job in batch.jobs]  # type: ignore[arg-type]
        batch.settled = [FileResult(result.input, moved(result.output), result.status,  # type: ignore[arg-type]
                                    result.reason) for result in batch.settled]
    return batch


class _StorePlanner:
    """The plan of store inputs (see the module docstring): one listing per input."""

    def __init__(self, inputs: list[StorePath], output: Location, recursive: bool,
                 extension: str | None) -> None:
        self.inputs, self.output, self.recursive, self.extension = inputs, output, recursive, extension
        self.batch = BatchPlan()
        self.sources: set[StorePath] = set()
        self.targets: dict[str, StorePath] = {}

    def plan(self, names_file: bool) -> BatchPlan:
        kinds = {path: _kind(path) for path in self.inputs if not glob.has_magic(path.key)}
        missing = [str(path) for path, kind in kinds.items() if kind is None]
        if missing:
            raise InvalidOptionError(f"{', '.join(missing)}: no such object or prefix")
        single = self.inputs[0]
        if len(self.inputs) == 1 and kinds.get(single) == "file" and names_file:
            self._check_output_file()
            self._add(single, self.output, named=True)
            return self.batch
        if names_file and imageio.is_image_path(self.output.name):
            raise InvalidOptionError(f"{self.output}: with several inputs or a prefix, -o must "
                                     "be a folder or prefix")
        for path in self.inputs:
            kind = kinds.get(path)
            if kind == "file":
                self._add(path, self.output / _with_ext(PurePosixPath(path.name), self.extension),
                          named=len(self.inputs) == 1)
            elif kind == "folder":
                self._add_folder(path)
            else:
                self._add_glob(path)
        if not self.batch.jobs and not self.batch.settled:
            raise InvalidOptionError(f"no files to restore in {', '.join(map(str, self.inputs))}"
                                     + "".join(f"; {note}" for note in self.batch.notes))
        return self.batch

    def _check_output_file(self) -> None:
        output, extension = self.output, self.extension
        if not imageio.is_image_path(output.name):
            raise InvalidOptionError(f"{output}: unsupported output format {output.suffix!r} "
                                     "(end the path with / to name a folder)")
        if extension is not None and (imageio.output_format(output.name)
                                      != imageio.output_format(Path(output.name).with_suffix(extension))):
            raise InvalidOptionError(f"--ext applies to folder outputs; {output} is written as "
                                     f"{output.suffix} (name it {output.with_suffix(extension).name})")

    def _add_folder(self, folder: StorePath, output: Location | None = None) -> None:
        """The objects of ``folder`` (all below it with ``recursive``) mirrored under
        ``output`` (the run's output folder by default)."""
        fs = _filesystem(folder.protocol)
        if self.recursive:
            names = fs.find(str(folder))
            subfolders = 0
        else:
            entries = fs.ls(str(folder), detail=True)
            names = [entry["name"] for entry in entries if entry["type"] == "file"]
            subfolders = len(entries) - len(names)
        for path in sorted(_store_path(folder.protocol, name) for name in names):
            self._add_below(folder, path, self.output if output is None else output)
        if subfolders:
            self.batch.notes.append(f"{folder}: {subfolders} subfolder(s) not entered "
                                    "(use --recursive)")

    def _add_glob(self, pattern: StorePath) -> None:
        parts = pattern.key.split("/")
        literal = next(index for index, part in enumerate(parts) if glob.has_magic(part))
        base = StorePath(pattern.protocol, "/".join(parts[:literal]))
        fs = _filesystem(pattern.protocol)
        matches = fs.glob(str(pattern), detail=True)
        if not matches:
            self.batch.settled.append(FileResult(pattern, None, "failed", "no files match"))  # type: ignore[arg-type]
        for name in sorted(matches):
            match = _store_path(pattern.protocol, name)
            if matches[name]["type"] == "directory":
                self._add_folder(match, self.output / match.relative_to(base))
            else:
                self._add_below(base, match, self.output)

    def _add_below(self, folder: StorePath, path: StorePath, output: Location) -> None:
        """``path``, found below ``folder``, mirrored under ``output``: unless hidden or an
        earlier output inside the input (``s3://b/scans/`` with ``-o s3://b/scans/restored``)."""
        relative = path.key[len(folder.key) + 1:]
        if relative.startswith(".") or "/." in relative:
            return
        if isinstance(self.output, StorePath) and path.is_within(self.output) \
                and not folder.is_within(self.output):
            return
        if self.extension is not None:
            relative = str(_with_ext(PurePosixPath(relative), self.extension))
        self._add(path, output / relative)

    def _add(self, source: StorePath, target: Location, *, named: bool = False) -> None:
        if not imageio.is_image_path(source.name):
            reason = _unsupported_type(PurePosixPath(source.name))  # type: ignore[arg-type]
            if named:
                self.batch.settled.append(FileResult(source, None, "failed", reason))  # type: ignore[arg-type]
            else:
                _skip(self.batch, source, reason)  # type: ignore[arg-type]
            return
        if source in self.sources:  # the same object given twice (a prefix and a glob)
            return
        self.sources.add(source)
        if str(target) == str(source):
            self.batch.settled.append(FileResult(source, target, "failed",  # type: ignore[arg-type]
                                                 "the output would overwrite the input"))
            return
        other = self.targets.get(str(target))
        if other is not None:
            self.batch.settled.append(FileResult(source, target, "failed",  # type: ignore[arg-type]
                                                 f"output clashes with the output of {other}"))
            return
        self.targets[str(target)] = source
        self.batch.jobs.append(Job(source, target))  # type: ignore[arg-type]


def _kind(path: StorePath) -> str | None:
    """``"file"`` for an object, ``"folder"`` for a prefix with objects below it, else None."""
    fs = _filesystem(path.protocol)
    try:
        if fs.isfile(str(path)):
            return "file"
        return "folder" if fs.isdir(str(path)) else None
    except OSError as error:
        raise FormnetError(f"{path}: cannot list it ({_one_line(error)})") from None


def _store_path(protocol: str, name: str) -> StorePath:
    """A name as the store's file system lists it, as a :class:`StorePath`."""
    return StorePath(protocol, name.strip("/"))


# -- reading and writing ----------------------------------------------------------------------------
def outputs_present(outputs: Sequence[StorePath]) -> set[StorePath]:
    """Which of ``outputs`` exist: one listing per output prefix, not one request per file."""
    present: set[StorePath] = set()
    for folder in sorted({output.parent for output in outputs}):
        fs = _filesystem(folder.protocol)
        try:
            listed = fs.ls(str(folder), detail=False, refresh=True)
        except FileNotFoundError:
            continue
        present.update(_store_path(folder.protocol, name) for name in listed)
    return present & set(outputs)


def check_writable(outputs: Sequence[StorePath]) -> None:
    """Raise :class:`ImageWriteError` when the bucket of an output is not there."""
    for bucket in sorted({path.bucket for path in outputs}):
        try:
            there = _filesystem(bucket.protocol).exists(str(bucket))
        except OSError as error:
            raise ImageWriteError(f"{bucket}: cannot reach it ({_one_line(error)})") from None
        if not there:
            raise ImageWriteError(f"{bucket}: no such bucket")


def fetch(source: StorePath, local: Path) -> None:
    """Copy the object ``source`` to the local file ``local`` (its folder created)."""
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        _filesystem(source.protocol).get_file(str(source), os.fspath(local))
    except (OSError, ValueError) as error:  # missing, forbidden, unreachable
        raise ImageReadError(f"{source}: cannot read it ({_one_line(error)})") from None


def put(local: Path, target: StorePath) -> None:
    """Upload the local file ``local`` as the object ``target``, whole (see the module docstring)."""
    try:
        _filesystem(target.protocol).put_file(os.fspath(local), str(target))
    except (OSError, ValueError) as error:
        raise ImageWriteError(f"{target}: cannot write it ({_one_line(error)})") from None


def _filesystem(protocol: str) -> AbstractFileSystem:
    """The fsspec file system of ``protocol`` (configured from the environment; fsspec keeps
    one instance); a missing back-end (``gcsfs`` for ``gs://``) is one line saying so."""
    import fsspec

    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as error:
        raise FormnetError(f"{protocol}:// is not readable here ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
