"""Writing files safely: the one atomic writer every file formnet writes goes through (images,
checkpoints, training state, caches), and a check that a folder takes new files.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from formnet_cli.errors import ImageWriteError

_TEMPORARY_NAME_BYTES = 200
"""Bytes of a file's name kept in its temporary file's name (``.<name>.<8 hex>.part``)."""
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.part", re.DOTALL)


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a new hidden file beside ``path``, then rename that file onto ``path``:
    readers see the old file or the whole new one, never a part.

    The temporary file ``.<name>.<8 random hex>.part`` lies in the same folder (a rename is
    atomic only within one file system), hidden from listings and globs; its name is cut to
    200 bytes of ``path``'s, so that a name of 255 bytes still has a temporary one. It is
    created exclusively (``O_EXCL``), with mode 0o666 less the umask as any new file (not
    ``mkstemp``'s 0o600: outputs and checkpoints are shared), flushed and fsynced before the
    rename (a crash just after it leaves the new contents, not an empty file), and removed on
    any failure, Ctrl-C and a full disk included, leaving the old file as it was. The error is
    re-raised as it came (an ``OSError`` keeps its ``errno``: ``ENOSPC`` tells a full disk).
    """
    path = Path(path)
    temporary = path.with_name(f".{_temporary_stem(path)}.{secrets.token_hex(4)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # Windows: no CRLF
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _temporary_stem(path: Path) -> str:
    """``path``'s name as its temporary files carry it (cut to 200 bytes)."""
    return os.fsencode(path.name)[:_TEMPORARY_NAME_BYTES].decode(errors="ignore") or "file"


def leftover_temporaries(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The temporary files :func:`write_atomically` left beside ``paths`` when it was killed
    before it could remove them (SIGKILL, a power cut): ``.<name>.<8 hex>.part``, found by
    listing each folder once. Only those of these paths: another program's are left alone."""
    stems: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        stems.setdefault(path.parent, set()).add(_temporary_stem(path))
    found = []
    for folder, names in stems.items():
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    match = _TEMPORARY.fullmatch(entry.name)
                    if match and match.group(1) in names and entry.is_file(follow_symlinks=False):
                        found.append(folder / entry.name)
        except OSError:  # no such folder yet: nothing left there
            continue
    return sorted(found)


def check_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`ImageWriteError` unless a file can be created in ``folder`` (or, when it
    does not exist yet, in the nearest existing folder above it, where it would be made).

    Tries a real (anonymous, self-deleting) file: permission bits alone say nothing about
    read-only mounts or special file systems.
    """
    try:
        probe = Path(folder).absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ImageWriteError(f"{folder}: cannot create it ({probe} is a file)")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as error:  # unwritable, or a path past the system's limit
        raise ImageWriteError(f"{folder}: cannot write there ({error.strerror or error})") from None
