"""What the C libraries say: libpng, libtiff, libjpeg, OpenJPEG and libheif (under Pillow, OpenCV
and tifffile) print their warnings and errors straight to the process's standard error, file
descriptor 2, beside formnet's one-line messages (``libpng error: bad adaptive filter value``,
``ZIPDecode: Decoding error at scanline 0``). :func:`library_output` catches them at that
level while a file is decoded or encoded, so that the caller folds them into its own line (a
failure) or a note (an image decoded despite them), or drops them.

How it stays safe with threads and processes: file descriptor 2 belongs to the whole
process, so one capture runs at a time in a process (a lock; a capture inside another is the
outer one's), and decoding already runs one file at a time there (``limits._DECODING``). The
server restores in worker processes, each with its own descriptor 2 and its own captures.
Python's ``sys.stderr`` is pointed at the real standard error for the capture's length, so
that what formnet itself prints meanwhile from another thread (a progress bar) is not caught.
Pillow logs some refusals itself (``More samples per pixel than can be decoded: 259`` through
the ``PIL`` logger, which Python's last-resort handler would print): its warnings and errors
during the block are caught as lines too.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_CAPTURING = threading.RLock()
_DEPTH = threading.local()
_MOST_CHARACTERS = 240
"""Longest library line kept (a line of binary junk is cut)."""


class _LogLines(logging.Handler):
    """Keeps the messages of warnings and errors logged within a block."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(_lines(record.getMessage()))


@contextmanager
def _logged_lines() -> Iterator[_LogLines]:
    """Pillow's logged warnings and errors in the block: the file's, like the C lines."""
    handler, pillow = _LogLines(), logging.getLogger("PIL")
    pillow.addHandler(handler)
    try:
        yield handler
    finally:
        pillow.removeHandler(handler)


@dataclass
class LibraryOutput:
    """The lines the C libraries printed during a :func:`library_output` block (set when the
    block ends)."""

    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The first line, and how many more, for a one-line message (empty if none)."""
        if not self.lines:
            return ""
        more = len(self.lines) - 1
        return self.lines[0] + (f" (and {more} more line{'s' * (more > 1)})" if more else "")


@contextmanager
def library_output() -> Iterator[LibraryOutput]:
    """Catch what C code writes to file descriptor 2 within the block; yields a
    :class:`LibraryOutput` whose ``lines`` hold it once the block is over (see the module)."""
    caught = LibraryOutput()
    with _CAPTURING:
        if getattr(_DEPTH, "value", 0) or not _can_redirect():
            yield caught  # an outer capture catches it (or nothing can be caught here)
            return
        python_stderr = sys.stderr
        _flush(python_stderr)
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink, _logged_lines() as logged:
            os.dup2(sink.fileno(), 2)
            _DEPTH.value = 1
            try:
                with os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace",
                               buffering=1) as real_stderr:
                    sys.stderr = real_stderr
                    try:
                        yield caught
                    finally:
                        sys.stderr = python_stderr
            finally:
                _DEPTH.value = 0
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                caught.lines = logged.lines + _lines(sink.read().decode("utf-8", errors="replace"))


def _can_redirect() -> bool:
    """Whether descriptor 2 is open (a daemon may run without it)."""
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def _flush(stream: object) -> None:
    """Write out what Python buffered for descriptor 2 before it is redirected."""
    try:
        stream.flush()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass


def _lines(text: str) -> list[str]:
    return [" ".join(line.split())[:_MOST_CHARACTERS] for line in text.splitlines() if line.strip()]
