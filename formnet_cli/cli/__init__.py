"""The ``formnet`` command line: a thin Typer layer over the library (:mod:`formnet_cli.cli.app`).

:func:`main` loads the application itself, so that a Ctrl-C or a SIGTERM arriving while
Python imports it (typer, rich) or while Typer builds the commands, before any command runs,
ends the command in one line with its exit code (130, 143), not with a traceback.

An interrupted command ends with :func:`os._exit` once its output is flushed: CPython remembers
a Ctrl-C that reached code run through ``PyRun_String`` (some extension modules' imports do),
even one handled since, and would otherwise end the process by SIGINT (exit -2, not 130 or
143) at its very end. Nothing is left to do by then: outputs are written atomically, the
summary is printed.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["main"]

_INTERRUPTED = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def main() -> None:
    """Console-script entry point (``formnet``): :func:`formnet_cli.cli.app.main` once loaded."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        from formnet_cli.cli.app import main as run

        signal.signal(signal.SIGTERM, previous)  # the application sets its own
        run()
    except KeyboardInterrupt:
        application = sys.modules.get("formnet_cli.cli.app")
        terminated = received or (getattr(application, "_TERMINATED", None) or [])
        _end_interrupted("interrupted while starting; nothing was done",
                         128 + (signal.SIGTERM if terminated else signal.SIGINT))
    except SystemExit as exit_:
        if exit_.code in _INTERRUPTED:
            _end_interrupted("", int(exit_.code))  # type: ignore[arg-type]
        raise


def _end_interrupted(message: str, code: int) -> None:
    """Say ``message`` and end the process with ``code`` (see the module)."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second one changes nothing now
        signal.signal(signum, signal.SIG_IGN)
    if message:
        sys.stderr.write(message + "\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or a broken pipe
            pass
    os._exit(code)
