"""The ``formnet`` command line: a thin Typer layer over the library (:mod:`formnet_cli.cli.app`)."""

from formnet_cli.cli.app import main

__all__ = ["main"]
