"""The ``formnet`` app: help and usage lines, one-line errors and their exit codes, ``FORMNET_DEBUG``, signals."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cli_helpers import invoke, restore, runner
from formnet_cli.cli.app import app


def test_bare_command_shows_help_without_an_error_line():
    result = invoke()
    assert "Usage" in result.output and "restore" in result.output
    assert "error:" not in result.output


@pytest.mark.parametrize("command", ["restore", "eval", "compare", "train", "models",
                                     "download-weights"])
def test_help_names_every_option_value_plainly(command):
    # Flags (--help too) take no value and show none; valued options show INT, PATH, choices...;
    # arguments show their name only (no typer type names such as <list[Path]>).
    result = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    options = [line for line in result.output.splitlines() if line.lstrip("│ *").startswith("--")]
    placeholders = re.compile(r"<(bool|int|float|str|path|list\[|auto\||denoise\|)")
    assert options and not placeholders.search(result.output)


@pytest.mark.parametrize("command, usage", [
    ("restore", "restore [OPTIONS] INPUT..."), ("eval", "eval [OPTIONS] DATASET"),
    ("compare", "compare [OPTIONS] IMAGE..."), ("train", "train [OPTIONS] [CONFIG]"),
    ("download-weights", "download-weights [OPTIONS] [NAME]...")])
def test_usage_line_names_arguments_as_click_does(command, usage):
    # typer 0.29 writes a required argument as {INPUT}...; the usage line keeps click's form.
    result = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert f"Usage: formnet {usage}" in result.output


def test_unknown_command_is_a_one_line_usage_error():
    result = invoke("restor")
    assert result.exit_code == 2 and result.stderr.startswith("error: No such command 'restor'")
    assert result.stderr.count("\n") == 1


def test_python_m_formnet_cli_help():
    completed = subprocess.run([sys.executable, "-m", "formnet_cli", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "restore" in completed.stdout


def test_debug_variable_shows_the_exception(tmp_path, gray_png, monkeypatch):
    monkeypatch.setenv("FORMNET_DEBUG", "1")
    result = restore(tmp_path / "no-such-model", gray_png, "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and result.exception is not None
    assert "error: " not in result.stderr


def test_sigterm_mid_batch_exits_143_and_reports_like_ctrl_c(tmp_path, gray_png):
    # A real SIGTERM through the real entry point (signal handler, batch, typer, exit code).
    script = f"""
import os, signal, sys, time
from formnet_cli.batch import run as batch
from formnet_cli.cli import app as cli

def terminated_while_restoring(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

batch._run_job = terminated_while_restoring
sys.argv = ["formnet", "restore", {str(gray_png)!r}, "-o", {str(tmp_path / "out.png")!r}, "--sigma", "5",
            "--json"]
cli.main()
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 143, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["interrupted"] and summary["exit_code"] == 143
    assert "was not written" in completed.stderr and not (tmp_path / "out.png").exists()
