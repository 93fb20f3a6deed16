"""What the command-line tests share: a runner of the ``formnet`` app and ``restore`` with a
tiny model on the CPU (the ``gray_png`` fixture is in ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from formnet_cli.cli.app import app

runner = CliRunner()


def invoke(*args: object, **kwargs: object):
    """``formnet ARGS...`` through the runner (``kwargs``: ``env=``, ``input=``)."""
    return runner.invoke(app, [str(arg) for arg in args], **kwargs)


def restore(model: Path, *args: object):
    """``formnet restore ARGS... --model MODEL`` on the CPU, untiled."""
    return invoke("restore", *args, "--model", model, "--device", "cpu", "--tile", "none")
